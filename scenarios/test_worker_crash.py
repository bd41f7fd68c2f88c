"""Worker crash: SIGKILL the worker with jobs in flight, start it again: every job completes.

The jobs in flight stay ``doing`` with a dead worker; the restarted worker's stalled-job
recovery re-queues them once their heartbeat is older than ``STALLED_JOB_THRESHOLD``. The
recovery latency (worker back -> job running again) is checked against the budget computed
from the configuration. Mutation: with ``no-stall-recovery`` the jobs are never re-queued and
the checker must fail ``queue_accounting`` and ``recovery_latency``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness.checker import (
    Verdict,
    check_attempt_count,
    check_no_duplicate_effects,
    check_queue_accounting,
    check_recovery_latency,
)
from harness.history import History
from harness.scenario import ScenarioFactory, ScenarioRun

TITLE = "Worker crash (SIGKILL) with jobs in flight"
CLAIMS = ["no_loss_worker_crash", "stalled_recovery", "complete_or_fail", "no_duplicate_effects"]


def crash_worker(sc: ScenarioRun) -> Callable[[History], Sequence[Verdict]]:
    """Submit a handful of slow jobs, SIGKILL the worker mid-run, restart it; return checks."""
    p = sc.profile
    jobs = sc.rng.randint(3, 5)
    # Responses slow enough that the kill surely lands mid-run, well inside the job timeout.
    sc.stack.fakeapi.slow(min(p.job_timeout * 2 / 3, 2.0), count=jobs)
    sc.client.submit_many(jobs)
    sc.wait_all_started()
    sc.nemesis.kill_worker("w1", restart=True)

    def checks(h: History) -> list[Verdict]:
        return [
            check_queue_accounting(h, expected_status="succeeded"),
            check_no_duplicate_effects(h),
            check_recovery_latency(h, budget=sc.stall_budget(h)),
            check_attempt_count(h, max_attempts=p.max_retries),
        ]

    return checks


def settle_after_recovery(sc: ScenarioRun) -> float:
    """Deadline once the worker is back: one stalled-job recovery, then one run."""
    p = sc.profile
    return sc.stall_budget(sc.writer.history) + p.job_timeout + p.worker_poll_interval


def test_worker_crash(scenario: ScenarioFactory) -> None:
    with scenario("worker_crash", title=TITLE, claims=CLAIMS) as sc:
        checks = crash_worker(sc)
        sc.finish(checks, settle_timeout=settle_after_recovery(sc))


def test_worker_crash__defect_no_stall_recovery(scenario: ScenarioFactory) -> None:
    with scenario(
        "worker_crash__defect_no_stall_recovery",
        title=f"{TITLE}, stalled-job recovery disabled (defect)",
        defects=["no-stall-recovery"],
        expect="fail",
        expect_failing=["queue_accounting", "recovery_latency"],
    ) as sc:
        checks = crash_worker(sc)
        sc.finish(checks, settle_timeout=settle_after_recovery(sc))
