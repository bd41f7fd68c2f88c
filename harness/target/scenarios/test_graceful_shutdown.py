"""Graceful shutdown: SIGTERM while a job runs longer than the orchestrator's grace period;
the worker must exit 0 within the grace (stopping or re-queueing the job itself), and once a
worker is back every job must succeed.

The bug it catches: a worker that waits for running jobs without a bound (Procrastinate's
default ``shutdown_graceful_timeout=None``): the orchestrator SIGKILLs it after the grace and
the job is left ``doing``, lost unless something recovers stalled jobs.
"""

from __future__ import annotations

import contextlib

from harness.checker import Verdict
from harness.history.records import History
from harness.target.checks import (
    baseline,
    cannot_judge,
    check_shutdown_within_grace,
    settle_budget,
    upstream_proxies,
)
from harness.target.plugin import TargetScenario
from harness.vocabulary import Invariant

JOBS = 2
#: The job outlasts the grace period by this much (seconds).
OVERRUN = 3.0


def test_graceful_shutdown(target_scenario: TargetScenario) -> None:
    title = "Graceful shutdown (SIGTERM) during a job longer than the grace period"
    with target_scenario("graceful_shutdown", title=title) as sc:
        proxies = upstream_proxies(sc)
        if not proxies:
            reason = "cannot judge: the target declares no upstream to make a job outlast the grace"
            sc.finish(lambda h: cannot_judge(Invariant.GRACEFUL_SHUTDOWN, reason))
            return
        grace = sc.target.shutdown_grace
        hold = int((grace + OVERRUN) * 1000)
        with contextlib.ExitStack() as slow:
            for proxy in proxies:
                slow.enter_context(sc.nemesis.toxic(proxy, "latency", {"latency": hold}))
            sc.client.submit_many(JOBS)
            sc.wait_in_flight(1)
            sc.nemesis.sigterm_worker("w1", timeout=grace)
        sc.nemesis.restart_worker("w1")  # the orchestrator starts a new one

        def checks(h: History) -> list[Verdict]:
            return [
                *baseline(h, sc, smallest=grace, what="the shutdown"),
                check_shutdown_within_grace(h, grace=grace),
            ]

        sc.finish(checks, settle_timeout=settle_budget(sc, JOBS))
