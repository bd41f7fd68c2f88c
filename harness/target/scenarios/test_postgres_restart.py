"""PostgreSQL restart: the server is stopped (fast shutdown: every connection closed) and
started again with a job in flight; the workers must carry on within the recovery budget.

The bug it catches: a worker that exits when its connections break (Procrastinate's LISTEN
reconnect fails while the server is down, and with periodic tasks that stops the worker).
"""

from __future__ import annotations

import contextlib

from harness.checker import Verdict, check_queue_resumes
from harness.history.records import History
from harness.target.checks import baseline, settle_budget, upstream_proxies
from harness.target.plugin import TargetScenario
from harness.vocabulary import FaultKind

HOLD_MS = 1500


def test_postgres_restart(target_scenario: TargetScenario) -> None:
    with target_scenario("postgres_restart", title="PostgreSQL restarted under load") as sc:
        with contextlib.ExitStack() as slow:
            for proxy in upstream_proxies(sc):
                slow.enter_context(sc.nemesis.toxic(proxy, "latency", {"latency": HOLD_MS}))
            sc.client.submit_many(2)
            sc.wait_in_flight(1)
            sc.nemesis.pg_restart()
        sc.client.submit_many(2)  # after the restart: these must run too
        budget = sc.target.recovery_budget + sc.calibration.tolerance

        def checks(h: History) -> list[Verdict]:
            return [
                *baseline(h, sc, smallest=sc.target.recovery_budget, what="recovery"),
                check_queue_resumes(
                    h,
                    budget=budget,
                    fault_kinds=[FaultKind.PG_RESTART],
                    target_prefix="postgres",
                ),
            ]

        sc.finish(checks, settle_timeout=settle_budget(sc, 4))
