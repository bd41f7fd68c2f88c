"""The invariants every scenario judges, whatever its faults.

Scenarios add their own (retry schedule, recovery latency, ...) to these.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.checker import (
    Verdict,
    check_calibration,
    check_job_effects,
    check_justified_reruns,
    check_no_duplicate_effects,
    check_processes_alive,
    check_queue_accounting,
)
from harness.history.records import History


def baseline(
    history: History,
    *,
    expected_status: str | Mapping[int, str] | None,
    smallest: float,
    what: str,
) -> list[Verdict]:
    """Calibration precise enough for ``smallest`` (the smallest timing judged, ``what``),
    queue accounting, no duplicate effects, effects tied to jobs, every re-execution
    justified by a fault, and every process alive that no fault stopped."""
    return [
        check_calibration(history, smallest=smallest, what=what),
        check_queue_accounting(history, expected_status=expected_status),
        check_no_duplicate_effects(history),
        check_job_effects(history),
        check_justified_reruns(history),
        check_processes_alive(history),
    ]
