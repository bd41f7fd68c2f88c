"""Justified re-runs: a job runs again (other than a scheduled retry after a failure) only when
a fault could have stopped its previous run, and never twice at once.

The bug it exists to catch: a stalled-job recovery that ignores its threshold and re-queues jobs
whose worker is alive and running them. The re-queue closes the still-running run in the event
log, so the two executions never look overlapped there; what gives it away is a re-run with no
fault on the worker that ran the first one. At-least-once delivery allows re-runs; it does not
allow them for no reason.

A fault also reaches past its window through the worker's database session: a worker frozen
for longer than the stall threshold resumes with a heartbeat write its watchdog gave up on, and
a run it fetched in the moment it resumed (2 ms after SIGCONT, seed 20261207 run 2) belongs to
a session it is already ending. So a re-run is also justified when the worker's log says its
watchdog ended the session (``session_lost``) while the previous run was in flight or up to
the session's teardown limit before it started, and a fault that could stop that worker, or any
fault on the database link (latency holds a heartbeat past its budget), met the watchdog's
look-back before the loss. A watchdog ending sessions for no reason is still caught.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from harness.checker.runs import Run, could_stop, meets, runs_by_job, stopping_faults
from harness.checker.verdict import FAIL, PASS, Verdict
from harness.history.records import History
from harness.vocabulary import Invariant, ObservationName, Target
from system.promises import heartbeat_write_budget, session_teardown_limit

NAME = Invariant.JUSTIFIED_RERUNS


def check_justified_reruns(history: History, *, jobs: Iterable[int] | None = None) -> Verdict:
    """Every re-execution (a run after a run that did not end in a scheduled retry) of every
    job (or of ``jobs``) must be justified by a fault that could have stopped the previous run
    (see :func:`harness.checker.runs.could_stop`): a kill, SIGTERM, restart, pause or
    backend termination of the worker that ran it (any worker when its log does not say), or a
    database-wide fault, with a window meeting [previous start, previous end]. Two runs at once
    always fail. Never unknown: no re-execution is a pass."""
    by_job = runs_by_job(history)
    losses = SessionLosses.of(history)
    wanted = None if jobs is None else set(jobs)
    reruns: list[dict[str, Any]] = []
    evidence: list[str] = []
    for job_id, runs in sorted(by_job.items()):
        if wanted is not None and job_id not in wanted:
            continue
        for prev, nxt in itertools.pairwise(runs):
            if prev.scheduled_retry and not prev.overlapped:
                continue
            on = f" on {prev.worker}" if prev.worker else ""
            where = f"job {job_id} run {nxt.number}"
            row: dict[str, Any] = {
                "job_id": job_id,
                "run": nxt.number,
                "previous_worker": prev.worker,
                "previous_end": prev.end_type,
                "justified_by": [],
            }
            reruns.append(row)
            if prev.overlapped:
                row["overlapped"] = True
                evidence.append(
                    f"{where} started while run {prev.number}{on} was still running: "
                    "two executions at once"
                )
                continue
            faults = stopping_faults(history, prev, until=nxt.start)
            row["justified_by"] = [f"{f.kind_} {f.target}" for f in faults]
            row["justified_by"] += losses.justifying(prev, until=nxt.start)
            if not row["justified_by"]:
                evidence.append(
                    f"{where}: re-executed after run {prev.number}{on} ended "
                    f"{prev.end_type or 'never'} with no fault that could have stopped it"
                )
    figures: dict[str, Any] = {
        "reruns": reruns,
        "unjustified": len(evidence),
    }
    if evidence:
        return Verdict(
            NAME,
            FAIL,
            f"{evidence[0]} ({len(evidence)} of {len(reruns)} re-executions unjustified)",
            figures,
            evidence,
        )
    if not reruns:
        return Verdict(NAME, PASS, "no re-execution: every job ran once per attempt", figures)
    return Verdict(
        NAME,
        PASS,
        f"{len(reruns)} re-executions, each justified by a fault that could stop its run",
        figures,
    )


class SessionLosses:
    """The worker sessions their watchdog ended (``session_lost`` observations), each with the
    faults that explain it; see the module."""

    def __init__(
        self, history: History, *, lookback: float, teardown: float, horizon: float
    ) -> None:
        self.teardown = teardown
        self.explained: list[tuple[float, str, list[str]]] = []
        for o in history.observations(ObservationName.SESSION_LOST):
            worker = o.value.get("worker") if isinstance(o.value, dict) else None
            if worker is None:
                continue
            causes = [
                f"{f.kind_} {f.target}"
                for f in history.faults
                if (could_stop(f, worker) or f.target == Target.DBLINK)
                and meets(o.t - lookback, o.t, f, horizon)
            ]
            if causes:
                self.explained.append((o.t, worker, causes))

    @classmethod
    def of(cls, history: History) -> SessionLosses:
        """From the history's settings: the watchdog looks back one heartbeat interval and
        its beat's budget (the system's ``heartbeat_write_budget``)."""
        settings = history.meta.settings if history.meta else {}
        interval = float(settings.get("worker_heartbeat_interval", 0.0))
        pool = float(settings.get("db_pool_timeout", 0.0))
        beat = heartbeat_write_budget(pool, float(settings.get("db_connect_timeout", 0.0)))
        teardown = session_teardown_limit(float(settings.get("worker_timeout", 0.0)), pool)
        horizon = history.end.finished_at if history.end else float("inf")
        return cls(history, lookback=interval + beat, teardown=teardown, horizon=horizon)

    def justifying(self, run: Run, *, until: float) -> list[str]:
        """The explained losses of ``run``'s worker that ended the session ``run`` was in."""
        end = run.end if run.end is not None else until
        return [
            f"session lost on {worker} at {t:.3f} after {', '.join(causes)}"
            for t, worker, causes in self.explained
            if worker == run.worker and run.start - self.teardown <= t <= end
        ]
