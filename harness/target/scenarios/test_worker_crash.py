"""Worker crash: SIGKILL the only worker while it runs a job, start it again; the job must run
again within the target's recovery budget and every job must succeed.

The bug it catches: nothing re-queues a job whose worker died (Procrastinate leaves it
``doing`` for ever: no stalled-job recovery out of the box), so it is silently lost.
"""

from __future__ import annotations

import contextlib

from harness.checker import Verdict, check_recovery_latency
from harness.history.records import History
from harness.target.checks import baseline, cannot_judge, settle_budget, upstream_proxies
from harness.target.plugin import TargetScenario
from harness.vocabulary import Invariant

JOBS = 3
#: Upstream answers are held this long while the worker is killed, so a job is surely running.
HOLD_MS = 2000


def test_worker_crash(target_scenario: TargetScenario) -> None:
    with target_scenario("worker_crash", title="Worker crash (SIGKILL) with a job in flight") as sc:
        proxies = upstream_proxies(sc)
        if not proxies:
            reason = "cannot judge: the target declares no upstream to hold a job in flight with"
            sc.finish(lambda h: cannot_judge(Invariant.RECOVERY_LATENCY, reason))
            return
        with contextlib.ExitStack() as slow:
            for proxy in proxies:
                slow.enter_context(sc.nemesis.toxic(proxy, "latency", {"latency": HOLD_MS}))
            ids = [s.job_id for s in sc.client.submit_many(JOBS) if s.job_id is not None]
            sc.wait_in_flight(1)
            sc.nemesis.kill_worker("w1", restart=True)
        budget = sc.target.recovery_budget + sc.calibration.tolerance

        def checks(h: History) -> list[Verdict]:
            return [
                *baseline(h, sc, smallest=sc.target.recovery_budget, what="stall recovery"),
                check_recovery_latency(h, budget=budget, jobs=ids),
            ]

        sc.finish(checks, settle_timeout=settle_budget(sc, JOBS))
