"""Graceful shutdown: SIGTERM lets in-flight jobs finish or re-queues them, exits 0, in time."""

from __future__ import annotations

from typing import Any

from harness.checker.runs import acknowledged_ids, runs_by_job
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import History

NAME = "graceful_shutdown"


def check_graceful_shutdown(
    history: History, *, worker_timeout: float, tolerance: float
) -> Verdict:
    """For each ``sigterm`` window (start = signal, end = process exit, ``detail.exit_code``):
    the process exits 0 within ``worker_timeout + tolerance``; every job in flight at the signal
    (on that worker, when ``detail.jobs`` lists its jobs)
    ends its run by the exit (+ tolerance): nothing is left ``doing``; and no such job starts
    another run before that run ended (no second execution because its heartbeat stopped).
    No job in flight at a SIGTERM: unknown."""
    by_job = runs_by_job(history)
    ids = acknowledged_ids(history)
    evidence: list[str] = []
    shutdowns: list[dict[str, Any]] = []
    in_flight_total = 0
    for f in (f for f in history.faults if f.kind_ == "sigterm"):
        label = f"SIGTERM {f.target} at {f.start:.3f}"
        if f.end is None:
            evidence.append(f"{label}: the process did not exit")
            continue
        took = f.end - f.start
        code = f.detail.get("exit_code")
        # When the scenario knew which jobs ran on the signalled worker, only those count.
        scope = f.detail.get("jobs")
        in_flight = []
        for job_id in ids if scope is None else [j for j in ids if j in set(scope)]:
            runs = by_job.get(job_id, [])
            for run in runs:
                if run.start <= f.start and (run.end is None or run.end > f.start):
                    in_flight.append((job_id, run, runs))
        in_flight_total += len(in_flight)
        shutdowns.append(
            {
                "target": f.target,
                "took": round(took, 4),
                "exit_code": code,
                "in_flight": len(in_flight),
            }
        )
        if code != 0:
            evidence.append(f"{label}: exit code {code}, expected 0")
        if took > worker_timeout + tolerance:
            evidence.append(
                f"{label}: exit after {took:.3f}s, beyond WORKER_TIMEOUT {worker_timeout:.3f}s "
                f"+ {tolerance:.3f}s"
            )
        for job_id, run, runs in in_flight:
            if run.end is None or run.end > f.end + tolerance:
                evidence.append(f"job {job_id} still doing after {label} exited")
            if run.overlapped:
                evidence.append(
                    f"job {job_id} started again while its run from before {label} was running"
                )
            elif run.end_type == "succeeded" and len(runs) > run.number:
                evidence.append(f"job {job_id} succeeded during {label} and then ran again")
    figures: dict[str, Any] = {
        "shutdowns": shutdowns,
        "worker_timeout": worker_timeout,
        "tolerance": tolerance,
    }
    if evidence:
        return Verdict(NAME, FAIL, evidence[0], figures, evidence)
    if not shutdowns or in_flight_total == 0:
        return Verdict(NAME, UNKNOWN, "no job was in flight at a SIGTERM", figures)
    return Verdict(
        NAME,
        PASS,
        f"{len(shutdowns)} SIGTERM(s): {in_flight_total} in-flight jobs finished or re-queued, "
        f"exit 0 within {max(s['took'] for s in shutdowns):.3f}s",
        figures,
    )
