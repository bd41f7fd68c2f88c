"""Database drop: the workers' link to PostgreSQL is cut (open connections dropped, new ones
refused) for ``OUTAGE`` seconds with a job in flight; afterwards the same worker processes
must take jobs again within the target's recovery budget.

The bug it catches: a worker that stops for good when the database goes away (Procrastinate's
LISTEN connection reconnects once; with periodic tasks its failure stops the whole worker, and
a longer outage than the pool timeout stops it anyway), so jobs queue up with nobody to run them.
"""

from __future__ import annotations

import contextlib
import time

from harness.checker import Verdict, check_queue_resumes
from harness.history.records import History
from harness.target.checks import baseline, settle_budget, upstream_proxies
from harness.target.plugin import TargetScenario
from harness.vocabulary import FaultKind

#: Seconds the link stays cut: well past a reconnect attempt and a short pool timeout.
OUTAGE = 5.0
HOLD_MS = 1500


def test_database_drop(target_scenario: TargetScenario) -> None:
    with target_scenario("database_drop", title="Database link cut, then healed") as sc:
        with contextlib.ExitStack() as slow:
            for proxy in upstream_proxies(sc):
                slow.enter_context(sc.nemesis.toxic(proxy, "latency", {"latency": HOLD_MS}))
            sc.client.submit_many(2)
            sc.wait_in_flight(1)
            with sc.nemesis.proxy_down("postgres"):
                began = time.monotonic()
                sc.client.submit()  # deferred directly: it waits in the queue
                sc.hold_until(
                    lambda: time.monotonic() - began >= OUTAGE,
                    timeout=2 * OUTAGE,
                    what="the outage",
                    strict=False,
                )
        sc.client.submit_many(2)  # after the outage: these must run too
        budget = sc.target.recovery_budget + sc.calibration.tolerance

        def checks(h: History) -> list[Verdict]:
            return [
                *baseline(h, sc, smallest=sc.target.recovery_budget, what="recovery"),
                check_queue_resumes(
                    h, budget=budget, fault_kinds=[FaultKind.PROXY_DOWN], target_prefix="dblink"
                ),
            ]

        sc.finish(checks, settle_timeout=settle_budget(sc, 5))
