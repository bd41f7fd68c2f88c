"""Derive job runs from ``procrastinate_events`` and pick the jobs a scenario submitted.

Events are read in insertion (id) order. A retry by the retry strategy writes a ``scheduled``
event (its ``at`` is the retry time) in the same transaction as ``deferred_for_retry``. Two
re-queues are not backoff retries although they look alike: a stalled-job recovery (the SUT
records it: observation ``stalled_recovery`` with ``{"job_id", "attempts"}``, read from its
``bulletproof_stalled_recoveries`` table) and a run aborted by a graceful shutdown (re-queued
with ``retry_in=0`` inside a ``sigterm`` fault window). The retry time alone cannot tell them
apart: on a loaded machine the failure may commit after the retry time it asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.history.records import Fault, History, JobEvent

#: A re-queue inside a SIGTERM window whose retry time is at most this far after it is an
#: aborted run re-queued at once, not a backoff retry.
IMMEDIATE = 0.01
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "aborted"})
RUN_ENDS = frozenset({"deferred_for_retry", "succeeded", "failed", "aborted"})


@dataclass
class Run:
    """One execution of a job: from its ``started`` event to the event that ended it."""

    job_id: int
    number: int
    start: float
    end: float | None = None
    end_type: str | None = None
    retry_at: float | None = None
    overlapped: bool = False
    recovered: bool = False
    aborted: bool = False

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start

    @property
    def requested_delay(self) -> float | None:
        """Retry time minus re-queue time, when the re-queue had a retry time."""
        if self.retry_at is None or self.end is None:
            return None
        return self.retry_at - self.end

    @property
    def scheduled_retry(self) -> bool:
        """Ended by the retry strategy with a retry time: not a stalled-job recovery, not a run
        aborted by a shutdown."""
        return (
            self.end_type == "deferred_for_retry"
            and self.retry_at is not None
            and not self.recovered
            and not self.aborted
        )


def runs_of(events: list[JobEvent]) -> list[Run]:
    """The runs in one job's events (id order). A ``started`` while a run is open closes it
    as ``overlapped`` (two executions at once)."""
    runs: list[Run] = []
    open_run: Run | None = None
    pending_schedule: float | None = None
    for ev in sorted(events, key=lambda e: e.id):
        if ev.type == "scheduled":
            last = runs[-1] if runs else None
            if (
                open_run is None
                and last is not None
                and last.end_type == "deferred_for_retry"
                and last.retry_at is None
                and pending_schedule is None
            ):
                last.retry_at = ev.at
            else:
                pending_schedule = ev.at
        elif ev.type == "started":
            if open_run is not None:
                open_run.overlapped = True
            open_run = Run(job_id=ev.job_id, number=len(runs) + 1, start=ev.at)
            runs.append(open_run)
            pending_schedule = None
        elif ev.type in RUN_ENDS and open_run is not None:
            open_run.end = ev.at
            open_run.end_type = ev.type
            if ev.type == "deferred_for_retry":
                open_run.retry_at = pending_schedule
            pending_schedule = None
            open_run = None
    return runs


def runs_by_job(history: History) -> dict[int, list[Run]]:
    """Job id -> its runs; re-queues by stalled-job recovery are marked ``recovered``, runs
    re-queued at once during a SIGTERM window ``aborted``."""
    recovered: set[tuple[int, int]] = set()
    for obs in history.observations("stalled_recovery"):
        if isinstance(obs.value, dict) and "job_id" in obs.value and "attempts" in obs.value:
            recovered.add((int(obs.value["job_id"]), int(obs.value["attempts"])))
    shutdowns = [f for f in history.faults if f.kind_ == "sigterm"]
    out: dict[int, list[Run]] = {}
    for job_id, evs in history.events_by_job().items():
        runs = runs_of(evs)
        for run in runs:
            if run.end_type != "deferred_for_retry" or run.end is None:
                continue
            # the recovery saw job.attempts == runs before this one
            if (job_id, run.number - 1) in recovered:
                run.recovered = True
            delay = run.requested_delay
            if (delay is None or delay <= IMMEDIATE) and any(
                f.start <= run.end and (f.end is None or run.end <= f.end) for f in shutdowns
            ):
                run.aborted = True
        out[job_id] = runs
    return out


def acknowledged_ids(history: History) -> list[int]:
    """Job ids of submissions the SUT acknowledged, in submission order, without repeats."""
    seen: dict[int, None] = {}
    for s in history.submits:
        if s.outcome == "ok" and s.job_id is not None:
            seen.setdefault(int(s.job_id), None)
    return list(seen)


def first_event(events: list[JobEvent], type_: str) -> JobEvent | None:
    """The first event of a type, or None."""
    return next((e for e in events if e.type == type_), None)


def overlaps(start: float, end: float, faults: list[Fault], horizon: float) -> bool:
    """Whether [start, end] meets any fault window (an open window lasts until ``horizon``)."""
    for f in faults:
        f_end = f.end if f.end is not None else horizon
        if start <= f_end and f.start <= end:
            return True
    return False


#: Faults that stop workers from picking up jobs (processes, PostgreSQL, the database link).
BLOCKING_FAULTS = frozenset({"kill", "sigterm", "restart", "pg_kill", "pg_restart"})
BLOCKING_TARGETS = ("worker", "postgres", "dblink", "api")


def scheduling_slack(history: History, *, floor: float = 0.0) -> float:
    """Measured pickup slack: the longest wait from ``deferred`` to the first ``started`` of
    any job (the scenario's and the SUT's periodic ones, which are deferred all along), over
    waits that met no fault on a worker, PostgreSQL or the database link; at least ``floor``."""
    by_job = history.events_by_job()
    horizon = history.end.finished_at if history.end else float("inf")
    faults = [
        f
        for f in history.faults
        if f.kind_ in BLOCKING_FAULTS or f.target.startswith(BLOCKING_TARGETS)
    ]
    slack = floor
    for events in by_job.values():
        deferred, started = first_event(events, "deferred"), first_event(events, "started")
        if deferred is None or started is None:
            continue
        if overlaps(deferred.at, started.at, faults, horizon):
            continue
        slack = max(slack, started.at - deferred.at)
    return slack
