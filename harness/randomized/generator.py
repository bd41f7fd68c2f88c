"""Random schedules from one seed (Jepsen's generator): overlapping faults over a workload.

Each schedule first draws its **mix** (Jepsen's nemesis packages), which fault kinds it draws
from:

- ``overlapping``: every kind at once (a worker dies while the database is away, a deploy's
  SIGTERM lands during a network cut);
- ``processes``: the processes only (crashes, deploys' SIGTERMs, GC pauses, a shared host
  going down), with the database and the links healthy;
- ``dependencies``: what the processes depend on only (PostgreSQL restarts and crashes, the
  database and joke API links cut, blackholed, reset or slowed).

Why not always ``overlapping``: a property such as "a killed worker's job runs again within
the stall-recovery budget" is judged only when nothing else held recovery up, and "a SIGTERM
aborts the run by ``WORKER_TIMEOUT``" only when no database fault delayed the abort's write.
Six overlapping faults over eight seconds leave such a window in about one run in twenty
(measured on the generator: a judged kill in 6% of schedules, every worker stopped at once in
6.5%), so a stall recovery twice too slow went unnoticed in 10 runs. The ``processes`` mix
gives it in about one run in four, and the three mixes are drawn equally.

Faults start anywhere in the workload's span, last 0.5 to 4 s, may overlap each other across
targets, never two at once on the same part of the stack (the second would act on a process
or link the first already holds; ``workers`` holds every worker), at most one PostgreSQL stop
at a time, and all heal before the quiet period. The same seed and size always give the same
schedule.
"""

from __future__ import annotations

import random

from harness.randomized.schedule import FAULTS, FaultStep, Schedule, Workload, hit

MIN_FAULT = 0.5
MAX_FAULT = 4.0
MIN_GAP, MAX_GAP = 0.1, 1.0  # between two faults of the sequential mix

_PROCESS_FAULTS = frozenset({"kill", "sigterm", "pause"})
#: Which fault kinds each mix draws from.
MIXES: dict[str, frozenset[str]] = {
    "overlapping": frozenset(FAULTS),
    "processes": _PROCESS_FAULTS,
    "dependencies": frozenset(FAULTS) - _PROCESS_FAULTS,
}
#: Mixes whose faults come one at a time (Jepsen's start/stop nemesis cadence).
SEQUENTIAL = frozenset({"processes"})
_PG_STOPS = ("pg_restart", "pg_kill")


def _targets(fault: str, workers: int) -> list[str]:
    out: list[str] = []
    for target in FAULTS[fault]:
        out.extend(f"w{i}" for i in range(1, workers + 1)) if target == "w*" else out.append(target)
    return out


def _clashes(step: FaultStep, steps: list[FaultStep], workers: int) -> bool:
    """Whether ``step`` overlaps a fault on the same part of the stack, or stops PostgreSQL
    while another fault already does."""
    parts = set(hit(step.target, workers))
    for s in steps:
        if not (s.start < step.end and step.start < s.end):
            continue
        if parts & set(hit(s.target, workers)):
            return True
        if step.fault in _PG_STOPS and s.fault in _PG_STOPS:
            return True
    return False


def generate(
    seed: int,
    *,
    workers: int = 2,
    faults: int = 6,
    workload: Workload | None = None,
    mix: str | None = None,
) -> Schedule:
    """A schedule of ``faults`` random faults over ``workload`` on ``workers`` workers, from
    ``mix`` (one of :data:`MIXES`; by default drawn from the seed)."""
    rng = random.Random(f"schedule:{seed}")
    chosen = mix or rng.choice(sorted(MIXES))
    if chosen not in MIXES:
        raise ValueError(f"unknown mix {chosen!r}; use one of {', '.join(MIXES)}")
    kinds = sorted(MIXES[chosen])
    load = workload or Workload()
    span = max(load.seconds, 2 * MAX_FAULT)
    if chosen in SEQUENTIAL:
        steps = _sequential(rng, kinds, faults, workers, span)
    else:
        steps = _overlapping(rng, kinds, faults, workers, span)
    schedule = Schedule(seed=seed, workers=workers, workload=load, meta={"mix": chosen})
    return schedule.with_faults(steps)


def _overlapping(
    rng: random.Random, kinds: list[str], faults: int, workers: int, span: float
) -> list[FaultStep]:
    """Faults anywhere in ``span``, overlapping unless they clash."""
    steps: list[FaultStep] = []
    attempts = 0
    while len(steps) < faults and attempts < faults * 50:
        attempts += 1
        fault = rng.choice(kinds)
        target = rng.choice(_targets(fault, workers))
        start = round(rng.uniform(0.0, span), 2)
        duration = round(rng.uniform(MIN_FAULT, MAX_FAULT), 2)
        step = FaultStep(start=start, duration=duration, fault=fault, target=target)
        if not _clashes(step, steps, workers):
            steps.append(step)
    return steps


def _sequential(
    rng: random.Random, kinds: list[str], faults: int, workers: int, span: float
) -> list[FaultStep]:
    """One fault at a time, each after the previous healed and a gap of up to ``MAX_GAP``."""
    steps: list[FaultStep] = []
    at = rng.uniform(0.0, span / max(faults, 1))
    for _ in range(faults):
        fault = rng.choice(kinds)
        target = rng.choice(_targets(fault, workers))
        duration = round(rng.uniform(MIN_FAULT, MAX_FAULT), 2)
        steps.append(FaultStep(start=round(at, 2), duration=duration, fault=fault, target=target))
        at += duration + rng.uniform(MIN_GAP, MAX_GAP)
    return steps
