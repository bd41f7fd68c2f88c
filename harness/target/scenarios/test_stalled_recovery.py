"""Stalled recovery: two workers busy, one SIGKILLed for good; the survivor must re-queue and
run the dead worker's job within the target's recovery budget.

The bug it catches: no stalled-job recovery at all (Procrastinate's default), or one so slow
(a threshold of minutes, a check that rarely runs) that the job misses its budget.
"""

from __future__ import annotations

import contextlib

from harness.checker import Verdict, check_recovery_latency
from harness.history.records import History
from harness.target.checks import baseline, cannot_judge, settle_budget, upstream_proxies
from harness.target.plugin import TargetScenario
from harness.vocabulary import Invariant

JOBS = 4
HOLD_MS = 2000


def test_stalled_recovery(target_scenario: TargetScenario) -> None:
    title = "Stalled job: a worker dies for good, the other recovers its job"
    with target_scenario("stalled_recovery", title=title, workers=2) as sc:
        proxies = upstream_proxies(sc)
        if not proxies:
            reason = "cannot judge: the target declares no upstream to hold a job in flight with"
            sc.finish(lambda h: cannot_judge(Invariant.RECOVERY_LATENCY, reason))
            return
        with contextlib.ExitStack() as slow:
            for proxy in proxies:
                slow.enter_context(sc.nemesis.toxic(proxy, "latency", {"latency": HOLD_MS}))
            ids = [s.job_id for s in sc.client.submit_many(JOBS) if s.job_id is not None]
            sc.wait_in_flight(2)  # both workers busy: w1 surely holds a job
            sc.nemesis.kill_worker("w1", restart=False)
        budget = sc.target.recovery_budget + sc.calibration.tolerance

        def checks(h: History) -> list[Verdict]:
            return [
                *baseline(h, sc, smallest=sc.target.recovery_budget, what="stall recovery"),
                check_recovery_latency(h, budget=budget, jobs=ids),
            ]

        sc.finish(checks, settle_timeout=settle_budget(sc, JOBS))
