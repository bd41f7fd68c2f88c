"""Database drop: the link to PostgreSQL cut long enough to matter, then PostgreSQL SIGKILLed,
with jobs in flight and submissions going on.

The first outage lasts past the pool timeout (Procrastinate alone stops its worker there),
``WORKER_TIMEOUT`` and four reconnect attempts (:func:`harness.budgets.long_outage`), so a
supervisor that gives up early is caught. After each outage new jobs are submitted: they must
run. The system must resume on its own each time: every acknowledged job succeeds, every job
pending when an outage ends moves again within ``reconnect + stalled-job recovery`` (plus what
is left of a session teardown the outage started, up to the system's limit), the worker
process is alive at the end, and ``/health`` says 503 during each outage and 200 after it.
Submissions made during an outage are refused or end ``unknown``; an unknown one counts as
recovered only if its job ended. Mutations: ``no-db-supervision``, ``supervisor-gives-up``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import pytest

from harness import budgets
from harness.checker import Verdict, check_health_transitions, check_queue_resumes
from harness.checks import baseline
from harness.client import HealthMonitor
from harness.history import History
from harness.mutation import mutants
from harness.nemesis import FaultHandle
from harness.scenario import ScenarioFactory, ScenarioRun
from system.defects import Defect

TITLE = "Database drop: link cut beyond the pool timeout, then PostgreSQL SIGKILLed"
CLAIMS = ["no_loss_database", "health_monitoring", "complete_or_fail"]


def outage(sc: ScenarioRun, fault: AbstractContextManager[FaultHandle], *, at_least: float) -> None:
    """Jobs in flight, then ``fault`` held for ``at_least`` seconds and until /health said 503
    (submitting meanwhile), then healed; returns once /health says 200 again (or the recovery
    budget passed: the checker judges)."""
    p, cal = sc.profile, sc.calibration
    detect = budgets.health_detect(p, cal)
    n = sc.rng.randint(2, 3)
    sc.nemesis.arm_api_fault("slow", delay=min(p.job_timeout * 2 / 3, 2.0), count=n)
    sc.client.submit_many(n)
    sc.wait_in_flight(1)
    with fault as window:
        began = time.monotonic()
        sc.client.submit()  # during the outage: refused or unknown
        sc.hold_until(
            lambda: (
                time.monotonic() - began >= at_least and sc.saw_health(window.start, healthy=False)
            ),
            timeout=at_least + max(detect.values()),
            what="the outage to last and /health to notice it",
            strict=False,
        )
    sc.await_health(healthy=True, timeout=budgets.health_recover_after(p, cal)["pg_kill"])
    sc.client.submit_many(2)  # after the outage: these must run


def drop_the_database(sc: ScenarioRun) -> Callable[[History], Sequence[Verdict]]:
    p, cal = sc.profile, sc.calibration
    with HealthMonitor(sc.client, interval=budgets.health_interval(p)):
        outage(sc, sc.nemesis.proxy_down("postgres"), at_least=budgets.long_outage(p))
        outage(sc, sc.nemesis.pg_down(kill=True), at_least=0.0)
        sc.settle(
            budgets.reconnect(p, cal)
            + budgets.stall_recovery(p, cal)
            + budgets.backoff_total(p)
            + 2 * p.job_timeout
        )
        # /health must be 200 by the end of the recovery window
        sc.sample_recovery_window(budgets.health_recover(p, cal))

    def checks(h: History) -> list[Verdict]:
        return [
            *baseline(
                h, expected_status="succeeded", smallest=p.worker_timeout, what="a reconnect"
            ),
            check_queue_resumes(
                h,
                budget=budgets.reconnect(p, cal) + budgets.stall_recovery(p, cal),
                fault_kinds=("proxy_down", "pg_kill"),
                target_prefix=("dblink", "postgres"),
                # a crash that ends a session just before PostgreSQL is back: the worker
                # reconnects once that session's teardown is over (the system's own limit)
                session_teardown=budgets.session_teardown(p),
            ),
            check_health_transitions(
                h,
                detect_budget=budgets.health_detect(p, cal),
                recover_budget=budgets.health_recover_after(p, cal),
                fault_kinds=("proxy_down", "pg_kill"),
            ),
        ]

    return checks


def test_database_drop(scenario: ScenarioFactory) -> None:
    with scenario("database_drop", title=TITLE, claims=CLAIMS) as sc:
        sc.finish(drop_the_database(sc))


MUTANTS = [
    (Defect.NO_DB_SUPERVISION, ["queue_accounting", "processes_alive"]),
    (Defect.SUPERVISOR_GIVES_UP, ["queue_accounting", "processes_alive"]),
]


@pytest.mark.parametrize(
    ("defect", "failing"),
    mutants("database_drop", MUTANTS, subset=[Defect.SUPERVISOR_GIVES_UP]),
)
def test_database_drop_mutant(
    scenario: ScenarioFactory, defect: Defect, failing: list[str]
) -> None:
    with scenario("database_drop", title=TITLE, defect=defect, expect_failing=failing) as sc:
        sc.finish(drop_the_database(sc))
