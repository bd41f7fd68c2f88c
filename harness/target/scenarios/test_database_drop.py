"""Database drop: the workers' link to PostgreSQL is cut (open connections dropped, new ones
refused) for ``OUTAGE`` seconds with a job in flight; afterwards the same worker processes
must take jobs again within the target's recovery budget. A target that declares its workers'
``/health`` (``health_port_env``) must see it answer non-200 during the outage (within its
``health_budget``) and 200 again within the recovery budget.

The bug it catches: a worker that stops for good when the database goes away (Procrastinate's
LISTEN connection reconnects once; with periodic tasks its failure stops the whole worker, and
a longer outage than the pool timeout stops it anyway), so jobs queue up with nobody to run
them; and a worker /health that says 200 through it all.
"""

from __future__ import annotations

import contextlib
import time

from harness.checker import Verdict, check_queue_resumes
from harness.client import HealthMonitor
from harness.history.records import History
from harness.target.checks import (
    HEALTH_INTERVAL,
    baseline,
    check_target_health,
    health_client,
    health_detect_budget,
    settle_budget,
    upstream_proxies,
)
from harness.target.plugin import TargetScenario
from harness.vocabulary import FaultKind

#: Seconds the link stays cut: well past a reconnect attempt and a short pool timeout (and
#: a second past the detection budget of a target's /health).
OUTAGE = 5.0
HOLD_MS = 1500


def test_database_drop(target_scenario: TargetScenario) -> None:
    with target_scenario("database_drop", title="Database link cut, then healed") as sc:
        health = health_client(sc)  # the worker's own /health, when the target has one
        # long enough that a /health which never notices is caught (not excused as too short)
        outage = OUTAGE if health is None else max(OUTAGE, health_detect_budget(sc) + 1.0)
        with contextlib.ExitStack() as held:
            if health is not None:
                held.callback(health.close)
                held.enter_context(HealthMonitor(health, interval=HEALTH_INTERVAL))
                sc.await_health(healthy=True, timeout=sc.target.recovery_budget)
            with contextlib.ExitStack() as slow:
                for proxy in upstream_proxies(sc):
                    slow.enter_context(sc.nemesis.toxic(proxy, "latency", {"latency": HOLD_MS}))
                sc.client.submit_many(2)
                sc.wait_in_flight(1)
                with sc.nemesis.proxy_down("postgres"):
                    began = time.monotonic()
                    sc.client.submit()  # deferred directly: it waits in the queue
                    sc.hold_until(
                        lambda: time.monotonic() - began >= outage,
                        timeout=2 * outage,
                        what="the outage",
                        strict=False,
                    )
            sc.client.submit_many(2)  # after the outage: these must run too
            if health is not None:
                sc.sample_recovery_window(sc.target.recovery_budget + sc.calibration.tolerance)
        budget = sc.target.recovery_budget + sc.calibration.tolerance

        def checks(h: History) -> list[Verdict]:
            verdicts = [
                *baseline(h, sc, smallest=sc.target.recovery_budget, what="recovery"),
                check_queue_resumes(
                    h, budget=budget, fault_kinds=[FaultKind.PROXY_DOWN], target_prefix="dblink"
                ),
            ]
            if health is not None:
                verdicts.append(check_target_health(h, sc, [FaultKind.PROXY_DOWN]))
            return verdicts

        sc.finish(checks, settle_timeout=settle_budget(sc, 5))
