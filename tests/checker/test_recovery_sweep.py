"""The recovery checks' sweep gives the verdicts of the direct jobs x faults scan it replaced."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.checker import check_queue_resumes, check_recovery_latency
from harness.checker.recovery_latency import (
    _faults,
    _progress,
    _reference,
    _row,
    _stab,
    _verdict,
)
from harness.checker.runs import acknowledged_ids, runs_by_job
from harness.checker.verdict import Verdict
from harness.history.builder import HistoryBuilder
from harness.history.records import History
from harness.history.synthetic import scale_history
from harness.vocabulary import EventType, FaultKind, Target, worker_of

WORKER_FAULTS = (FaultKind.KILL, FaultKind.SIGTERM)
DB_FAULTS = (FaultKind.PG_RESTART, FaultKind.PROXY_DOWN)
DB_TARGETS = (Target.POSTGRES, Target.DBLINK)


def _scan_recovery(
    history: History, budget: float, measure_from: str, jobs: list[int] | None
) -> Verdict:
    """check_recovery_latency as it was: every job for every fault."""
    faults = _faults(history, WORKER_FAULTS, "worker")
    by_job = runs_by_job(history)
    ids = list(jobs) if jobs is not None else acknowledged_ids(history)
    rows: list[dict[str, Any]] = []
    for fault in faults:
        reference = _reference(fault, measure_from)
        what = f"{fault.kind_} {fault.target}"
        for job_id in ids:
            runs = by_job.get(job_id, [])
            hit = next(
                (
                    r
                    for r in runs
                    if r.start <= fault.start and (r.end is None or r.end > fault.start)
                ),
                None,
            )
            if (
                hit is None
                or hit.end_type in (EventType.SUCCEEDED, EventType.FAILED)
                or hit.scheduled_retry
            ):
                continue
            victim = worker_of(fault.target)
            if victim is not None and hit.worker not in (None, victim):
                continue
            again = next((r for r in runs if r.number > hit.number), None)
            problem = None
            latency = None
            if again is None:
                problem = f"job {job_id} never ran again after {what}"
            else:
                latency = round(max(0.0, again.start - reference), 4)
                if latency > budget:
                    problem = (
                        f"job {job_id} ran again {latency:.3f}s after {what}, budget {budget:.3f}s"
                    )
            rows.append(_row(what, job_id, latency, budget, None, problem))
    return _verdict(rows, budget, None, len(faults), "interrupted jobs ran again")


def _scan_resumes(
    history: History, budget: float, measure_from: str, jobs: list[int] | None
) -> Verdict:
    """check_queue_resumes as it was: every job for every fault."""
    faults = _faults(history, DB_FAULTS, DB_TARGETS)
    ids = list(jobs) if jobs is not None else acknowledged_ids(history)
    events = history.events_by_job()
    rows: list[dict[str, Any]] = []
    for fault in faults:
        reference = _reference(fault, measure_from)
        what = f"{fault.kind_} {fault.target}"
        for job_id in ids:
            pending, latency = _progress(events.get(job_id, []), reference)
            if not pending:
                continue
            if latency is None:
                problem: str | None = f"job {job_id}, pending when {what} ended, never moved again"
            elif latency > budget:
                problem = (
                    f"job {job_id} moved again {latency:.3f}s after {what}, budget {budget:.3f}s"
                )
            else:
                problem = None
            rows.append(_row(what, job_id, latency, budget, None, problem))
    return _verdict(rows, budget, None, len(faults), "pending jobs moved again")


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(20, 300),
    faults=st.integers(1, 30),
    budget=st.sampled_from([0.1, 0.5, 3.0, 10.0]),
    measure_from=st.sampled_from(["start", "end"]),
    subset=st.booleans(),
)
def test_sweep_matches_the_direct_scan(
    seed: int, size: int, faults: int, budget: float, measure_from: str, subset: bool
) -> None:
    h = scale_history(size, faults, seed=seed)
    jobs: list[int] | None = None
    if subset:  # a chosen list of jobs, some named twice, some unknown
        rng = random.Random(seed)
        jobs = [*rng.sample(range(1, size + 5), k=size // 2), 1, 1]
    new = check_recovery_latency(
        h, budget=budget, fault_kinds=WORKER_FAULTS, measure_from=measure_from, jobs=jobs
    )
    assert new == _scan_recovery(h, budget, measure_from, jobs)
    new = check_queue_resumes(
        h,
        budget=budget,
        fault_kinds=DB_FAULTS,
        target_prefix=DB_TARGETS,
        measure_from=measure_from,
        jobs=jobs,
    )
    assert new == _scan_resumes(h, budget, measure_from, jobs)


def test_the_histories_compared_have_recoveries_to_judge() -> None:
    """The comparison above is not between two empty verdicts."""
    h = scale_history(2_000, 20, seed=3)
    rec = check_recovery_latency(h, budget=10.0, fault_kinds=WORKER_FAULTS)
    res = check_queue_resumes(h, budget=0.1, fault_kinds=DB_FAULTS, target_prefix=DB_TARGETS)
    assert len(rec.figures["recoveries"]) > 5
    assert res.figures["failed"] > 0 and len(res.figures["recoveries"]) > res.figures["failed"]


def test_stab_finds_the_intervals_holding_each_point() -> None:
    intervals = [(0.0, 2.0, "a"), (1.0, float("inf"), "b"), (3.0, 4.0, "c")]
    assert _stab(intervals, [3.5, 0.0, 2.0, 1.0, 9.0]) == [
        ["b", "c"],
        ["a"],
        ["b"],
        ["a", "b"],
        ["b"],
    ]


def test_the_first_run_in_flight_is_the_one_judged() -> None:
    """Two runs of one job at once, both in flight at a kill: the earlier one is judged."""
    b = HistoryBuilder()
    b.submit(1, 0.0)
    b.run(1, 1.0)  # never ends: closed as overlapped by the next start
    b.run(1, 1.5, 3.0)
    b.fault(FaultKind.KILL, "worker:w1", 2.0, 2.5)
    h = b.build()
    new = check_recovery_latency(h, budget=1.0, fault_kinds=WORKER_FAULTS)
    assert new == _scan_recovery(h, 1.0, "end", None)
    assert [r["job_id"] for r in new.figures["recoveries"]] == [1]
