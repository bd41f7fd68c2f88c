"""Upstream cut: the upstream goes away while jobs run and comes back well inside the task's
retry window; every job must still succeed, once.

The bug it catches: a retry list that forgets network errors or timeouts (the seed's list
omits ``TimeoutError``), so a short outage turns into failed jobs; a worker that stops
retrying on schedule, so the window runs out.
"""

from __future__ import annotations

import contextlib
import time

from harness.checker import Verdict
from harness.history.records import History
from harness.target.checks import baseline, cannot_judge, plan_of, settle_budget, upstream_proxies
from harness.target.plugin import TargetScenario
from harness.vocabulary import Invariant

JOBS = 3
#: The outage lasts this fraction of the strategy's whole retry window.
WINDOW_FRACTION = 0.5


def test_upstream_cut(target_scenario: TargetScenario) -> None:
    with target_scenario("upstream_cut", title="Upstream cut inside the retry window") as sc:
        plan = plan_of(sc)
        proxies = upstream_proxies(sc)
        if not proxies or not plan.delays:
            why = "the target declares no upstream" if not proxies else "its task never retries"
            sc.finish(lambda h: cannot_judge(Invariant.QUEUE_ACCOUNTING, f"cannot judge: {why}"))
            return
        outage = WINDOW_FRACTION * sum(plan.delays)
        sc.observe("outage", {"seconds": outage, "retry_window": sum(plan.delays)})
        with contextlib.ExitStack() as cuts:
            for proxy in proxies:
                cuts.enter_context(sc.nemesis.proxy_down(proxy))
            ids = [s.job_id for s in sc.client.submit_many(JOBS) if s.job_id is not None]
            # the outage starts once every job has failed a run on it, and lasts `outage`
            sc.hold_until(
                lambda: all(a >= 1 for _, a in sc.jobs(ids).values()),
                timeout=settle_budget(sc, JOBS),
                what="every job failed once on the cut",
                strict=False,
            )
            began = time.monotonic()
            sc.hold_until(
                lambda: time.monotonic() - began >= outage,
                timeout=2 * outage,
                what="the outage",
                strict=False,
            )

        def checks(h: History) -> list[Verdict]:
            return baseline(h, sc, smallest=min(plan.delays), what="the retry window")

        sc.finish(checks, settle_timeout=settle_budget(sc, JOBS))
