"""Worker crash: SIGKILL the only worker while it runs jobs, then start it again.

The killed runs leave their jobs ``doing``; the restarted worker's stalled-job recovery must
re-queue them within the budget the configuration implies (heartbeat + threshold + check
interval + poll + calibrated tolerance), and every job must succeed exactly once in effect.
Mutation: ``no-stall-recovery`` (nothing re-runs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from harness import budgets
from harness.checker import Verdict, check_attempt_count, check_recovery_latency
from harness.checks import baseline
from harness.history import History
from harness.mutation import mutants
from harness.scenario import ScenarioFactory, ScenarioRun
from system.defects import Defect

TITLE = "Worker crash (SIGKILL) with jobs in flight"
CLAIMS = ["no_loss_worker_crash", "stalled_recovery", "complete_or_fail", "no_duplicate_effects"]


def crash_worker(sc: ScenarioRun) -> Callable[[History], Sequence[Verdict]]:
    """Submit a handful of slow jobs, SIGKILL the worker mid-run, restart it; return checks."""
    p = sc.profile
    jobs = sc.rng.randint(3, 5)
    # Responses slow enough that the kill surely lands mid-run, well inside the job timeout.
    sc.nemesis.arm_api_fault("slow", delay=min(p.job_timeout * 2 / 3, 2.0), count=jobs)
    sc.client.submit_many(jobs)
    sc.wait_all_started()
    sc.nemesis.kill_worker("w1", restart=True)

    def checks(h: History) -> list[Verdict]:
        return [
            *baseline(
                h, expected_status="succeeded", smallest=p.worker_timeout, what="stall recovery"
            ),
            check_recovery_latency(
                h,
                budget=budgets.stall_recovery(p, sc.calibration),
                seed_bound=budgets.stall_seed_bound(p),
            ),
            check_attempt_count(h, max_attempts=p.max_retries),
        ]

    return checks


def settle_after_recovery(sc: ScenarioRun) -> float:
    """Deadline once the worker is back: one stalled-job recovery, then one run."""
    p = sc.profile
    return budgets.stall_recovery(p, sc.calibration) + p.job_timeout + p.worker_poll_interval


def test_worker_crash(scenario: ScenarioFactory) -> None:
    with scenario("worker_crash", title=TITLE, claims=CLAIMS) as sc:
        checks = crash_worker(sc)
        sc.finish(checks, settle_timeout=settle_after_recovery(sc))


#: ``slow-stall-recovery`` is judged in stalled_recovery, not here: the restarted worker prunes
#: the dead worker's row at the configured threshold, and a job whose worker row is gone is
#: stalled whatever the recovery's own threshold, so here the defect is equivalent to none.
MUTANTS = [
    (Defect.NO_STALL_RECOVERY, ["queue_accounting", "recovery_latency"]),
]


@pytest.mark.parametrize(
    ("defect", "failing"), mutants("worker_crash", MUTANTS, subset=[Defect.NO_STALL_RECOVERY])
)
def test_worker_crash_mutant(scenario: ScenarioFactory, defect: Defect, failing: list[str]) -> None:
    with scenario("worker_crash", title=TITLE, defect=defect, expect_failing=failing) as sc:
        checks = crash_worker(sc)
        # a slow recovery must still be seen (late), so wait for twice the budget
        sc.finish(checks, settle_timeout=2 * settle_after_recovery(sc))
