"""Stalled-job recovery: a worker dies for good; another worker's periodic recovery re-queues
its jobs once their heartbeat is older than ``STALLED_JOB_THRESHOLD``.

Two workers run; the one holding the most in-flight jobs (read from its own log) is SIGKILLed
and not restarted. Latency is measured from the worker's death to each job running again and
checked against ``heartbeat + threshold + check interval + poll interval + measured slack``.
"""

from __future__ import annotations

from harness.checker import (
    Verdict,
    check_attempt_count,
    check_no_duplicate_effects,
    check_queue_accounting,
    check_recovery_latency,
)
from harness.history import History
from harness.scenario import ScenarioFactory

TITLE = "Stalled-job recovery by a surviving worker"
CLAIMS = ["stalled_recovery", "stall_detection_latency", "complete_or_fail"]


def test_stalled_recovery(scenario: ScenarioFactory) -> None:
    with scenario("stalled_recovery", title=TITLE, claims=CLAIMS, workers=2) as sc:
        p = sc.profile
        n = sc.rng.randint(4, 6)
        sc.stack.fakeapi.slow(min(p.job_timeout * 2 / 3, 2.0), count=n)
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
        sc.observe("victim", {"worker": victim, "jobs": jobs})
        sc.nemesis.kill_worker(victim, restart=False)

        def checks(h: History) -> list[Verdict]:
            return [
                check_queue_accounting(h, expected_status="succeeded"),
                check_recovery_latency(h, budget=sc.stall_budget(h), measure_from="start"),
                check_no_duplicate_effects(h),
                check_attempt_count(h, max_attempts=p.max_retries),
            ]

        sc.finish(
            checks,
            settle_timeout=sc.stall_budget(sc.writer.history)
            + p.job_timeout
            + p.worker_poll_interval,
        )
