"""A large, realistic synthetic history for scale benchmarks and checker cross-checks.

:func:`scale_history` simulates ``jobs`` jobs on a few workers while ``faults`` overlapping
fault windows of mixed kinds hit them: most jobs succeed on their first run, some are retried
on the backoff schedule, some fail for good, and runs in flight when their worker is killed
(or stopped with SIGTERM) are re-queued (stalled-job recovery, or aborted at once) and run
again elsewhere. Database-wide outages (``pg_restart``, ``proxy_down dblink``) delay what is
pending until they end. Events get ids in commit order, as ``procrastinate_events`` does.
Every random choice flows from ``seed``.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import Any

from harness.checker.retry_schedule import expected_delay
from harness.history.records import (
    ApiRequest,
    Effect,
    End,
    Fault,
    History,
    Job,
    JobEffect,
    JobEvent,
    Meta,
    Observation,
    Record,
    Submit,
)
from harness.vocabulary import (
    ApiOutcome,
    EventType,
    FaultKind,
    JobStatus,
    ObservationName,
    SubmitOutcome,
    Target,
    worker_target,
)

TASK = "system.tasks.fetch_and_cache_joke"
#: The retry strategy the synthetic SUT follows (seconds; ``max_attempts`` runs at most).
BASE_DELAY = 0.5
MAX_DELAY = 4.0
MAX_ATTEMPTS = 5
#: Seconds from a kill to the stalled-job recovery that re-queues its runs.
STALL_AFTER = 3.0
#: Mean seconds of one run, and how far apart submissions are (a few runs in flight at once).
RUN_MEAN = 0.15
SPACING = 0.05
WORKERS = ("w1", "w2", "w3", "w4")

#: (kind, target) of the fault mix; ``worker`` stands for a random worker.
FAULT_MIX: tuple[tuple[str, str], ...] = (
    (FaultKind.KILL, "worker"),
    (FaultKind.KILL, "worker"),
    (FaultKind.SIGTERM, "worker"),
    (FaultKind.PROXY_DOWN, Target.DBLINK),
    (FaultKind.PROXY_DOWN, Target.JOKEAPI),
    (FaultKind.PG_RESTART, Target.POSTGRES),
    (FaultKind.LATENCY, Target.JOKEAPI),
    (FaultKind.LATENCY, Target.DBLINK),
)


@dataclass
class _Sim:
    """The simulation's state: records, pending events (commit time, order, event)."""

    rng: random.Random
    t0: float
    faults: list[Fault]
    down: list[tuple[float, float]]  # merged database outages, sorted
    worker_down: dict[str, list[tuple[float, float]]]
    stops: dict[str, list[tuple[float, Fault]]]  # worker -> (start, kill/sigterm), sorted
    latency: list[tuple[float, float, float]]  # (start, end, added seconds)
    records: list[Record] = field(default_factory=list)
    events: list[tuple[float, int, int, str, float]] = field(default_factory=list)
    seq: int = 0

    def event(self, job_id: int, type_: str, at: float, commit: float | None = None) -> None:
        self.seq += 1
        when = at if commit is None else commit
        self.events.append((when, self.seq, job_id, type_, self.t0 + at))

    def observe(self, name: str, value: Any, at: float) -> None:
        self.records.append(Observation(name=name, value=value, t=self.t0 + at))

    def db_up(self, t: float) -> float:
        """``t``, or the end of the database outage it falls in (plus a reconnect)."""
        i = bisect.bisect_right(self.down, (t, float("inf"))) - 1
        if i >= 0 and self.down[i][0] <= t < self.down[i][1]:
            return self.down[i][1] + self.rng.uniform(0.05, 0.3)
        return t

    def pick_worker(self, t: float) -> tuple[str, float]:
        """A worker up at ``t`` (or the first back up) and when it starts the run."""
        names = list(WORKERS)
        self.rng.shuffle(names)
        back: list[tuple[float, str]] = []
        for name in names:
            ends = [e for s, e in self.worker_down[name] if s <= t < e]
            if not ends:
                return name, t
            back.append((max(ends) + 0.1, name))
        when, name = min(back)
        return name, when

    def stop_in(self, worker: str, start: float, end: float) -> Fault | None:
        """The first kill or SIGTERM of ``worker`` starting inside (start, end)."""
        stops = self.stops[worker]
        i = bisect.bisect_right(stops, (start, float("inf")))
        if i < len(stops) and stops[i][0] < end:
            return stops[i][1]
        return None

    def slower(self, t: float) -> float:
        return sum(extra for s, e, extra in self.latency if s <= t < e)


