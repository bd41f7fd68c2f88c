"""Stalled-job recovery: one of two workers is SIGKILLed for good mid-job, and the survivor is
given slow jobs of its own.

The survivor's stalled-job recovery must re-queue the dead worker's jobs within the budget the
configuration implies, and must leave its own running jobs alone (their heartbeat is fresh):
every re-execution must be justified by a fault on the worker that ran the interrupted run.
The figures show the measured detection latency against both bounds: the seed document's
(the threshold) and the one our configuration implies. Mutations: ``stall-threshold-ignored``
(live jobs re-run), ``slow-stall-recovery`` (threshold doubled) and ``no-stall-recovery``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest

from harness import budgets
from harness.checker import Verdict, check_attempt_count, check_recovery_latency
from harness.checks import baseline
from harness.history import History
from harness.mutation import mutants
from harness.scenario import ScenarioFactory, ScenarioRun
from system.defects import Defect

TITLE = "Stalled-job recovery by a surviving worker"
#: Slow jobs submitted after the kill, so the survivor runs live jobs during its sweeps.
SURVIVOR_JOBS = 2
CLAIMS = ["stalled_recovery", "stall_detection_latency", "complete_or_fail"]


def lose_a_worker(sc: ScenarioRun) -> Callable[[History], Sequence[Verdict]]:
    """Slow jobs on two workers; SIGKILL the busier one for good."""
    p = sc.profile
    n = sc.rng.randint(4, 6)
    # longer than a recovery sweep's interval, shorter than the job timeout
    slow = min(p.job_timeout * 2 / 3, 2.0)
    sc.nemesis.arm_api_fault("slow", delay=slow, count=n)
    sc.client.submit_many(n)
    running = sc.wait_all_started()
    placement = sc.wait_placed(running)
    victim = max(("w1", "w2"), key=lambda w: sum(1 for v in placement.values() if v == w))
    jobs = sorted(j for j, w in placement.items() if w == victim)
    sc.observe("victim", {"worker": victim, "jobs": jobs})
    sc.nemesis.kill_worker(victim, restart=False)

    # The survivor must be running jobs of its own while its recovery sweeps: a recovery that
    # ignores the threshold re-runs exactly those. All n may have gone to the victim (one
    # worker can fetch them all); jobs submitted now can only go to the survivor. A wave every
    # half a slow call until the victim's jobs were taken back: the first sweep can come a
    # whole threshold late (the victim was running the recovery task itself when it died),
    # after a single wave had ended (a CI run missed stall-threshold-ignored that way).
    def recovered() -> bool:
        status, on = sc.statuses(jobs), sc.running_on(jobs)
        return all(status.get(j) != "doing" or on.get(j) != victim for j in jobs)

    deadline = time.monotonic() + budgets.stall_recovery(p, sc.calibration) + slow
    waves = 0
    while waves == 0 or (not recovered() and time.monotonic() < deadline):
        sc.nemesis.arm_api_fault("slow", delay=slow, count=SURVIVOR_JOBS)
        sc.client.submit_many(SURVIVOR_JOBS)
        waves += 1
        sc.hold_until(recovered, timeout=slow / 2, what="victim jobs taken back", strict=False)
    sc.observe("survivor_waves", {"waves": waves, "jobs_each": SURVIVOR_JOBS})

    def checks(h: History) -> list[Verdict]:
        return [
            *baseline(
                h, expected_status="succeeded", smallest=p.worker_timeout, what="stall recovery"
            ),
            check_recovery_latency(
                h,
                budget=budgets.stall_recovery(p, sc.calibration),
                seed_bound=budgets.stall_seed_bound(p),
                measure_from="start",
            ),
            check_attempt_count(h, max_attempts=p.max_retries),
        ]

    return checks


def settle_timeout(sc: ScenarioRun) -> float:
    p = sc.profile
    return budgets.stall_recovery(p, sc.calibration) + p.job_timeout + p.worker_poll_interval


def test_stalled_recovery(scenario: ScenarioFactory) -> None:
    with scenario("stalled_recovery", title=TITLE, claims=CLAIMS, workers=2) as sc:
        sc.finish(lose_a_worker(sc), settle_timeout=settle_timeout(sc))


MUTANTS = [
    (Defect.STALL_THRESHOLD_IGNORED, ["justified_reruns"]),
    (Defect.SLOW_STALL_RECOVERY, ["recovery_latency"]),
]


@pytest.mark.parametrize(
    ("defect", "failing"),
    mutants("stalled_recovery", MUTANTS, subset=[Defect.STALL_THRESHOLD_IGNORED]),
)
def test_stalled_recovery_mutant(
    scenario: ScenarioFactory, defect: Defect, failing: list[str]
) -> None:
    with scenario(
        "stalled_recovery", title=TITLE, workers=2, defect=defect, expect_failing=failing
    ) as sc:
        sc.finish(lose_a_worker(sc), settle_timeout=2 * settle_timeout(sc))
