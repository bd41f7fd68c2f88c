"""Heartbeat loss: heartbeat writes fail for a moment while fetching and running jobs work.

PostgreSQL rejects every heartbeat write (an error on the UPDATE of ``procrastinate_workers``,
as a lock or statement timeout on that table would give) until each worker has hit the error
at least twice, then accepts them again. Procrastinate's own heartbeat task dies silently on
its first database error: a worker that relies on it keeps running jobs with a heartbeat that
never moves again, so ``/health`` reports it dead and stalled-job recovery re-runs its live
jobs. The system's watchdog notices the failed write and starts a fresh session. Afterwards,
jobs that run longer than the stall threshold must run once (no unjustified re-execution) and
``/health`` must be 200 again within its recovery budget and stay there.
Mutation: ``no-watchdog``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from harness import budgets, probe
from harness.checker import Verdict, check_health_transitions
from harness.checks import baseline
from harness.client import HealthMonitor
from harness.history import History
from harness.mutation import mutants
from harness.profiles import get_profile
from harness.scenario import ScenarioFactory, ScenarioRun
from system.defects import Defect

TITLE = "Heartbeat writes rejected while fetching works"
CLAIMS = ["stalled_recovery", "health_monitoring", "complete_or_fail"]


def long_job_settings(profile_name: str) -> dict[str, Any]:
    """Jobs must be able to outlive the stall threshold + a check interval + a heartbeat."""
    p = get_profile(profile_name)
    return {"job_timeout": max(p.job_timeout, 2.5 * p.stalled_job_threshold)}


def long_run(p: Any) -> float:
    """A run that outlives the point where a dead heartbeat makes its job look stalled."""
    return (
        p.stalled_job_threshold + p.stalled_job_check_interval + 2 * p.worker_heartbeat_interval
    ) * 1.25


def lose_heartbeats(sc: ScenarioRun) -> Callable[[History], Sequence[Verdict]]:
    p, cal = sc.profile, sc.calibration
    with HealthMonitor(sc.client, interval=budgets.health_interval(p)):
        start = time.time()
        sc.hold_until(
            lambda: sc.saw_health(start, healthy=True),
            timeout=budgets.health_recover(p, cal),
            what="/health to say 200 at the start",
        )
        # Held until a heartbeat write was rejected and for three heartbeat intervals, so
        # that every writer (Procrastinate's heartbeat task, the watchdog) meets the error.
        with sc.nemesis.heartbeats_rejected() as window:
            began = time.time()
            sc.hold_until(
                lambda: (
                    probe.heartbeat_rejections(sc.stack.db_dsn) >= 1
                    and time.time() - began >= 3 * p.worker_heartbeat_interval
                ),
                timeout=10 * p.worker_heartbeat_interval + 1.0,
                what="a rejected heartbeat write",
            )
        sc.observe("heartbeat_rejections", window.detail.get("rejected"))
        sc.await_health(healthy=True, timeout=budgets.health_recover(p, cal))
        n = 2
        sc.nemesis.arm_api_fault("slow", delay=long_run(p), count=n)
        sc.client.submit_many(n)
        sc.settle(long_run(p) * 2 + budgets.stall_recovery(p, cal) + p.job_timeout)
        # /health must be 200 by the end of the recovery window, and stay so
        sc.sample_recovery_window(budgets.health_recover(p, cal))

    def checks(h: History) -> list[Verdict]:
        return [
            *baseline(
                h, expected_status="succeeded", smallest=p.worker_timeout, what="stall detection"
            ),
            check_health_transitions(
                h,
                detect_budget=budgets.health_detect(p, cal),
                recover_budget=budgets.health_recover(p, cal),
                fault_kinds=("heartbeat_rejected",),
            ),
        ]

    return checks


def test_heartbeat_loss(scenario: ScenarioFactory, pytestconfig: pytest.Config) -> None:
    settings = long_job_settings(pytestconfig.getoption("--profile"))
    with scenario("heartbeat_loss", title=TITLE, claims=CLAIMS, settings=settings) as sc:
        sc.finish(lose_heartbeats(sc))


MUTANTS = [(Defect.NO_WATCHDOG, ["justified_reruns", "health_transitions"])]


@pytest.mark.parametrize(
    ("defect", "failing"), mutants("heartbeat_loss", MUTANTS, subset=[Defect.NO_WATCHDOG])
)
def test_heartbeat_loss_mutant(
    scenario: ScenarioFactory, pytestconfig: pytest.Config, defect: Defect, failing: list[str]
) -> None:
    settings = long_job_settings(pytestconfig.getoption("--profile"))
    with scenario(
        "heartbeat_loss", title=TITLE, settings=settings, defect=defect, expect_failing=failing
    ) as sc:
        sc.finish(lose_heartbeats(sc))
