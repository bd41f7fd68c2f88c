"""Backoff schedule: the upstream refuses connections; each retry must come when the task's own
retry strategy says, within the calibrated tolerance.

The bug it catches: a worker that picks up a scheduled retry only at its next poll
(Procrastinate's worker polls every 5 s by default and is not woken when a retry comes due),
so a 1 s backoff becomes 5 s; a strategy that never retries a network error.
"""

from __future__ import annotations

import contextlib

from harness.checker import Verdict, check_retry_schedule
from harness.history.records import History
from harness.target.checks import (
    baseline,
    cannot_judge,
    plan_of,
    settle_budget,
    upstream_proxies,
)
from harness.target.plugin import TargetScenario
from harness.vocabulary import Invariant

#: One job: retries of several jobs due together are fetched one after the other, which the
#: calibration (one fresh job at a time) does not measure; one job's retries it does.
JOBS = 1
#: Failed runs per job before the upstream comes back (two retries show the growth).
FAILED_RUNS = 3


def test_backoff_schedule(target_scenario: TargetScenario) -> None:
    with target_scenario("backoff_schedule", title="Retries on the strategy's schedule") as sc:
        plan = plan_of(sc)
        proxies = upstream_proxies(sc)
        if not proxies or not plan.delays:
            why = "the target declares no upstream" if not proxies else "its task never retries"
            sc.finish(lambda h: cannot_judge(Invariant.RETRY_SCHEDULE, f"cannot judge: {why}"))
            return
        fail = min(FAILED_RUNS, plan.runs - 1)
        with contextlib.ExitStack() as cuts:
            for proxy in proxies:
                cuts.enter_context(sc.nemesis.proxy_down(proxy))
            ids = [s.job_id for s in sc.client.submit_many(JOBS) if s.job_id is not None]
            # keep the upstream away until each job has failed `fail` runs (then it succeeds)
            sc.hold_until(
                lambda: all(a >= fail for _, a in sc.jobs(ids).values()),
                timeout=sum(plan.delays[:fail]) + settle_budget(sc, JOBS),
                what=f"{fail} failed runs per job",
                strict=False,
            )
        sc.settle(settle_budget(sc, JOBS))
        sc.recalibrate()  # after the judged retries: the tolerance brackets them

        def checks(h: History) -> list[Verdict]:
            return [
                *baseline(h, sc, smallest=min(plan.delays[:fail]), what="the retry schedule"),
                check_retry_schedule(
                    h, plan=plan.delays, tolerance=sc.calibration.tolerance, jobs=ids
                ),
            ]

        sc.finish(checks, settle_timeout=settle_budget(sc, JOBS))
