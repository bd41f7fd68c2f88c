"""Job timeout: no run outlives ``JOB_TIMEOUT`` plus tolerance, and a timed-out run is retried
while it has runs left.

The bugs it exists to catch: a timeout that is not applied (a hanging call holds a worker slot
forever), and a timeout that is applied but not retried (``TimeoutError`` missing from the
retryable exceptions: the job fails on its first timeout).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.checker.runs import (
    acknowledged_ids,
    logged_ends,
    loop_stalls,
    meets,
    runs_by_job,
    stalled_for,
    stalled_verdict,
    stopping_faults,
)
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import History
from harness.vocabulary import EventType, Invariant, ObservationName, Target

NAME = Invariant.JOB_TIMEOUT


def check_job_timeout(
    history: History,
    *,
    job_timeout: float,
    tolerance: float,
    max_attempts: int,
    jobs: Iterable[int] | None = None,
    require_timeouts: bool = False,
) -> Verdict:
    """Fail when a run lasted (or, still open at the end, had lasted) longer than
    ``job_timeout + tolerance``, or a run that hit the timeout (ended otherwise than
    succeeded after at least ``job_timeout - tolerance``) was not retried: with runs left
    (run number < ``max_attempts``) it must be re-queued and run again;
    on its last run it must end ``failed``.

    A run's duration is its worker's own where its log shows both ends (the run's first line
    and the first line saying it ended: its timeout fired, it failed, it was aborted, or
    Procrastinate's end line): what ``JOB_TIMEOUT`` bounds, without the database round trips
    that fetched and ended it (measured up to 60 ms on a loaded machine in random runs, and
    94 ms in a 4-worker soak, beyond the scheduling tolerance). Otherwise it is the time
    between its job events.

    Runs a fault could have stopped (their worker killed, paused or cut off; PostgreSQL down)
    are not judged, nor runs under a slowed database link (its latency delays the write
    that ends a run, so the recorded duration is the link's, not the job's). A run too long by
    its worker's log, but by no more than the time its worker's event loop was not seen
    running after its timeout was due (``loop_stall``, :func:`harness.checker.runs.stalled_for`),
    cannot be judged: the timer could not fire before the loop ran; unknown, naming it, when
    no other run fails (a missing timeout overruns by far more than a loop stalls). No run judged:
    unknown ("could not look"); with ``require_timeouts``, no
    run reaching the timeout: unknown ("no run reached the timeout")."""
    by_job = runs_by_job(history)
    ids = list(jobs) if jobs is not None else acknowledged_ids(history)
    horizon = history.end.finished_at if history.end else None
    by_worker = _worker_durations(history)
    stalls = loop_stalls(history)
    evidence: list[str] = []
    stalled: list[str] = []
    timed_out: list[dict[str, Any]] = []
    longest = 0.0
    judged = 0
    excluded = 0
    measured_by_worker = 0
    for job_id in ids:
        runs = by_job.get(job_id, [])
        for i, run in enumerate(runs):
            end = run.end if run.end is not None else horizon
            if end is None:
                continue
            if stopping_faults(history, run, until=end) or _link_slowed(history, run.start, end):
                excluded += 1
                continue
            judged += 1
            key = (job_id, run.number, run.worker)
            logged = by_worker.get(key) if run.end is not None else None
            duration = logged[1] - logged[0] if logged is not None else end - run.start
            measured_by_worker += logged is not None
            longest = max(longest, duration)
            where = f"job {job_id} run {run.number} of {max_attempts}"
            if duration > job_timeout + tolerance and logged is not None:
                due = logged[0] + job_timeout
                lag = stalled_for(stalls.get(str(run.worker), []), due, logged[1])
                if duration - job_timeout - tolerance <= lag:
                    stalled.append(
                        f"{where} lasted {duration:.3f}s by its worker's log, beyond "
                        f"JOB_TIMEOUT {job_timeout:.3f}s + {tolerance:.3f}s, but its worker's "
                        f"event loop was not seen running for {lag:.3f}s of the "
                        f"{logged[1] - due:.3f}s after its timeout was due"
                    )
                    continue
            if duration > job_timeout + tolerance:
                state = "still running at the end" if run.end is None else f"ended {run.end_type}"
                clock = "by its worker's log" if logged is not None else "by its job events"
                evidence.append(
                    f"{where} lasted {duration:.3f}s {clock} ({state}), "
                    f"beyond JOB_TIMEOUT {job_timeout:.3f}s + {tolerance:.3f}s"
                )
                continue
            if (
                run.end is None
                or run.end_type == EventType.SUCCEEDED
                or duration < job_timeout - tolerance
            ):
                continue
            timed_out.append(
                {
                    "job_id": job_id,
                    "run": run.number,
                    "duration": round(duration, 4),
                    "ended": run.end_type,
                }
            )
            runs_left = run.number < max_attempts
            retried = run.end_type == EventType.DEFERRED_FOR_RETRY and i + 1 < len(runs)
            if runs_left and not retried:
                what = (
                    "failed: not retried"
                    if run.end_type == EventType.FAILED
                    else f"ended {run.end_type} and was not run again"
                )
                evidence.append(
                    f"job {job_id} timed out on run {run.number} of {max_attempts} "
                    f"after {duration:.3f}s and {what}"
                )
            elif not runs_left and run.end_type != EventType.FAILED:
                evidence.append(
                    f"job {job_id} timed out on its last run ({run.number} of {max_attempts}) "
                    f"and ended {run.end_type}, not failed"
                )
    figures: dict[str, Any] = {
        "job_timeout": job_timeout,
        "tolerance": tolerance,
        "max_attempts": max_attempts,
        "longest_run": round(longest, 4),
        "timed_out_runs": timed_out,
        "judged_runs": judged,
        "measured_by_worker": measured_by_worker,
        "excluded_runs": excluded,
        "stalled_runs": stalled,
    }
    if evidence:
        return Verdict(
            NAME,
            FAIL,
            f"{evidence[0]} ({len(evidence)} runs broke the job timeout)",
            figures,
            evidence,
        )
    if stalled:
        return stalled_verdict(NAME, stalled, figures)
    if judged == 0:
        return Verdict(
            NAME,
            UNKNOWN,
            f"could not look: no run to judge ({excluded} met a fault that could stop them)",
            figures,
        )
    if require_timeouts and not timed_out:
        return Verdict(
            NAME,
            UNKNOWN,
            f"no run reached the timeout: the timeout was not exercised (longest run "
            f"{longest:.3f}s of {judged})",
            figures,
        )
    return Verdict(
        NAME,
        PASS,
        f"longest run {longest:.3f}s <= {job_timeout:.3f}s + {tolerance:.3f}s; "
        f"{len(timed_out)} timed-out runs, each retried (or failed on its last run)",
        figures,
    )


def _link_slowed(history: History, start: float, end: float) -> bool:
    """Whether any fault on the database link (latency included) met [start, end]."""
    horizon = history.end.finished_at if history.end else float("inf")
    return any(f.target == Target.DBLINK and meets(start, end, f, horizon) for f in history.faults)


def _worker_durations(
    history: History,
) -> dict[tuple[int, int, str | None], tuple[float, float]]:
    """(job, run, worker) -> (the run's first log line, the earliest line that ended it), for
    runs whose worker logged both."""
    started: dict[tuple[int, int, str | None], float] = {}
    for o in history.observations(ObservationName.RUN_WORKER):
        if isinstance(o.value, dict) and {"job_id", "run"} <= set(o.value):
            started[(int(o.value["job_id"]), int(o.value["run"]), o.value.get("worker"))] = o.t
    return {
        key: (started[key], end)
        for key, end in logged_ends(history).items()
        if key in started and end >= started[key]
    }