def _merge(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(windows):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _faults(rng: random.Random, n: int, span: float, t0: float) -> list[Fault]:
    faults: list[Fault] = []
    for fault_id in range(1, n + 1):
        kind, target = FAULT_MIX[rng.randrange(len(FAULT_MIX))]
        if target == "worker":
            target = worker_target(rng.choice(WORKERS))
        start = rng.uniform(0.05 * span, 0.95 * span)
        length = rng.uniform(0.5, 3.0) if kind != FaultKind.LATENCY else rng.uniform(1.0, 5.0)
        detail: dict[str, Any] = {"latency_ms": rng.choice((50, 100, 200))}
        if kind != FaultKind.LATENCY:
            detail = {}
        faults.append(
            Fault(
                fault_id=fault_id,
                kind_=kind,
                target=target,
                start=t0 + start,
                end=t0 + start + length,
                detail=detail,
            )
        )
    return faults


def _sim(rng: random.Random, faults: list[Fault], t0: float) -> _Sim:
    rel = [(f, f.start - t0, (f.end or f.start) - t0) for f in faults]
    down = _merge(
        [
            (s, e)
            for f, s, e in rel
            if f.kind_ == FaultKind.PG_RESTART
            or (f.kind_ == FaultKind.PROXY_DOWN and f.target == Target.DBLINK)
        ]
    )
    worker_down: dict[str, list[tuple[float, float]]] = {w: [] for w in WORKERS}
    stops: dict[str, list[tuple[float, Fault]]] = {w: [] for w in WORKERS}
    for f, s, e in rel:
        if f.kind_ in (FaultKind.KILL, FaultKind.SIGTERM):
            name = f.target.removeprefix("worker:")
            worker_down[name].append((s, e + (1.0 if f.kind_ == FaultKind.SIGTERM else 0.0)))
            stops[name].append((s, f))
    for name in WORKERS:
        stops[name].sort(key=lambda p: (p[0], p[1].fault_id))
    latency = [
        (s, e, float(f.detail.get("latency_ms", 0)) / 1000.0)
        for f, s, e in rel
        if f.kind_ == FaultKind.LATENCY
    ]
    return _Sim(rng, t0, faults, down, worker_down, stops, latency)


def _plan(rng: random.Random) -> list[str]:
    """Per-run outcomes: ``ok`` (succeeds), ``retry`` (fails, retried on schedule), ``failed``."""
    shape = rng.random()
    if shape < 0.85:
        return ["ok"]
    if shape < 0.97:
        return ["retry"] * rng.randint(1, MAX_ATTEMPTS - 1) + ["ok"]
    return ["retry"] * (MAX_ATTEMPTS - 1) + ["failed"]


def _job(sim: _Sim, job_id: int, submitted: float) -> tuple[str, int]:
    """Simulate one job from its submission; returns its final status and runs."""
    rng = sim.rng
    plan = _plan(rng)
    sim.event(job_id, EventType.DEFERRED, submitted + 0.005)
    ready = submitted + rng.uniform(0.01, 0.05)
    runs = 0
    while True:
        worker, start = sim.pick_worker(sim.db_up(ready))
        start = sim.db_up(start)
        runs += 1
        sim.event(job_id, EventType.STARTED, start)
        sim.observe(
            ObservationName.RUN_WORKER,
            {"job_id": job_id, "run": runs, "worker": worker},
            start + 0.001,
        )
        end = sim.db_up(start + rng.expovariate(1 / RUN_MEAN) + sim.slower(start))
        # a stop during the last allowed attempt is left out: its re-run would exceed them
        stop = sim.stop_in(worker, start, end) if runs < MAX_ATTEMPTS else None
        if stop is not None:
            # interrupted: a kill leaves it doing until the stalled-job recovery, a SIGTERM
            # aborts it at once (re-queued with retry_in=0 inside the window)
            if stop.kind_ == FaultKind.KILL:
                at = stop.start - sim.t0 + STALL_AFTER
                sim.observe(
                    ObservationName.STALLED_RECOVERY,
                    {"job_id": job_id, "attempts": runs - 1, "worker_id": 1},
                    at,
                )
            else:
                at = (stop.end or stop.start) - sim.t0 - 0.01
            sim.event(job_id, EventType.SCHEDULED, at, commit=at)
            sim.event(job_id, EventType.DEFERRED_FOR_RETRY, at)
            # the interrupted run counts as an attempt: keep at most MAX_ATTEMPTS runs
            if runs + len(plan) > MAX_ATTEMPTS and plan[0] == "retry":
                plan.pop(0)
            ready = at + rng.uniform(0.02, 0.3)
            continue
        outcome = plan.pop(0)
        _fetch(sim, job_id, outcome, end)
        if outcome == "retry":
            retry_at = end + expected_delay(runs, BASE_DELAY, MAX_DELAY)
            sim.event(job_id, EventType.SCHEDULED, retry_at, commit=end)
            sim.event(job_id, EventType.DEFERRED_FOR_RETRY, end)
            ready = retry_at + rng.uniform(0.005, 0.05)
            continue
        status = JobStatus.SUCCEEDED if outcome == "ok" else JobStatus.FAILED
        sim.event(job_id, status, end)
        return status, runs


def _fetch(sim: _Sim, job_id: int, outcome: str, end: float) -> None:
    """The fake API's request for this run, and the stored effect of a success."""
    t = sim.t0 + end - 0.05
    if outcome == "ok":
        joke = f"joke-{job_id}"
        sim.records.append(
            ApiRequest(t, t + 0.01, "GET", "/jokes/random", {}, 200, ApiOutcome.OK, joke)
        )
        sim.records.append(Effect(joke_id=joke, created_at=sim.t0 + end, updated_at=sim.t0 + end))
        sim.records.append(JobEffect(job_id=job_id, joke_id=joke, stored_at=sim.t0 + end))
    else:
        sim.records.append(
            ApiRequest(
                t, t + 0.01, "GET", "/jokes/random", {}, 503, ApiOutcome.FAULT, None, "http_status"
            )
        )


def scale_history(
    jobs: int = 10_000, faults: int = 100, *, seed: int = 0, t0: float = 1_700_000_000.0
) -> History:
    """A history of ``jobs`` submissions and ``faults`` overlapping fault windows (see the
    module's docstring). Calibration and end-of-run ``process_status`` observations included."""
    rng = random.Random(seed)
    span = jobs * SPACING
    fault_list = _faults(rng, faults, span, t0)
    sim = _sim(rng, fault_list, t0)
    sim.records.append(
        Meta(
            scenario="synthetic-scale",
            seed=seed,
            profile="fast",
            backend="local",
            settings={"base_delay": BASE_DELAY, "max_delay": MAX_DELAY},
            started_at=t0,
        )
    )
    cal_ids = [1, 2, 3]
    sim.observe(
        ObservationName.CALIBRATION,
        {"samples": 3, "pickup_p50": 0.02, "pickup_max": 0.04, "job_ids": cal_ids},
        0.0,
    )
    outcomes: dict[int, tuple[str, int]] = {}
    for job_id in range(1, jobs + 1):
        at = job_id * SPACING + rng.uniform(-0.02, 0.02)
        roll = rng.random()
        in_outage = sim.db_up(at) != at
        outcome = SubmitOutcome.OK
        if in_outage:
            outcome = SubmitOutcome.ERROR
        elif roll < 0.005 and job_id not in cal_ids:
            outcome = SubmitOutcome.UNKNOWN  # the answer was lost; the job exists
        sim.records.append(
            Submit(
                op_id=job_id,
                t_invoke=t0 + at,
                t_complete=t0 + at + 0.01,
                outcome=outcome,
                job_id=job_id if outcome == SubmitOutcome.OK else None,
                error=None if outcome == SubmitOutcome.OK else "synthetic",
            )
        )
        if outcome != SubmitOutcome.ERROR:
            outcomes[job_id] = _job(sim, job_id, at)
    sim.events.sort()
    records = sim.records
    records.extend(Fault(**_fault_fields(f, end=None)) for f in fault_list)  # opened
    records.extend(fault_list)  # closed: the last line per fault_id wins
    records.extend(
        JobEvent(id=i, job_id=job_id, type=type_, at=at)
        for i, (_, _, job_id, type_, at) in enumerate(sim.events, start=1)
    )
    records.extend(
        Job(id=j, task_name=TASK, queue="api_calls", status=status, attempts=runs)
        for j, (status, runs) in outcomes.items()
    )
    finished = max(at for *_, at in sim.events) if sim.events else t0
    for name in WORKERS:
        sim.observe(
            ObservationName.PROCESS_STATUS,
            {"process": name, "running": True, "exit_code": None, "stopped_by_nemesis": False},
            finished - t0 + 0.5,
        )
    records.append(End(finished_at=finished + 1.0, deadline=finished + 30.0))
    return History(records)


def _fault_fields(f: Fault, *, end: float | None) -> dict[str, Any]:
    return {
        "fault_id": f.fault_id,
        "kind_": f.kind_,
        "target": f.target,
        "start": f.start,
        "end": end,
        "detail": f.detail,
    }
