"""Job timeout: no run outlives ``JOB_TIMEOUT`` plus tolerance, and a timed-out run is retried."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.checker.runs import acknowledged_ids, overlaps, runs_by_job
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import History

NAME = "job_timeout"
# Runs cut short by these faults end when someone recovers them, not when they time out.
PROCESS_FAULTS = frozenset({"kill", "sigterm", "pg_kill", "pg_restart", "restart"})


def check_job_timeout(
    history: History,
    *,
    job_timeout: float,
    tolerance: float,
    jobs: Iterable[int] | None = None,
    require_timeouts: bool = False,
) -> Verdict:
    """Fail when a run lasted (or, still open at the end, had lasted) longer than
    ``job_timeout + tolerance``, or a run that hit the timeout ended neither retried nor failed.
    Runs meeting a process or database fault window are excluded. With ``require_timeouts``,
    no run reaching the timeout means unknown."""
    by_job = runs_by_job(history)
    ids = list(jobs) if jobs is not None else acknowledged_ids(history)
    horizon = history.end.finished_at if history.end else None
    process_faults = [f for f in history.faults if f.kind_ in PROCESS_FAULTS]
    evidence: list[str] = []
    timed_out: list[dict[str, Any]] = []
    longest = 0.0
    excluded = 0
    for job_id in ids:
        runs = by_job.get(job_id, [])
        for i, run in enumerate(runs):
            end = run.end if run.end is not None else horizon
            if end is None:
                continue
            if overlaps(run.start, end, process_faults, horizon or end):
                excluded += 1
                continue
            duration = end - run.start
            longest = max(longest, duration)
            if duration > job_timeout + tolerance:
                state = "still running at the end" if run.end is None else f"ended {run.end_type}"
                evidence.append(
                    f"job {job_id} run {run.number} lasted {duration:.3f}s ({state}), "
                    f"beyond JOB_TIMEOUT {job_timeout:.3f}s + {tolerance:.3f}s"
                )
            elif (
                run.end is not None
                and run.end_type != "succeeded"
                and duration >= job_timeout - tolerance
            ):
                timed_out.append({"job_id": job_id, "run": run.number, "duration": duration})
                retried = run.end_type == "deferred_for_retry" and i + 1 < len(runs)
                if not retried and run.end_type != "failed":
                    evidence.append(
                        f"job {job_id} run {run.number} hit the timeout after {duration:.3f}s "
                        f"but ended {run.end_type} and was not run again"
                    )
    figures: dict[str, Any] = {
        "job_timeout": job_timeout,
        "tolerance": tolerance,
        "longest_run": round(longest, 4),
        "timed_out_runs": timed_out,
        "excluded_runs": excluded,
    }
    if evidence:
        return Verdict(NAME, FAIL, f"{len(evidence)} runs broke the job timeout", figures, evidence)
    if require_timeouts and not timed_out:
        return Verdict(NAME, UNKNOWN, "no run reached the timeout: nothing to check", figures)
    return Verdict(
        NAME,
        PASS,
        f"longest run {longest:.3f}s <= {job_timeout:.3f}s + {tolerance:.3f}s; "
        f"{len(timed_out)} timed-out runs, each retried or failed",
        figures,
    )
