"""Retry schedule: the wait before run k+1 is ``min(base * 2**(k-1), max)``, within tolerance.

The bug it exists to catch: a retry strategy whose backoff does not grow as promised (constant,
linear, off by one doubling, the cap ignored) or a queue that runs retries late (a retry picked
up at the next poll instead of at its time) or early. ``expected_delay`` is the seed's formula,
restated here on purpose: a checker importing the system's own formula would agree with a
broken one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from harness.checker.runs import (
    acknowledged_ids,
    loop_stalls,
    runs_by_job,
    stalled_for,
    stalled_verdict,
)
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import History
from harness.vocabulary import Invariant, ObservationName

NAME = Invariant.RETRY_SCHEDULE


def expected_delay(run_number: int, base_delay: float, max_delay: float) -> float:
    """The wait after run ``run_number`` (1-based) fails: ``min(base * 2**(n-1), max)``."""
    return float(min(base_delay * 2 ** (run_number - 1), max_delay))


def is_capped(run_number: int, base_delay: float, max_delay: float) -> bool:
    """Whether the cap shortens the wait after run ``run_number`` (an uncapped schedule would
    wait longer there)."""
    return bool(base_delay * 2 ** (run_number - 1) > max_delay)


def check_retry_schedule(
    history: History,
    *,
    base_delay: float = 0.0,
    max_delay: float = 0.0,
    tolerance: float,
    jobs: Iterable[int] | None = None,
    require_cap: bool = False,
    plan: Sequence[float] | None = None,
) -> Verdict:
    """Check each scheduled retry (run ``k`` failed, run ``k+1`` started) against the formula
    ``expected = min(base * 2**(k-1), max)``:

    - late: run ``k+1`` started more than ``expected + tolerance`` after the failure;
    - early, queue: it started more than ``tolerance`` before the retry time it was given;
    - early, strategy: the retry time asked for is less than ``expected - tolerance`` after the
      failure (the decision precedes the failure's commit by a little: within the tolerance).

    A retry late by no more than the event loop of the worker that ran it stood still after
    its retry time (``loop_stall``) or that worker's fetches waited on the database
    (``slow_fetch``: a fetch that found a job and took longer than the system's
    ``SLOW_FETCH``), and asked for no shorter a wait than the formula allows, cannot be judged:
    unknown, naming it, when no other retry fails (a machine too busy to run the worker or the
    database, not a schedule).

    ``tolerance`` comes from the calibration (harness/budgets.py), never from this run. It must
    be below half the smallest expected delay judged, or a doubling cannot be told from no
    doubling: unknown. No retry: unknown. With ``require_cap``, no retry whose wait the cap
    shortened: unknown (the cap was not exercised).

    ``plan`` replaces the formula with a stated plan (``plan[k-1]`` after run ``k``; a
    retry beyond the plan is judged against its last entry): what a user's own strategy
    decides (:mod:`harness.target.expect`).
    """
    if plan is not None and not plan:
        raise ValueError("plan is empty (the strategy never retries)")
    if plan is None and base_delay <= 0:
        raise ValueError("give base_delay and max_delay, or a plan")

    def expected_after(run_number: int) -> float:
        if plan is not None:
            return float(plan[min(run_number, len(plan)) - 1])
        return expected_delay(run_number, base_delay, max_delay)

    def capped_after(run_number: int) -> bool:
        return plan is None and is_capped(run_number, base_delay, max_delay)

    by_job = runs_by_job(history)
    ids = list(jobs) if jobs is not None else acknowledged_ids(history)
    # a pickup waits on the worker's loop and on its fetch (the database answering)
    stalls = loop_stalls(history, also=(ObservationName.SLOW_FETCH,))
    delays: list[dict[str, Any]] = []
    evidence: list[str] = []
    stalled: list[str] = []
    for job_id in ids:
        runs = by_job.get(job_id, [])
        for prev, nxt in itertools.pairwise(runs):
            if not prev.scheduled_retry or prev.end is None or prev.retry_at is None:
                continue
            expected = expected_after(prev.number)
            observed = nxt.start - prev.end
            requested = prev.retry_at - prev.end
            delays.append(
                {
                    "job_id": job_id,
                    "run": prev.number,
                    "observed": round(observed, 4),
                    "expected": expected,
                    "tolerance": tolerance,
                    # the band the check accepts (the report draws it as is)
                    "lower": round(expected - tolerance, 6),
                    "upper": round(expected + tolerance, 6),
                    "requested": round(requested, 4),
                    "capped": capped_after(prev.number),
                }
            )
            where = f"job {job_id}: retry after run {prev.number}"
            if observed > expected + tolerance:
                overrun = observed - expected - tolerance
                lag = stalled_for(stalls.get(str(nxt.worker), []), prev.retry_at, nxt.start)
                # a stall after the retry time excuses only the pickup: never a strategy that
                # asked too short a wait (lag <= pickup already rules out one asking too long)
                if requested >= expected - tolerance and overrun <= lag:
                    stalled.append(
                        f"{where} came {observed:.3f}s after the failure, {overrun:.3f}s past "
                        f"{expected:.3f}s + {tolerance:.3f}s, while {nxt.worker} was held up "
                        f"{lag:.3f}s after the retry time (its event loop stood still or its "
                        "fetch waited on the database)"
                    )
                    continue
                evidence.append(
                    f"{where} came {observed:.3f}s after the failure, later than "
                    f"{expected:.3f}s + {tolerance:.3f}s"
                )
            elif nxt.start < prev.retry_at - tolerance:
                evidence.append(
                    f"{where} came {observed:.3f}s after the failure, before its retry time "
                    f"({requested:.3f}s) - {tolerance:.3f}s"
                )
            elif requested < expected - tolerance:
                evidence.append(
                    f"{where} was scheduled {requested:.3f}s after the failure, earlier than "
                    f"{expected:.3f}s - {tolerance:.3f}s"
                )
    capped = sum(1 for d in delays if d["capped"])
    smallest = min((d["expected"] for d in delays), default=None)
    figures: dict[str, Any] = {
        "retry_delays": delays,
        "base_delay": base_delay,
        "max_delay": max_delay,
        "tolerance": tolerance,
        "plan": list(plan) if plan is not None else None,
        "capped_retries": capped,
        "smallest_expected": smallest,
    }
    if evidence:
        return Verdict(
            NAME,
            FAIL,
            f"{evidence[0]} ({len(evidence)} of {len(delays)} retries off schedule)",
            figures,
            evidence,
        )
    if stalled:
        figures["stalled_retries"] = stalled
        return stalled_verdict(NAME, stalled, figures)
    if smallest is None:
        return Verdict(NAME, UNKNOWN, "no scheduled retry happened: nothing to check", figures)
    if tolerance >= smallest / 2:
        return Verdict(
            NAME,
            UNKNOWN,
            f"tolerance {tolerance:.3f}s is not below half the smallest expected delay "
            f"({smallest:.3f}s): a doubling cannot be told from none at this profile",
            figures,
        )
    if require_cap and not capped:
        return Verdict(
            NAME,
            UNKNOWN,
            f"no retry reached the cap {max_delay:.3f}s: the cap was not exercised "
            f"({len(delays)} retries on schedule)",
            figures,
        )
    worst = max(d["observed"] - d["expected"] for d in delays)
    return Verdict(
        NAME,
        PASS,
        f"{len(delays)} retries on schedule, {capped} at the cap (latest {worst:+.3f}s vs "
        f"formula, tolerance {tolerance:.3f}s)",
        figures,
    )
