"""Derive job runs from ``procrastinate_events`` and pick the jobs a scenario submitted.

Events are read in insertion (id) order. A retry by the retry strategy writes a ``scheduled``
event (its ``at`` is the retry time) in the same transaction as ``deferred_for_retry``; a
re-queue without a retry time (stalled-job recovery) writes ``deferred_for_retry`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.history.records import Fault, History, JobEvent

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

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start

    @property
    def scheduled_retry(self) -> bool:
        """Ended by the retry strategy (a re-queue with a retry time)."""
        return self.end_type == "deferred_for_retry" and self.retry_at is not None


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
    """Job id -> its runs."""
    return {job_id: runs_of(evs) for job_id, evs in history.events_by_job().items()}


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


def scheduling_slack(history: History, *, floor: float = 0.0) -> float:
    """Measured pickup slack: the longest wait from ``deferred`` to the first ``started`` of an
    acknowledged job, over jobs whose wait met no fault window; at least ``floor``."""
    by_job = history.events_by_job()
    horizon = history.end.finished_at if history.end else float("inf")
    faults = history.faults
    slack = floor
    for job_id in acknowledged_ids(history):
        events = by_job.get(job_id, [])
        deferred, started = first_event(events, "deferred"), first_event(events, "started")
        if deferred is None or started is None:
            continue
        if overlaps(deferred.at, started.at, faults, horizon):
            continue
        slack = max(slack, started.at - deferred.at)
    return slack
