"""Health monitoring: ``GET /health`` tells the truth about the database and the workers.

Sampled all along: 200 while all is well; 503 once the only worker is dead (its heartbeat is
older than the SUT's freshness limit) and 200 again once it is back; 503 while PostgreSQL is
stopped and 200 again once the worker has reconnected. No 503 outside the faults (no false
alarm). Budgets come from the configuration (heartbeat interval, database timeouts,
reconnect backoff) plus the sampling interval and measured slack.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager

from harness.checker import Verdict, check_health_transitions
from harness.client import HealthMonitor
from harness.history import History
from harness.nemesis import FaultHandle
from harness.scenario import ScenarioFactory, ScenarioRun

TITLE = "Health monitoring: /health follows worker death and database loss"
CLAIMS = ["health_monitoring"]


def noticed(sc: ScenarioRun, fault: AbstractContextManager[FaultHandle]) -> None:
    """Hold ``fault`` until /health said 503 (at most the detection budget), then heal it and
    wait (at most the recovery budget) for a 200."""
    detect, recover = sc.health_budgets(sc.writer.history)
    with fault as window:
        sc.hold_until(
            lambda: sc.saw_health(window.start, healthy=False),
            timeout=max(detect.values()),
            what="/health to say 503",
            strict=False,
        )
    healed = time.time()
    sc.hold_until(
        lambda: sc.saw_health(healed, healthy=True),
        timeout=recover,
        what="/health to say 200 again",
        strict=False,
    )


def test_health_monitoring(scenario: ScenarioFactory) -> None:
    with scenario("health_monitoring", title=TITLE, claims=CLAIMS) as sc:
        with HealthMonitor(sc.client, interval=sc.health_interval()):
            start = time.time()
            sc.hold_until(
                lambda: sc.saw_health(start, healthy=True),
                timeout=sc.health_budgets(sc.writer.history)[1],
                what="/health to say 200 at the start",
            )
            noticed(sc, sc.nemesis.worker_down("w1"))
            noticed(sc, sc.nemesis.pg_down())
            calm = time.time()
            # a quiet stretch after the faults: /health must stay 200 (heartbeats keep coming)
            sc.hold_until(
                lambda: (
                    time.time() - calm >= 3 * sc.profile.worker_heartbeat_interval
                    and sc.saw_health(calm, healthy=True)
                ),
                timeout=sc.health_budgets(sc.writer.history)[1],
                what="a quiet stretch of /health samples",
                strict=False,
            )

        def checks(h: History) -> list[Verdict]:
            detect, recover = sc.health_budgets(h)
            return [check_health_transitions(h, detect_budget=detect, recover_budget=recover)]

        sc.finish(checks)
