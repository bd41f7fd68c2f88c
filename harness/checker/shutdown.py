"""Graceful shutdown: on SIGTERM, in-flight jobs finish or are aborted at ``WORKER_TIMEOUT`` and
re-queued, and the process exits 0 just after.

The bugs it exists to catch: a shutdown that never aborts (jobs run on past ``WORKER_TIMEOUT``
until they end by themselves), an abort that is not re-queued (the job ends failed or aborted
and its work is lost), a process that hangs or exits non-zero, and a job that runs twice
because its heartbeat stopped before it finished.
"""

from __future__ import annotations

from typing import Any

from harness.checker.runs import Run, acknowledged_ids, runs_by_job
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import Fault, History
from harness.vocabulary import EventType, FaultKind, Invariant, worker_of

NAME = Invariant.GRACEFUL_SHUTDOWN


def check_graceful_shutdown(
    history: History,
    *,
    worker_timeout: float,
    abort_tolerance: float,
    exit_margin: float,
    require_abort: bool = False,
) -> Verdict:
    """For each ``sigterm`` window (start = signal, end = process exit, ``detail.exit_code``):

    - the process exits 0 within ``worker_timeout + exit_margin``;
    - every run in flight at the signal on that worker (its ``Run.worker``; else the window's
      ``detail.jobs``; else every acknowledged job's run) either ends ``succeeded`` before
      signal + ``worker_timeout`` + ``abort_tolerance``, or is aborted: re-queued at
      signal + ``worker_timeout`` +- ``abort_tolerance``, then run again until it succeeds;
    - no such job runs twice at once, or again after it succeeded.

    No job in flight at a SIGTERM: unknown. With ``require_abort``, no run aborted: unknown
    (the abort was not exercised)."""
    by_job = runs_by_job(history)
    ids = acknowledged_ids(history)
    evidence: list[str] = []
    shutdowns: list[dict[str, Any]] = []
    in_flight_total = aborted_total = 0
    for f in (f for f in history.faults if f.kind_ == FaultKind.SIGTERM):
        label = f"SIGTERM {f.target} at {f.start:.3f}"
        if f.end is None:
            evidence.append(f"{label}: the process did not exit")
            continue
        took = f.end - f.start
        code = f.detail.get("exit_code")
        in_flight = _in_flight(f, ids, by_job)
        in_flight_total += len(in_flight)
        if code != 0:
            evidence.append(f"{label}: exit code {code}, expected 0")
        if took > worker_timeout + exit_margin:
            evidence.append(
                f"{label}: exit after {took:.3f}s, beyond WORKER_TIMEOUT {worker_timeout:.3f}s "
                f"+ {exit_margin:.3f}s"
            )
        aborted = 0
        for run, runs in in_flight:
            problem = _judge_run(run, runs, f, worker_timeout, abort_tolerance)
            if problem is None:
                aborted += run.end_type == EventType.DEFERRED_FOR_RETRY
            else:
                evidence.append(f"job {run.job_id} run {run.number} at {label}: {problem}")
        aborted_total += aborted
        shutdowns.append(
            {
                "target": f.target,
                "took": round(took, 4),
                "exit_code": code,
                "in_flight": len(in_flight),
                "aborted": aborted,
            }
        )
    figures: dict[str, Any] = {
        "shutdowns": shutdowns,
        "worker_timeout": worker_timeout,
        "abort_tolerance": abort_tolerance,
        "exit_margin": exit_margin,
    }
    if evidence:
        return Verdict(NAME, FAIL, evidence[0], figures, evidence)
    if not shutdowns or in_flight_total == 0:
        return Verdict(NAME, UNKNOWN, "no job was in flight at a SIGTERM", figures)
    if require_abort and aborted_total == 0:
        return Verdict(
            NAME,
            UNKNOWN,
            f"no run was aborted at WORKER_TIMEOUT: the abort was not exercised "
            f"({in_flight_total} in-flight jobs finished by themselves)",
            figures,
        )
    return Verdict(
        NAME,
        PASS,
        f"{len(shutdowns)} SIGTERM(s): {in_flight_total - aborted_total} in-flight jobs "
        f"finished, {aborted_total} aborted at WORKER_TIMEOUT and re-run; exit 0 within "
        f"{max(s['took'] for s in shutdowns):.3f}s",
        figures,
    )


def _in_flight(
    f: Fault, ids: list[int], by_job: dict[int, list[Run]]
) -> list[tuple[Run, list[Run]]]:
    """Runs in flight at the signal on the signalled worker, with their job's runs."""
    name = worker_of(f.target)
    scope = f.detail.get("jobs")
    scoped = None if scope is None else {int(j) for j in scope}
    found = []
    for job_id in ids:
        runs = by_job.get(job_id, [])
        for run in runs:
            if not (run.start <= f.start and (run.end is None or run.end > f.start)):
                continue
            if run.worker is not None:
                if run.worker != name:
                    continue
            elif scoped is not None and job_id not in scoped:
                continue
            found.append((run, runs))
    return found


def _judge_run(
    run: Run, runs: list[Run], f: Fault, worker_timeout: float, tolerance: float
) -> str | None:
    """What is wrong with a run in flight at the signal, or None."""
    abort_at = f.start + worker_timeout
    if run.overlapped:
        return "started again while this run was still running"
    if run.end is None:
        return "still doing at the end: neither finished nor aborted"
    since = run.end - f.start
    later = runs[run.number :]
    if run.end_type == EventType.SUCCEEDED:
        if run.end > abort_at + tolerance:
            return (
                f"ran on and succeeded {since:.3f}s after the signal: not aborted at "
                f"WORKER_TIMEOUT {worker_timeout:.3f}s + {tolerance:.3f}s"
            )
        if later:
            return "succeeded during the shutdown and then ran again"
        return None
    if run.end_type == EventType.DEFERRED_FOR_RETRY and abs(run.end - abort_at) <= tolerance:
        if not later:
            return f"aborted and re-queued {since:.3f}s after the signal but never ran again"
        if not any(r.end_type == EventType.SUCCEEDED for r in later):
            return (
                f"aborted and re-queued, ran again but ended {later[-1].end_type or 'never'}, "
                "not succeeded"
            )
        return None
    return (
        f"ended {run.end_type} {since:.3f}s after the signal: neither succeeded by "
        f"WORKER_TIMEOUT {worker_timeout:.3f}s + {tolerance:.3f}s nor aborted at "
        f"{worker_timeout:.3f}s +- {tolerance:.3f}s and re-queued"
    )
