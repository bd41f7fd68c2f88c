"""Database drop: the link to PostgreSQL cut for longer than the pool timeout, then PostgreSQL
SIGKILLed, with jobs in flight and submissions going on.

The system must resume on its own each time: every acknowledged job succeeds, every job pending
when an outage ends moves again (starts or ends a run) within ``reconnect + stalled-job
recovery`` (budgets from the configuration), and ``/health`` says 503 during
each outage and 200 again after it. Submissions made during an outage are refused or end
``unknown``; an unknown one that ran anyway is counted as recovered, not as unexpected.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager

from harness.checker import (
    Verdict,
    check_health_transitions,
    check_no_duplicate_effects,
    check_queue_accounting,
    check_recovery_latency,
)
from harness.client import HealthMonitor
from harness.history import History
from harness.nemesis import FaultHandle
from harness.scenario import ScenarioFactory, ScenarioRun, settle_budget

TITLE = "Database drop: link cut beyond the pool timeout, then PostgreSQL SIGKILLed"
CLAIMS = ["no_loss_database", "health_monitoring", "complete_or_fail"]


def outage(sc: ScenarioRun, fault: AbstractContextManager[FaultHandle], *, at_least: float) -> None:
    """Jobs in flight, then ``fault`` held for ``at_least`` seconds and until /health said 503
    (submitting meanwhile), then healed; returns once /health says 200 again."""
    p = sc.profile
    detect, recover = sc.health_budgets(sc.writer.history)
    n = sc.rng.randint(2, 3)
    sc.stack.fakeapi.slow(min(p.job_timeout * 2 / 3, 2.0), count=n)
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
    healed = time.time()
    sc.hold_until(
        lambda: sc.saw_health(healed, healthy=True),
        timeout=recover + settle_budget(p),
        what="/health back to 200",
        strict=False,
    )


def test_database_drop(scenario: ScenarioFactory) -> None:
    with scenario("database_drop", title=TITLE, claims=CLAIMS) as sc:
        p = sc.profile
        with HealthMonitor(sc.client, interval=sc.health_interval()):
            # longer than the pool timeout: Procrastinate alone would stop its worker here
            outage(sc, sc.nemesis.proxy_down("postgres"), at_least=1.5 * p.db_pool_timeout)
            outage(sc, sc.nemesis.pg_down(kill=True), at_least=0.0)
            healed = time.time()
            sc.settle()
            # keep sampling to the end of the recovery window: /health must be 200 by then
            _, recover = sc.health_budgets(sc.writer.history)
            sc.hold_until(
                lambda: (
                    time.time() >= healed + recover
                    and sc.saw_health(healed + recover, healthy=True)
                ),
                timeout=2 * recover,
                what="/health 200 after the recovery window",
                strict=False,
            )

        def checks(h: History) -> list[Verdict]:
            detect, recover = sc.health_budgets(h)
            return [
                check_queue_accounting(h, expected_status="succeeded"),
                check_recovery_latency(
                    h,
                    budget=sc.reconnect_budget(h) + sc.stall_budget(h),
                    fault_kinds=("proxy_down", "pg_kill"),
                    target_prefix=("dblink", "postgres"),
                    progress=True,
                ),
                check_health_transitions(h, detect_budget=detect, recover_budget=recover),
                check_no_duplicate_effects(h),
            ]

        sc.finish(checks)


def test_database_drop__defect_no_db_supervision(scenario: ScenarioFactory) -> None:
    """Without supervision the worker dies with its database session (Procrastinate's own
    behaviour): jobs submitted after the outage are never run and /health stays 503."""
    with scenario(
        "database_drop__defect_no_db_supervision",
        title=f"{TITLE}, worker not supervised (defect)",
        defects=["no-db-supervision"],
        expect="fail",
        expect_failing=["queue_accounting", "health_transitions"],
    ) as sc:
        p = sc.profile
        detect, _ = sc.health_budgets(sc.writer.history)
        with HealthMonitor(sc.client, interval=sc.health_interval()):
            with sc.nemesis.proxy_down("postgres") as window:
                began = time.monotonic()
                sc.hold_until(
                    lambda: (
                        time.monotonic() - began >= 1.5 * p.db_pool_timeout
                        and sc.saw_health(window.start, healthy=False)
                    ),
                    timeout=1.5 * p.db_pool_timeout + max(detect.values()),
                    what="the outage to last and /health to notice it",
                    strict=False,
                )
            sc.client.submit_many(2)  # after the outage: the API takes them
            # the budget within which a supervised worker has resumed and run them
            h = sc.writer.history
            sc.settle(sc.reconnect_budget(h) + sc.stall_budget(h) + p.job_timeout)

        def checks(h: History) -> list[Verdict]:
            detect, recover = sc.health_budgets(h)
            return [
                check_queue_accounting(h, expected_status="succeeded"),
                check_health_transitions(h, detect_budget=detect, recover_budget=recover),
            ]

        sc.finish(checks)
