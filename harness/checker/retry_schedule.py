"""Retry schedule: the wait before run k+1 is ``min(base * 2**(k-1), max)``, within tolerance."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from harness.checker.runs import acknowledged_ids, runs_by_job
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import History

NAME = "retry_schedule"


def expected_delay(run_number: int, base_delay: float, max_delay: float) -> float:
    """The wait after run ``run_number`` (1-based) fails: ``min(base * 2**(n-1), max)``."""
    return float(min(base_delay * 2 ** (run_number - 1), max_delay))


def check_retry_schedule(
    history: History,
    *,
    base_delay: float,
    max_delay: float,
    tolerance: float,
    early_tolerance: float = 0.05,
    jobs: Iterable[int] | None = None,
) -> Verdict:
    """Check each scheduled retry (run ``k`` failed, run ``k+1`` started) against the formula
    ``expected = min(base * 2**(k-1), max)``:

    - late: run ``k+1`` started more than ``expected + tolerance`` after the failure;
    - early, queue: it started before the retry time the strategy asked for
      (``- early_tolerance``, clock noise);
    - early, strategy: the retry time asked for is less than ``expected - tolerance`` after the
      failure (the decision precedes the failure's commit by at most the scheduling slack).

    ``tolerance`` is the polling interval plus the measured scheduling slack. No retry: unknown.
    """
    by_job = runs_by_job(history)
    ids = list(jobs) if jobs is not None else acknowledged_ids(history)
    delays: list[dict[str, Any]] = []
    evidence: list[str] = []
    for job_id in ids:
        runs = by_job.get(job_id, [])
        for prev, nxt in itertools.pairwise(runs):
            if not prev.scheduled_retry or prev.end is None or prev.retry_at is None:
                continue
            expected = expected_delay(prev.number, base_delay, max_delay)
            observed = nxt.start - prev.end
            requested = prev.retry_at - prev.end
            delays.append(
                {
                    "job_id": job_id,
                    "run": prev.number,
                    "observed": round(observed, 4),
                    "expected": expected,
                    "tolerance": tolerance,
                    "requested": round(requested, 4),
                }
            )
            where = f"job {job_id}: retry after run {prev.number}"
            if observed > expected + tolerance:
                evidence.append(
                    f"{where} came {observed:.3f}s after the failure, later than "
                    f"{expected:.3f}s + {tolerance:.3f}s"
                )
            elif nxt.start < prev.retry_at - early_tolerance:
                evidence.append(
                    f"{where} came {observed:.3f}s after the failure, before its retry time "
                    f"({requested:.3f}s) - {early_tolerance:.3f}s"
                )
            elif requested < expected - tolerance:
                evidence.append(
                    f"{where} was scheduled {requested:.3f}s after the failure, earlier than "
                    f"{expected:.3f}s - {tolerance:.3f}s"
                )
    figures: dict[str, Any] = {
        "retry_delays": delays,
        "base_delay": base_delay,
        "max_delay": max_delay,
        "tolerance": tolerance,
        "early_tolerance": early_tolerance,
    }
    if evidence:
        return Verdict(
            NAME, FAIL, f"{len(evidence)} of {len(delays)} retries off schedule", figures, evidence
        )
    if not delays:
        return Verdict(NAME, UNKNOWN, "no scheduled retry happened: nothing to check", figures)
    worst = max(d["observed"] - d["expected"] for d in delays)
    return Verdict(
        NAME,
        PASS,
        f"{len(delays)} retries on schedule (latest {worst:+.3f}s vs formula, "
        f"tolerance {tolerance:.3f}s)",
        figures,
    )
