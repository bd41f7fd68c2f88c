"""Job timeout: a run whose joke request hangs is cancelled at ``JOB_TIMEOUT`` and retried.

``JOB_TIMEOUT`` is capped below the SUT's HTTP read timeout (as the seed's Test 2 lowers it),
so it is the job timeout, not the HTTP client, that ends the hanging run, in every profile.
A timed-out run with runs left must be retried (``failed`` after a timeout on run 1 of 5 is a
lost job in disguise). Mutations: ``no-timeout`` (the hang outlives the timeout) and
``timeout-not-retried`` (the seed's retry list, which forgets ``TimeoutError``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from harness.checker import Verdict, check_attempt_count, check_job_timeout, check_retry_schedule
from harness.checks import baseline, judged_jobs
from harness.history import History
from harness.mutation import mutants
from harness.profiles import get_profile
from harness.scenario import ScenarioFactory, ScenarioRun
from system.defects import Defect
from system.jokes import HTTP_TIMEOUT

TITLE = "Job timeout: hanging requests are cancelled and retried"
CLAIMS = ["timeout_cancels", "timeout_retries", "complete_or_fail"]


def timeout_settings(profile_name: str) -> dict[str, float]:
    """``JOB_TIMEOUT`` below a quarter of the HTTP read timeout."""
    read = HTTP_TIMEOUT.read or 10.0
    return {"job_timeout": min(get_profile(profile_name).job_timeout, read / 4)}


def hanging_jobs(sc: ScenarioRun) -> Callable[[History], Sequence[Verdict]]:
    """Submit jobs whose first request hangs (for 2 job timeouts, then the fake API answers
    504: the SUT must have given up long before)."""
    p = sc.profile
    n = sc.rng.randint(2, 3)
    sc.nemesis.arm_api_fault("hang", count=n, duration=2 * p.job_timeout)
    sc.client.submit_many(n)

    def checks(h: History) -> list[Verdict]:
        tol = sc.calibration.tolerance
        return [
            *baseline(
                h,
                expected_status="succeeded",
                # retry delays are judged (or left unknown) by retry_schedule itself
                smallest=p.job_timeout,
                what="the job timeout",
            ),
            check_job_timeout(
                h,
                job_timeout=p.job_timeout,
                tolerance=tol,
                max_attempts=p.max_retries,
                require_timeouts=True,
            ),
            check_retry_schedule(
                h,
                jobs=judged_jobs(h),
                base_delay=p.retry_base_delay,
                max_delay=p.retry_max_delay,
                tolerance=tol,
            ),
            check_attempt_count(h, max_attempts=p.max_retries),
        ]

    return checks


def test_job_timeout(scenario: ScenarioFactory, pytestconfig: pytest.Config) -> None:
    settings = timeout_settings(pytestconfig.getoption("--profile"))
    with scenario("job_timeout", title=TITLE, claims=CLAIMS, settings=settings) as sc:
        sc.finish(hanging_jobs(sc))


MUTANTS = [
    (Defect.NO_TIMEOUT, ["job_timeout"]),
    (Defect.TIMEOUT_NOT_RETRIED, ["job_timeout"]),
]


@pytest.mark.parametrize(
    ("defect", "failing"), mutants("job_timeout", MUTANTS, subset=[Defect.TIMEOUT_NOT_RETRIED])
)
def test_job_timeout_mutant(
    scenario: ScenarioFactory, pytestconfig: pytest.Config, defect: Defect, failing: list[str]
) -> None:
    settings = timeout_settings(pytestconfig.getoption("--profile"))
    with scenario(
        "job_timeout", title=TITLE, settings=settings, defect=defect, expect_failing=failing
    ) as sc:
        sc.finish(hanging_jobs(sc))
