"""Graceful shutdown: SIGTERM a worker with jobs in flight, some answering soon, some hanging.

``JOB_TIMEOUT`` is four times ``WORKER_TIMEOUT`` and the hanging requests never answer on
their own, so only the shutdown can end them: they must be aborted at ``WORKER_TIMEOUT``
(within the calibrated tolerance), re-queued, and then succeed on the second worker, which
joins once the first has taken every job and runs stalled-job recovery all along (no job may
run twice because the stopping worker's heartbeat stopped). The quick jobs finish during the
shutdown. The worker exits 0 within ``WORKER_TIMEOUT`` + a stated margin
(:data:`harness.budgets.EXIT_MARGIN`). Mutations: ``no-shutdown-abort`` (runs go on until
their own timeout) and ``cancelled-not-requeued`` (aborted jobs are lost).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from harness import budgets
from harness.budgets import EXIT_MARGIN
from harness.checker import Verdict, check_graceful_shutdown
from harness.checks import baseline
from harness.history import History
from harness.mutation import mutants
from harness.profiles import get_profile
from harness.scenario import ScenarioFactory, ScenarioRun
from system.defects import Defect

TITLE = "Graceful shutdown (SIGTERM) with jobs in flight"
CLAIMS = ["graceful_shutdown", "shutdown_stalled_retried", "complete_or_fail"]


def shutdown_settings(profile_name: str) -> dict[str, Any]:
    """``JOB_TIMEOUT`` at least four ``WORKER_TIMEOUT``s: only the shutdown ends a hang."""
    p = get_profile(profile_name)
    return {"job_timeout": max(p.job_timeout, 4 * p.worker_timeout)}


def sigterm_mid_job(sc: ScenarioRun) -> Callable[[History], Sequence[Verdict]]:
    """w1 takes every job (some hang, some answer after 0.8 x WORKER_TIMEOUT); as soon as all
    run, w1 gets SIGTERM while w2 boots beside it."""
    p = sc.profile
    n = 5
    hanging = sc.rng.randint(2, 3)
    sc.nemesis.arm_api_fault("hang", count=hanging, duration=2 * p.job_timeout)
    sc.nemesis.arm_api_fault("slow", delay=0.8 * p.worker_timeout, count=n - hanging)
    sc.client.submit_many(n)
    running = sc.wait_all_started(min_doing=n)
    w2 = sc.stack.add_worker("w2", start=False)
    boot = threading.Thread(target=w2.start, kwargs={"timeout": budgets.PROCESS_START_MARGIN})
    boot.start()
    try:
        code = sc.nemesis.sigterm_worker(
            "w1",
            timeout=p.job_timeout + p.worker_timeout + budgets.PROCESS_START_MARGIN,
            jobs=running,
        )
    finally:
        boot.join()
    sc.observe("shutdown", {"worker": "w1", "jobs": running, "exit_code": code})

    def checks(h: History) -> list[Verdict]:
        tol = sc.calibration.tolerance
        return [
            *baseline(
                h,
                expected_status="succeeded",
                smallest=p.worker_timeout,
                what="an abort at WORKER_TIMEOUT",
            ),
            check_graceful_shutdown(
                h,
                worker_timeout=p.worker_timeout,
                abort_tolerance=tol,
                exit_margin=EXIT_MARGIN + tol,
                require_abort=True,
            ),
        ]

    return checks


def test_graceful_shutdown(scenario: ScenarioFactory, pytestconfig: pytest.Config) -> None:
    settings = shutdown_settings(pytestconfig.getoption("--profile"))
    with scenario("graceful_shutdown", title=TITLE, claims=CLAIMS, settings=settings) as sc:
        sc.finish(sigterm_mid_job(sc))


MUTANTS = [
    (Defect.NO_SHUTDOWN_ABORT, ["graceful_shutdown"]),
    (Defect.CANCELLED_NOT_REQUEUED, ["graceful_shutdown", "queue_accounting"]),
]


@pytest.mark.parametrize(
    ("defect", "failing"),
    mutants("graceful_shutdown", MUTANTS, subset=[Defect.CANCELLED_NOT_REQUEUED]),
)
def test_graceful_shutdown_mutant(
    scenario: ScenarioFactory, pytestconfig: pytest.Config, defect: Defect, failing: list[str]
) -> None:
    settings = shutdown_settings(pytestconfig.getoption("--profile"))
    with scenario(
        "graceful_shutdown", title=TITLE, settings=settings, defect=defect, expect_failing=failing
    ) as sc:
        sc.finish(sigterm_mid_job(sc))
