"""Random schedules from one seed (Jepsen's generator): overlapping faults over a workload.

Faults start anywhere in the workload's span, last 0.5 to 4 s, may overlap each other across
targets (a worker dies while the database is away), never two at once on the same target
(the second would act on a process or link the first already holds), and all heal before the
quiet period. The same seed and size always give the same schedule.
"""

from __future__ import annotations

import random

from harness.randomized.schedule import FAULTS, FaultStep, Schedule, Workload

MIN_FAULT = 0.5
MAX_FAULT = 4.0


def _targets(fault: str, workers: int) -> list[str]:
    out: list[str] = []
    for target in FAULTS[fault]:
        out.extend(f"w{i}" for i in range(1, workers + 1)) if target == "w*" else out.append(target)
    return out


def generate(
    seed: int, *, workers: int = 2, faults: int = 6, workload: Workload | None = None
) -> Schedule:
    """A schedule of ``faults`` random faults over ``workload`` on ``workers`` workers."""
    rng = random.Random(f"schedule:{seed}")
    load = workload or Workload()
    span = max(load.seconds, 2 * MAX_FAULT)
    steps: list[FaultStep] = []
    attempts = 0
    while len(steps) < faults and attempts < faults * 50:
        attempts += 1
        fault = rng.choice(sorted(FAULTS))
        target = rng.choice(_targets(fault, workers))
        start = round(rng.uniform(0.0, span), 2)
        duration = round(rng.uniform(MIN_FAULT, MAX_FAULT), 2)
        step = FaultStep(start=start, duration=duration, fault=fault, target=target)
        if any(s.target == target and s.start < step.end and step.start < s.end for s in steps):
            continue  # one fault at a time per target
        if fault in ("pg_restart", "pg_kill") and any(
            s.fault in ("pg_restart", "pg_kill") and s.start < step.end and step.start < s.end
            for s in steps
        ):
            continue
        steps.append(step)
    return Schedule(seed=seed, workers=workers, workload=load).with_faults(steps)
