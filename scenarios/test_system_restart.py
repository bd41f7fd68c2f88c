"""System restart: API, worker and PostgreSQL restarted with jobs queued and in flight.

Like ``docker-compose restart``, twice: first a clean restart (SIGTERM to the SUT, PostgreSQL
fast stop), then a crash restart (SIGKILL everything, PostgreSQL included). The worker runs
two jobs at a time (``WORKER_CONCURRENCY=2``) so that some jobs are in flight and others wait
in the queue. Every acknowledged job must succeed; jobs in flight at the crash come back
through stalled-job recovery within the budget computed from the configuration.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

from harness import budgets
from harness.budgets import PROCESS_START_MARGIN
from harness.checker import Verdict, check_attempt_count, check_recovery_latency
from harness.checks import baseline
from harness.history import History
from harness.scenario import ScenarioFactory, ScenarioRun

TITLE = "System restart (clean, then crash) with jobs queued and in flight"
CLAIMS = ["no_loss_restart", "complete_or_fail", "no_duplicate_effects"]
CONCURRENCY = 2


def restart_everything(sc: ScenarioRun, *, crash: bool) -> None:
    """Stop (or kill) worker, API and PostgreSQL, then start them all again; one fault window
    per component, all closed once everything is ready."""
    stack, nemesis = sc.stack, sc.nemesis
    worker, api, pg = stack.worker("w1"), stack.api, stack.postgres
    assert api is not None
    with contextlib.ExitStack() as windows:
        windows.enter_context(nemesis.window("kill" if crash else "restart", "worker:w1"))
        windows.enter_context(nemesis.window("kill" if crash else "restart", "api"))
        windows.enter_context(nemesis.window("pg_kill" if crash else "pg_restart", "postgres"))
        if crash:
            worker.kill()
            api.kill()
            pg.kill()
        else:
            worker.stop(timeout=sc.profile.worker_timeout + PROCESS_START_MARGIN)
            api.stop(timeout=PROCESS_START_MARGIN)
            pg.stop(timeout=PROCESS_START_MARGIN)
        pg.start(timeout=PROCESS_START_MARGIN * 3)
        with ThreadPoolExecutor(max_workers=2) as pool:
            started = [
                pool.submit(s.start, timeout=PROCESS_START_MARGIN * 3) for s in (api, worker)
            ]
            for future in started:
                future.result()


def test_system_restart(scenario: ScenarioFactory) -> None:
    with scenario(
        "system_restart",
        title=TITLE,
        claims=CLAIMS,
        settings={"worker_concurrency": CONCURRENCY},
    ) as sc:
        p = sc.profile
        for crash in (False, True):
            n = CONCURRENCY + sc.rng.randint(2, 3)
            sc.nemesis.arm_api_fault("slow", delay=min(p.job_timeout * 2 / 3, 2.0), count=n)
            sc.client.submit_many(n)
            sc.wait_in_flight(CONCURRENCY)
            restart_everything(sc, crash=crash)

        def checks(h: History) -> list[Verdict]:
            return [
                *baseline(
                    h,
                    expected_status="succeeded",
                    smallest=p.worker_timeout,
                    what="a restart's recovery",
                ),
                check_recovery_latency(
                    h,
                    budget=budgets.stall_recovery(p, sc.calibration),
                    seed_bound=budgets.stall_seed_bound(p),
                    fault_kinds=("kill",),
                ),
                check_attempt_count(h, max_attempts=p.max_retries),
            ]

        sc.finish(checks)
