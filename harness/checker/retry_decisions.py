"""Retry decisions: the retry time the strategy asks for after run ``k`` fails is
``min(base * 2**(k-1), max)`` after the failure, within tolerance, whatever else went on.

The bug it exists to catch: a backoff that does not grow as promised (constant, linear, the
cap ignored) in a run full of faults, where :mod:`harness.checker.retry_schedule` cannot judge
when a retry *started* (a worker dies, the database is away: the start moves for reasons of
their own). The time a retry was *asked for* does not move with them: it is the strategy's
decision, written with the failure (Procrastinate's ``scheduled`` event beside its
``deferred_for_retry``). It is measured from the decision itself: the worker's log line
saying the run failed and will be retried (``run_failed``), written just before the strategy
decides. The failure's commit is no reference: on a loaded machine it came 55 to 72 ms after
the decision (a 4-worker soak on 2 cores), more than the calibrated tolerance. A retry with
no logged decision is not judged, nor one whose run met a fault that can freeze or hold the
worker between its log line and its decision (the database, its link, a freeze of the run's
worker); both are counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from harness.checker.retry_schedule import expected_delay
from harness.checker.runs import Run, acknowledged_ids, runs_by_job
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import Fault, History
from harness.vocabulary import FaultKind, Invariant, ObservationName, Target, worker_of

NAME = Invariant.RETRY_DECISIONS


def delays_commit(fault: Fault, worker: str | None) -> bool:
    """Whether ``fault`` can hold a failure's commit back after the strategy decided: any
    fault on PostgreSQL, on the database link or on every worker's heartbeat, or a freeze of
    the run's worker (any worker when its log does not say)."""
    if fault.target in (Target.POSTGRES, Target.DBLINK, Target.HEARTBEAT):
        return True
    if fault.kind_ in (FaultKind.PG_KILL, FaultKind.PG_RESTART):
        return True
    name = worker_of(fault.target)
    return fault.kind_ == FaultKind.PAUSE and name is not None and worker in (None, name)


def _disturbed(history: History, run: Run) -> bool:
    assert run.end is not None
    horizon = history.end.finished_at if history.end else float("inf")
    for f in history.faults:
        f_end = f.end if f.end is not None else horizon
        if delays_commit(f, run.worker) and f.start <= run.end and run.start <= f_end:
            return True
    return False


def check_retry_decisions(
    history: History,
    *,
    base_delay: float,
    max_delay: float,
    tolerance: float,
    jobs: Iterable[int] | None = None,
) -> Verdict:
    """Fail when a scheduled retry was asked for earlier than ``expected - tolerance`` or
    later than ``expected + tolerance`` after its decision (``run_failed``). Retries with no
    logged decision, or whose run met a fault that can hold its worker up
    (:func:`delays_commit`), are not judged. Unknown when no
    retry is judged, or when ``tolerance`` is not below half the smallest expected delay (a
    doubling could not be told from none)."""
    by_job = runs_by_job(history)
    decided = {
        (int(o.value["job_id"]), int(o.value["run"])): o.t
        for o in history.observations(ObservationName.RUN_FAILED)
        if isinstance(o.value, dict) and {"job_id", "run"} <= set(o.value)
    }
    unlogged = 0
    ids = list(jobs) if jobs is not None else acknowledged_ids(history)
    judged: list[dict[str, Any]] = []
    evidence: list[str] = []
    skipped = 0
    for job_id in ids:
        for prev, _nxt in itertools.pairwise(by_job.get(job_id, [])):
            if not prev.scheduled_retry or prev.end is None or prev.retry_at is None:
                continue
            decision = decided.get((job_id, prev.number))
            if decision is None:
                unlogged += 1
                continue
            if _disturbed(history, prev):
                skipped += 1
                continue
            expected = expected_delay(prev.number, base_delay, max_delay)
            requested = prev.retry_at - decision
            judged.append(
                {
                    "job_id": job_id,
                    "run": prev.number,
                    "requested": round(requested, 4),
                    "expected": expected,
                }
            )
            if abs(requested - expected) > tolerance:
                side = "earlier" if requested < expected else "later"
                evidence.append(
                    f"job {job_id}: after run {prev.number} a retry was asked for "
                    f"{requested:.3f}s after the decision, {side} than {expected:.3f}s "
                    f"{'-' if side == 'earlier' else '+'} {tolerance:.3f}s"
                )
    smallest = min((d["expected"] for d in judged), default=None)
    figures: dict[str, Any] = {
        "decisions": judged,
        "not_judged": skipped,
        "no_logged_decision": unlogged,
        "base_delay": base_delay,
        "max_delay": max_delay,
        "tolerance": tolerance,
        "runs_judged": sorted({d["run"] for d in judged}),
    }
    if evidence:
        return Verdict(
            NAME,
            FAIL,
            f"{evidence[0]} ({len(evidence)} of {len(judged)} retry decisions off schedule)",
            figures,
            evidence,
        )
    if smallest is None:
        return Verdict(
            NAME,
            UNKNOWN,
            f"no retry decision to judge ({skipped} met a fault that can delay its commit, "
            f"{unlogged} had no logged decision)",
            figures,
        )
    if tolerance >= smallest / 2:
        return Verdict(
            NAME,
            UNKNOWN,
            f"tolerance {tolerance:.3f}s is not below half the smallest delay judged "
            f"({smallest:.3f}s): a doubling could not be told from none",
            figures,
        )
    return Verdict(
        NAME,
        PASS,
        f"{len(judged)} retry decisions after runs {figures['runs_judged']} on schedule within "
        f"{tolerance:.3f}s ({skipped} not judged: a fault could delay their commit)",
        figures,
    )
