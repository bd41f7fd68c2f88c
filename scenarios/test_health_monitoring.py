"""Health monitoring: ``GET /health`` tells the truth about the database and the workers.

Sampled all along: 200 while all is well; 503 once the only worker is dead (its heartbeat is
older than the system's own freshness limit, :func:`system.promises.heartbeat_freshness_limit`)
and 200 again once it is back; 503 while PostgreSQL is stopped and 200 again once the worker
has reconnected. The first 503 must come within the detection budget (a request that got no
answer is not a detection); no 503 outside the faults. Each fault is held until a 503 or
one and a half detection budgets, so that a late 503 is seen and judged late.
Mutations: ``health-always-ok`` and ``health-ignores-heartbeat``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import pytest

from harness import budgets
from harness.checker import (
    Verdict,
    check_calibration,
    check_health_transitions,
    check_processes_alive,
)
from harness.client import HealthMonitor
from harness.history import History
from harness.mutation import mutants
from harness.nemesis import FaultHandle
from harness.scenario import ScenarioFactory, ScenarioRun
from system.defects import Defect
from system.promises import heartbeat_freshness_limit

TITLE = "Health monitoring: /health follows worker death and database loss"
CLAIMS = ["health_monitoring"]


def noticed(sc: ScenarioRun, fault: AbstractContextManager[FaultHandle], kind: str) -> None:
    """Hold ``fault`` until /health said 503 (at most 1.5 detection budgets), then heal it and
    wait (at most the recovery budget) for a 200."""
    p, cal = sc.profile, sc.calibration
    detect = budgets.health_detect(p, cal)
    with fault as window:
        sc.await_health(
            healthy=False, since=window.start, timeout=1.5 * detect.get(kind, detect["*"])
        )
    recover = budgets.health_recover_after(p, cal)
    sc.await_health(healthy=True, timeout=recover.get(kind, recover["*"]))


def watch_health(sc: ScenarioRun) -> Callable[[History], Sequence[Verdict]]:
    p, cal = sc.profile, sc.calibration
    with HealthMonitor(sc.client, interval=budgets.health_interval(p)):
        sc.await_health(healthy=True, timeout=budgets.health_recover(p, cal))
        noticed(sc, sc.nemesis.worker_down("w1"), "kill")
        noticed(sc, sc.nemesis.pg_down(), "pg_restart")
        calm = time.time()
        # a quiet stretch after the faults: /health must stay 200 (heartbeats keep coming)
        sc.hold_until(
            lambda: (
                time.time() - calm >= 3 * p.worker_heartbeat_interval
                and sc.saw_health(calm, healthy=True)
            ),
            timeout=budgets.health_recover(p, cal),
            what="a quiet stretch of /health samples",
            strict=False,
        )

    def checks(h: History) -> list[Verdict]:
        return [
            check_calibration(
                h,
                smallest=heartbeat_freshness_limit(p.worker_heartbeat_interval),
                what="the heartbeat freshness limit",
            ),
            check_health_transitions(
                h,
                detect_budget=budgets.health_detect(p, cal),
                recover_budget=budgets.health_recover_after(p, cal),
                fault_kinds=("kill", "pg_restart"),
            ),
            check_processes_alive(h),
        ]

    return checks


def test_health_monitoring(scenario: ScenarioFactory) -> None:
    with scenario("health_monitoring", title=TITLE, claims=CLAIMS) as sc:
        sc.finish(watch_health(sc))


MUTANTS = [
    (Defect.HEALTH_ALWAYS_OK, ["health_transitions"]),
    (Defect.HEALTH_IGNORES_HEARTBEAT, ["health_transitions"]),
]


@pytest.mark.parametrize(
    ("defect", "failing"),
    mutants("health_monitoring", MUTANTS, subset=[Defect.HEALTH_IGNORES_HEARTBEAT]),
)
def test_health_monitoring_mutant(
    scenario: ScenarioFactory, defect: Defect, failing: list[str]
) -> None:
    with scenario("health_monitoring", title=TITLE, defect=defect, expect_failing=failing) as sc:
        sc.finish(watch_health(sc))
