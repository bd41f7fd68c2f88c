"""The invariants every scenario judges, whatever its faults.

Scenarios add their own (retry schedule, recovery latency, ...) to these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from harness.checker import (
    FAIL,
    UNKNOWN,
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
from harness.vocabulary import Invariant, JobStatus


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


#: Invariants whose verdict rests on a timing budget or tolerance (a deadline, a delay, a
#: latency): on a machine the calibration found too slow, their failures are not evidence.
TIMING_INVARIANTS = frozenset(
    {
        Invariant.QUEUE_ACCOUNTING,  # "lost" means "not terminal by the deadline"
        Invariant.RETRY_SCHEDULE,
        Invariant.RETRY_DECISIONS,
        Invariant.JOB_TIMEOUT,
        Invariant.RECOVERY_LATENCY,
        Invariant.HEALTH_TRANSITIONS,
        Invariant.HEALTH_AMID_FAULTS,
        Invariant.GRACEFUL_SHUTDOWN,
        Invariant.SHUTDOWN_ABORTS,
    }
)


def qualified(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """``verdicts`` as they may be reported: when the calibration says the machine was too
    slow to judge this scenario's timings, a failed timing verdict becomes ``unknown`` (with
    the calibration's reason and what it would have said), never a wrong ``fail``."""
    cal = next((v for v in verdicts if v.name == Invariant.CALIBRATION), None)
    if cal is None or cal.status != UNKNOWN:
        return list(verdicts)
    out: list[Verdict] = []
    for v in verdicts:
        if v.status == FAIL and v.name in TIMING_INVARIANTS:
            v = replace(
                v,
                status=UNKNOWN,
                summary=f"not judged ({cal.summary}); would have failed: {v.summary}",
            )
        out.append(v)
    return out


def judged_jobs(history: History) -> list[int]:
    """The acknowledged jobs a timing check judges: not the calibration's, whose lateness the
    tolerance is made of (a tolerance never judges the runs it comes from)."""
    cal = calibration_of(history)
    skip = set(cal.job_ids) if cal else set()
    return [j for j in acknowledged_ids(history) if j not in skip]
