"""Shrink a failing schedule to a smaller one that still fails the same invariant.

First a try at merging: worker stops (kill, SIGTERM, pause of single workers) that together
left every worker stopped at once become one stop of every worker spanning them (alone, then
with the other faults), so a failure that needs all workers down does not depend on how long
other faults delayed a restart. Then
delta debugging (Zeller's ddmin) over the faults, then halving each remaining fault's
duration, then fewer jobs, then fewer workers, each candidate judged by re-running the real
stack (``fails``). Why delta debugging and not Hypothesis' shrinker: a trial costs tens of
seconds of real processes, so the search must be small and predictable: ddmin needs
O(n log n) trials for n faults in the usual case and works on our own data (start, duration,
fault, target) without a strategy that regenerates from a byte buffer; a flaky trial costs one
wrong step, never a wrong result (the minimal schedule is one that was seen failing). The
search stops when ``budget`` seconds are spent, returning the smallest failing schedule so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from harness.randomized.schedule import ALL_WORKERS, FaultStep, Schedule, hit

#: A fault is not shortened below this (seconds): shorter faults stop exercising anything.
MIN_DURATION = 0.25
MIN_JOBS = 5
#: Faults that stop a worker (merged into one stop of every worker when they overlap).
WORKER_STOPS = ("kill", "sigterm", "pause")


@dataclass
class Shrunk:
    """The smallest failing schedule found, and every trial (schedule size, failed or not)."""

    original: Schedule
    minimal: Schedule
    trials: list[tuple[int, float, bool]] = field(default_factory=list)
    stopped: str = "done"

    def to_dict(self) -> dict[str, object]:
        return {
            "original_faults": len(self.original.faults),
            "minimal_faults": len(self.minimal.faults),
            "trials": [
                {"faults": n, "jobs": jobs, "failed": failed} for n, jobs, failed in self.trials
            ],
            "stopped": self.stopped,
            "minimal": self.minimal.to_dict(),
        }


class _Budget(Exception):
    pass


def shrink(
    schedule: Schedule,
    fails: Callable[[Schedule], bool],
    *,
    budget: float,
    clock: Callable[[], float] = time.monotonic,
) -> Shrunk:
    """Smallest schedule derived from ``schedule`` for which ``fails`` holds (``schedule``
    itself is assumed to fail: it is the fallback)."""
    deadline = clock() + budget
    result = Shrunk(original=schedule, minimal=schedule)

    def test(candidate: Schedule) -> bool:
        if clock() >= deadline:
            raise _Budget
        failed = fails(candidate)
        result.trials.append((len(candidate.faults), float(candidate.workload.jobs), failed))
        if failed and _smaller(candidate, result.minimal):
            result.minimal = candidate
        return failed

    try:
        merged = _merge_worker_stops(schedule, test)
        faults = _ddmin(list(merged.faults), lambda fs: test(merged.with_faults(fs)))
        current = merged.with_faults(faults)
        current = _shorten(current, test)
        current = _fewer_jobs(current, test)
        _fewer_workers(current, test)
    except _Budget:
        result.stopped = f"budget of {budget:.0f}s spent"
    return result


def _smaller(a: Schedule, b: Schedule) -> bool:
    def size(s: Schedule) -> tuple[int, float, int, int]:
        return (len(s.faults), sum(f.duration for f in s.faults), s.workload.jobs, s.workers)

    return size(a) < size(b)


def _ddmin(items: list[FaultStep], fails: Callable[[Sequence[FaultStep]], bool]) -> list[FaultStep]:
    """Zeller's ddmin: a 1-minimal subset of ``items`` that still fails."""
    n = 2
    while len(items) >= 2:
        chunk = max(1, len(items) // n)
        subsets = [items[i : i + chunk] for i in range(0, len(items), chunk)]
        reduced = False
        for subset in subsets:
            if fails(subset):
                items, n, reduced = list(subset), 2, True
                break
        if not reduced:
            for subset in subsets:
                complement = [x for x in items if x not in subset]
                if complement and fails(complement):
                    items, n, reduced = complement, max(n - 1, 2), True
                    break
        if not reduced:
            if n >= len(items):
                break
            n = min(len(items), 2 * n)
    if len(items) == 1 and fails([]):
        return []
    return items


def _merge_worker_stops(schedule: Schedule, test: Callable[[Schedule], bool]) -> Schedule:
    """``schedule`` with its single-worker stops replaced by one stop of every worker (the
    earliest one's kind) from the first one's start to the last one's end, if they left every
    worker stopped at some moment and that fails: alone first, then with the other faults
    (which can hide the outage: a database link cut at the same time keeps ``/health`` from
    answering, so there is nothing to judge)."""
    workers = set(hit(ALL_WORKERS, schedule.workers))
    stops = [f for f in schedule.faults if f.fault in WORKER_STOPS and f.target in workers]
    if len(stops) < 2 or not _every_worker_stopped(stops, workers):
        return schedule
    rest = [f for f in schedule.faults if f not in stops]
    start, end = min(f.start for f in stops), max(f.end for f in stops)
    kind = min(stops, key=lambda f: f.start).fault
    step = FaultStep(start=start, duration=round(end - start, 2), fault=kind, target=ALL_WORKERS)
    for candidate in (schedule.with_faults([step]), schedule.with_faults([*rest, step])):
        if test(candidate):
            return candidate
        if not rest:
            break
    return schedule


def _every_worker_stopped(stops: Sequence[FaultStep], workers: set[str]) -> bool:
    """Whether at some moment each of ``workers`` is inside one of ``stops``' windows."""
    return any(
        all(any(f.target == w and f.start <= s.start < f.end for f in stops) for w in workers)
        for s in stops
    )


def _shorten(schedule: Schedule, test: Callable[[Schedule], bool]) -> Schedule:
    for index in range(len(schedule.faults)):
        while True:
            step = schedule.faults[index]
            shorter = round(step.duration / 2, 2)
            if shorter < MIN_DURATION:
                break
            faults = list(schedule.faults)
            faults[index] = replace(step, duration=shorter)
            candidate = replace(schedule, faults=tuple(faults))
            if not test(candidate):
                break
            schedule = candidate
    return schedule


def _fewer_jobs(schedule: Schedule, test: Callable[[Schedule], bool]) -> Schedule:
    while schedule.workload.jobs // 2 >= MIN_JOBS:
        load = replace(schedule.workload, jobs=schedule.workload.jobs // 2)
        candidate = replace(schedule, workload=load)
        if not test(candidate):
            break
        schedule = candidate
    return schedule


def _fewer_workers(schedule: Schedule, test: Callable[[Schedule], bool]) -> Schedule:
    used = {
        int(f.target[1:]) for f in schedule.faults if f.target[:1] == "w" and f.target[1:].isdigit()
    }
    while schedule.workers > max([1, *used]):
        candidate = replace(schedule, workers=schedule.workers - 1)
        if not test(candidate):
            break
        schedule = candidate
    return schedule
