"""Shutdown aborts amid other faults: a run in flight when its worker gets SIGTERM is over by
``WORKER_TIMEOUT`` after the signal: it ended by itself, or its worker aborted it.

The bug it exists to catch: a graceful shutdown that never aborts (``no-shutdown-abort``: runs go
on until their own timeout, holding the deploy up and the job with it). What becomes of an
aborted job (re-queued and run again, or left ``aborted``) is queue accounting's to judge.

:mod:`harness.checker.shutdown` judges one SIGTERM with nothing else going on; here SIGTERMs
meet other faults. A SIGTERM is judged only when nothing that can freeze its worker or hold
up its writes met [signal, signal + ``WORKER_TIMEOUT`` + tolerance]: a database fault, any
fault on the database link, a pause or kill of that worker; nor one whose process the nemesis
had to kill. A run's end is its worker's own log line where there is one (Procrastinate's
end line, whatever the status, or the task's timeout or failure line), else its job event: a
run that ended in its worker before the signal, but whose outcome write was lost with a
database session, is not in flight (seed 20261214 run 7: it ended 3.4 s before the SIGTERM and
its job event came from stalled-job recovery 3.5 s after).
"""

from __future__ import annotations

from typing import Any

from harness.checker.runs import (
    DATABASE_STOPPING,
    acknowledged_ids,
    logged_ends,
    loop_stalls,
    meets,
    runs_by_job,
    stall_at,
    stalled_for,
    stalled_verdict,
)
from harness.checker.verdict import FAIL, PASS, Verdict
from harness.history.records import Fault, History
from harness.vocabulary import FaultKind, Invariant, Target, worker_of

NAME = Invariant.SHUTDOWN_ABORTS


def check_shutdown_aborts(history: History, *, worker_timeout: float, tolerance: float) -> Verdict:
    """Fail when a run in flight at a judged SIGTERM on its worker ended (or was still going)
    later than ``worker_timeout + tolerance`` after the signal. A run late by no more than its
    worker's event loop stood still (``loop_stall``: when the signal came, or after the
    deadline) cannot be judged: unknown, naming it, when no other run fails. No run in flight
    at a judged SIGTERM: pass, saying there was nothing to abort (a random schedule need not
    meet one)."""
    by_job = runs_by_job(history)
    logged = logged_ends(history)
    stalls = loop_stalls(history)
    stalled: list[str] = []
    horizon = history.end.finished_at if history.end else float("inf")
    evidence: list[str] = []
    judged: list[dict[str, Any]] = []
    skipped = 0
    sigterms = [f for f in history.faults if f.kind_ == FaultKind.SIGTERM]
    for f in sigterms:
        name = worker_of(f.target)
        limit = f.start + worker_timeout + tolerance
        if name is None or f.detail.get("killed") or _disturbed(history, f, name, limit):
            skipped += 1
            continue
        # (run, its end): the worker's log line where there is one, else its job event
        started = [
            (run, logged.get((run.job_id, run.number, name), run.end))
            for job_id in acknowledged_ids(history)
            for run in by_job.get(job_id, [])
            if run.worker == name and run.start <= f.start
        ]
        in_flight = [(run, end) for run, end in started if end is None or end > f.start]
        stretches = stalls.get(name, [])
        # a signal that came while the loop stood still is seen when it runs again
        due = f.start + stall_at(stretches, f.start) + worker_timeout
        for run, end in in_flight:
            since = (end if end is not None else horizon) - f.start
            if (
                end is not None
                and end > limit
                and end - due - tolerance <= (lag := stalled_for(stretches, due, end))
            ):
                stalled.append(
                    f"job {run.job_id} run {run.number} on {name}: in flight at SIGTERM "
                    f"{f.start:.3f}, ended {since:.3f}s after it, beyond WORKER_TIMEOUT "
                    f"{worker_timeout:.3f}s + {tolerance:.3f}s, but {name}'s event loop was not "
                    f"seen running for {due - worker_timeout - f.start + lag:.3f}s of it"
                )
                continue
            if end is None or end > limit:
                state = "still going at the end" if end is None else f"ended {run.end_type}"
                evidence.append(
                    f"job {run.job_id} run {run.number} on {name}: in flight at SIGTERM "
                    f"{f.start:.3f}, {state} {since:.3f}s after it: not aborted at "
                    f"WORKER_TIMEOUT {worker_timeout:.3f}s + {tolerance:.3f}s"
                )
        judged.append({"target": f.target, "at": round(f.start, 4), "in_flight": len(in_flight)})
    in_flight_total = sum(j["in_flight"] for j in judged)
    figures: dict[str, Any] = {
        "worker_timeout": worker_timeout,
        "tolerance": tolerance,
        "sigterms": len(sigterms),
        "judged": judged,
        "not_judged": skipped,
        "stalled_runs": stalled,
    }
    if evidence:
        return Verdict(
            NAME,
            FAIL,
            f"{evidence[0]} ({len(evidence)} runs went on past WORKER_TIMEOUT)",
            figures,
            evidence,
        )
    if stalled:
        return stalled_verdict(NAME, stalled, figures)
    if in_flight_total == 0:
        return Verdict(
            NAME,
            PASS,
            f"nothing to abort: no run in flight at {len(judged)} judged SIGTERM(s) "
            f"({skipped} met another fault)",
            figures,
        )
    return Verdict(
        NAME,
        PASS,
        f"{in_flight_total} runs in flight at {len(judged)} SIGTERM(s), each over within "
        f"WORKER_TIMEOUT {worker_timeout:.3f}s + {tolerance:.3f}s ({skipped} SIGTERMs met "
        "another fault, not judged)",
        figures,
    )


def _disturbed(history: History, sigterm: Fault, worker: str, until: float) -> bool:
    """Whether another fault that can freeze ``worker`` or hold up its writes met
    [signal, ``until``]."""
    for f in history.faults:
        if f is sigterm or not meets(sigterm.start, until, f, float("inf")):
            continue
        if f.kind_ in DATABASE_STOPPING or f.target in (Target.POSTGRES, Target.DBLINK):
            return True
        if worker_of(f.target) == worker:
            return True
    return False
