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
from harness.checker.calibration import calibration_of
from harness.checker.runs import acknowledged_ids
from harness.history.records import History
from harness.vocabulary import JobStatus


def baseline(
    history: History,
    *,
    expected_status: str | Mapping[int, str] | None,
    smallest: float,
    what: str,
) -> list[Verdict]:
    """Calibration precise enough for ``smallest`` (the smallest timing judged, ``what``),
    queue accounting, no duplicate effects, effects tied to jobs, every re-execution
    justified by a fault, and every process alive that no fault stopped.

    ``expected_status`` is for the scenario's own jobs; the calibration's jobs must succeed."""
    return [
        check_calibration(history, smallest=smallest, what=what),
        check_queue_accounting(history, expected_status=with_calibration(history, expected_status)),
        check_no_duplicate_effects(history),
        check_job_effects(history),
        check_justified_reruns(history),
        check_processes_alive(history),
    ]


def with_calibration(
    history: History, expected: str | Mapping[int, str] | None
) -> str | Mapping[int, str] | None:
    """``expected`` for the scenario's jobs, and ``succeeded`` for the calibration's."""
    cal = calibration_of(history)
    if expected is None or cal is None or not cal.job_ids:
        return expected
    if isinstance(expected, str):
        wanted = {j: expected for j in acknowledged_ids(history)}
    else:
        wanted = dict(expected)
    return {**wanted, **{j: str(JobStatus.SUCCEEDED) for j in cal.job_ids}}
