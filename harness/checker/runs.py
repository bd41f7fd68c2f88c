"""Derive job runs from ``procrastinate_events`` and pick the jobs a scenario submitted.

Events are read in insertion (id) order. A retry by the retry strategy writes a ``scheduled``
event (its ``at`` is the retry time) in the same transaction as ``deferred_for_retry``. Two
re-queues are not backoff retries although they look alike: a stalled-job recovery (the SUT
records it: observation ``stalled_recovery`` with ``{"job_id", "attempts"}``, read from its
``bulletproof_stalled_recoveries`` table) and a run aborted by a graceful shutdown (re-queued
with ``retry_in=0`` inside a ``sigterm`` or ``restart`` window of its worker). The retry time
alone cannot tell them apart: on a loaded machine the failure may commit after the retry time
it asked for. Which worker ran a run comes from the workers' logs (``run_worker``
observations, :func:`harness.history.collect.collect_run_workers`).

This is the one run derivation: the checker and the report both read runs from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.checker.verdict import UNKNOWN, Verdict
from harness.history.records import Fault, History, JobEvent
from harness.vocabulary import (
    RUN_ENDINGS,
    EventType,
    FaultKind,
    ObservationName,
    SubmitOutcome,
    Target,
    worker_of,
)

#: A re-queue inside a SIGTERM window whose retry time is at most this far after it is an
#: aborted run re-queued at once (the system asks for ``retry_in=0``), not a backoff retry.
#: A classification threshold, not a tolerance: backoff delays are orders of magnitude longer.
IMMEDIATE = 0.01

#: Faults on ``worker:<name>`` that stop (or freeze, or cut off) that worker's runs.
WORKER_STOPPING = frozenset(
    {
        FaultKind.KILL,
        FaultKind.SIGTERM,
        FaultKind.RESTART,
        FaultKind.PAUSE,
        FaultKind.TERMINATE_BACKEND,
    }
)
#: Faults that stop every worker's runs, whatever their target.
DATABASE_STOPPING = frozenset(
    {FaultKind.PG_KILL, FaultKind.PG_RESTART, FaultKind.HEARTBEAT_REJECTED}
)
#: Faults on the database link that cut every worker off.
DBLINK_STOPPING = frozenset({FaultKind.PROXY_DOWN, FaultKind.TIMEOUT, FaultKind.RESET_PEER})
#: Faults whose window covers a graceful stop (a run aborted in it is re-queued at once).
SHUTDOWNS = frozenset({FaultKind.SIGTERM, FaultKind.RESTART})


@dataclass
class Run:
    """One execution of a job: from its ``started`` event to the event that ended it.
    ``worker``: the worker that ran it, when its log says so (None: unknown)."""

    job_id: int
    number: int
    start: float
    end: float | None = None
    end_type: str | None = None
    retry_at: float | None = None
    overlapped: bool = False
    recovered: bool = False
    aborted: bool = False
    worker: str | None = None

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
    def interrupted(self) -> bool:
        """Ended by its worker's abort (re-queued) or by a stalled-job recovery: not by the
        job's own outcome."""
        return self.aborted or self.recovered

    @property
    def scheduled_retry(self) -> bool:
        """Ended by the retry strategy with a retry time: not a stalled-job recovery, not a run
        aborted by a shutdown."""
        return (
            self.end_type == EventType.DEFERRED_FOR_RETRY
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
        if ev.type == EventType.SCHEDULED:
            last = runs[-1] if runs else None
            if (
                open_run is None
                and last is not None
                and last.end_type == EventType.DEFERRED_FOR_RETRY
                and last.retry_at is None
                and pending_schedule is None
            ):
                last.retry_at = ev.at
            else:
                pending_schedule = ev.at
        elif ev.type == EventType.STARTED:
            if open_run is not None:
                open_run.overlapped = True
            open_run = Run(job_id=ev.job_id, number=len(runs) + 1, start=ev.at)
            runs.append(open_run)
            pending_schedule = None
        elif ev.type in RUN_ENDINGS and open_run is not None:
            open_run.end = ev.at
            open_run.end_type = ev.type
            if ev.type == EventType.DEFERRED_FOR_RETRY:
                open_run.retry_at = pending_schedule
            pending_schedule = None
            open_run = None
    return runs


#: Worker-log lines that end a run, in the worker's own clock: Procrastinate's end line
#: (whatever the status), the run aborted, its timeout fired, it failed.
ENDING_LINES = (
    ObservationName.RUN_ENDED,
    ObservationName.RUN_ABORTED,
    ObservationName.RUN_TIMED_OUT,
    ObservationName.RUN_FAILED,
)


def logged_ends(history: History) -> dict[tuple[int, int, str | None], float]:
    """(job, run, worker) -> the time of the earliest worker-log line that ended the run."""
    out: dict[tuple[int, int, str | None], float] = {}
    for name in ENDING_LINES:
        for o in history.observations(name):
            if isinstance(o.value, dict) and {"job_id", "run"} <= set(o.value):
                key = (int(o.value["job_id"]), int(o.value["run"]), o.value.get("worker"))
                out[key] = min(o.t, out.get(key, o.t))
    return out


def run_workers(history: History) -> dict[tuple[int, int], str]:
    """(job id, run number) -> the worker whose log shows that run; a run two logs claim is
    left out (unknown)."""
    seen: dict[tuple[int, int], set[str]] = {}
    for obs in history.observations(ObservationName.RUN_WORKER):
        value = obs.value
        if isinstance(value, dict) and {"job_id", "run", "worker"} <= set(value):
            key = (int(value["job_id"]), int(value["run"]))
            seen.setdefault(key, set()).add(str(value["worker"]))
    return {key: next(iter(names)) for key, names in seen.items() if len(names) == 1}


def runs_by_job(history: History) -> dict[int, list[Run]]:
    """Job id -> its runs, each with its worker when known; re-queues by stalled-job recovery
    are marked ``recovered``; runs whose worker's log says it aborted and re-queued them
    (``run_aborted``: a shutdown past WORKER_TIMEOUT, a lost database session), or re-queued
    at once during a graceful stop of their worker (any worker when unknown), ``aborted``."""
    logged_aborts = {
        (int(obs.value["job_id"]), int(obs.value["run"]))
        for obs in history.observations(ObservationName.RUN_ABORTED)
        if isinstance(obs.value, dict) and {"job_id", "run"} <= set(obs.value)
    }
    recovered: set[tuple[int, int]] = set()
    for obs in history.observations(ObservationName.STALLED_RECOVERY):
        if isinstance(obs.value, dict) and "job_id" in obs.value and "attempts" in obs.value:
            recovered.add((int(obs.value["job_id"]), int(obs.value["attempts"])))
    workers = run_workers(history)
    shutdowns = [f for f in history.faults if f.kind_ in SHUTDOWNS]
    out: dict[int, list[Run]] = {}
    for job_id, evs in history.events_by_job().items():
        runs = runs_of(evs)
        for run in runs:
            run.worker = workers.get((job_id, run.number))
            if run.end_type != EventType.DEFERRED_FOR_RETRY or run.end is None:
                continue
            # the recovery saw job.attempts == runs before this one
            if (job_id, run.number - 1) in recovered:
                run.recovered = True
            if (job_id, run.number) in logged_aborts:
                run.aborted = True
                continue
            delay = run.requested_delay
            end = run.end
            if (delay is None or delay <= IMMEDIATE) and any(
                f.start <= end
                and (f.end is None or end <= f.end)
                and (run.worker is None or worker_of(f.target) in (None, run.worker))
                for f in shutdowns
            ):
                run.aborted = True
        out[job_id] = runs
    return out


def acknowledged_ids(history: History) -> list[int]:
    """Job ids of submissions the SUT acknowledged, in submission order, without repeats."""
    seen: dict[int, None] = {}
    for s in history.submits:
        if s.outcome == SubmitOutcome.OK and s.job_id is not None:
            seen.setdefault(int(s.job_id), None)
    return list(seen)


def first_event(events: list[JobEvent], type_: str) -> JobEvent | None:
    """The first event of a type, or None."""
    return next((e for e in events if e.type == type_), None)


def overlaps(start: float, end: float, faults: list[Fault], horizon: float) -> bool:
    """Whether [start, end] meets any fault window (an open window lasts until ``horizon``)."""
    return any(meets(start, end, f, horizon) for f in faults)


def meets(start: float, end: float, fault: Fault, horizon: float) -> bool:
    """Whether ``fault``'s window (open: until ``horizon``) meets [start, end]."""
    f_end = fault.end if fault.end is not None else max(horizon, fault.start)
    return start <= f_end and fault.start <= end


def could_stop(fault: Fault, worker: str | None) -> bool:
    """Whether ``fault`` could stop (kill, freeze, cut off) a run on ``worker`` (None: any
    worker): a process fault of that worker, or a database-wide fault (PostgreSQL killed or
    restarted, any fault on PostgreSQL, the database link down, blackholed or reset)."""
    if fault.kind_ in DATABASE_STOPPING or fault.target == Target.POSTGRES:
        return True
    if fault.target == Target.DBLINK and fault.kind_ in DBLINK_STOPPING:
        return True
    name = worker_of(fault.target)
    return name is not None and fault.kind_ in WORKER_STOPPING and worker in (None, name)


def stopping_faults(history: History, run: Run, *, until: float | None = None) -> list[Fault]:
    """The faults that could have stopped ``run``: :func:`could_stop` on its worker, with a
    window meeting [start, end] (``until`` when the run never ended; open windows last until
    the history's end)."""
    horizon = history.end.finished_at if history.end else float("inf")
    end = run.end if run.end is not None else (until if until is not None else horizon)
    return [
        f for f in history.faults if could_stop(f, run.worker) and meets(run.start, end, f, horizon)
    ]


#: Two stalls of one loop closer than this (seconds) are one stretch: the loop ran between them
#: only long enough to take the next look (``system.looplag.INTERVAL``), not to catch up.
STALL_JOIN = 0.02


def loop_stalls(
    history: History, *, also: tuple[str, ...] = ()
) -> dict[str, list[tuple[float, float]]]:
    """Worker -> the stretches its event loop was not seen running (``loop_stall``
    observations from its log), in time order, stalls closer than :data:`STALL_JOIN` joined.
    ``also``: more observation names with the same ``{worker, start, end}`` shape whose
    stretches count too (``slow_fetch``: the worker waited on the database to get a job)."""
    raw: dict[str, list[tuple[float, float]]] = {}
    for name in (ObservationName.LOOP_STALL, *also):
        for o in history.observations(name):
            v = o.value
            if isinstance(v, dict) and {"worker", "start", "end"} <= set(v):
                stretch = (float(v["start"]), float(v["end"]))
                raw.setdefault(str(v["worker"]), []).append(stretch)
    out: dict[str, list[tuple[float, float]]] = {}
    for worker, stretches in raw.items():
        joined: list[tuple[float, float]] = []
        for start, end in sorted(stretches):
            if joined and start - joined[-1][1] <= STALL_JOIN:
                joined[-1] = (joined[-1][0], max(joined[-1][1], end))
            else:
                joined.append((start, end))
        out[worker] = joined
    return out


def stalled_for(stretches: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end] that fall in ``stretches`` (a loop not seen running)."""
    return sum(max(0.0, min(end, s_end) - max(start, s_start)) for s_start, s_end in stretches)


def stall_at(stretches: list[tuple[float, float]], t: float) -> float:
    """Seconds from ``t`` to the end of the stretch that holds ``t`` (0: the loop ran at t):
    how long a signal or a timer due at ``t`` waited for the loop."""
    return max((s_end - t for s_start, s_end in stretches if s_start <= t < s_end), default=0.0)


def stalled_verdict(name: str, stalled: list[str], figures: dict[str, Any]) -> Verdict:
    """Unknown for runs a stalled event loop left unjudged (each explained in ``stalled``)."""
    return Verdict(
        name, UNKNOWN, f"could not judge {len(stalled)} runs: {stalled[0]}", figures, stalled
    )
