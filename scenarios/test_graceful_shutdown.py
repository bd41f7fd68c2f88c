"""Graceful shutdown: SIGTERM a worker with jobs in flight while another worker keeps running.

Some jobs answer within ``WORKER_TIMEOUT`` and must finish during the shutdown; others hang and
must be aborted and re-queued when ``WORKER_TIMEOUT`` runs out. The worker must exit 0 within
``WORKER_TIMEOUT`` (+ tolerance), leave nothing ``doing``, and no job may run twice because its
heartbeat stopped while it was finishing (the surviving worker's stalled-job recovery runs all
along). Every job ends ``succeeded``.
"""

from __future__ import annotations

from harness.checker import (
    Verdict,
    check_graceful_shutdown,
    check_no_duplicate_effects,
    check_queue_accounting,
)
from harness.history import History
from harness.scenario import ScenarioFactory

TITLE = "Graceful shutdown (SIGTERM) with jobs in flight"
CLAIMS = ["graceful_shutdown", "shutdown_stalled_retried", "complete_or_fail"]


def test_graceful_shutdown(scenario: ScenarioFactory) -> None:
    with scenario("graceful_shutdown", title=TITLE, claims=CLAIMS, workers=2) as sc:
        p = sc.profile
        n = 6
        hanging = sc.rng.randint(2, 3)
        # Requests that hang outlive WORKER_TIMEOUT (they end at JOB_TIMEOUT or when aborted);
        # slow ones are still running at the signal and answer within WORKER_TIMEOUT.
        sc.stack.fakeapi.hang(count=hanging)
        sc.stack.fakeapi.slow(0.6 * min(p.worker_timeout, p.job_timeout), count=n - hanging)
        sc.client.submit_many(n)
        running = sc.wait_all_started()
        sc.hold_until(
            lambda: set(running) <= set(sc.running_on(running)),
            timeout=p.job_timeout,
            what="every running job in a worker's log",
        )
        placement = sc.running_on(running)
        victim = max(("w1", "w2"), key=lambda w: sum(1 for v in placement.values() if v == w))
        jobs = sorted(j for j, w in placement.items() if w == victim)
        code = sc.nemesis.sigterm_worker(victim, timeout=p.worker_timeout * 3 + 5.0, jobs=jobs)
        sc.observe("shutdown", {"worker": victim, "jobs": jobs, "exit_code": code})

        def checks(h: History) -> list[Verdict]:
            return [
                check_graceful_shutdown(
                    h, worker_timeout=p.worker_timeout, tolerance=sc.shutdown_tolerance(h)
                ),
                check_queue_accounting(h, expected_status="succeeded"),
                check_no_duplicate_effects(h),
            ]

        sc.finish(checks)
