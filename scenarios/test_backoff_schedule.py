"""Exponential backoff: an upstream that never recovers gives exactly ``MAX_RETRIES`` runs,
spaced ``min(RETRY_BASE_DELAY * 2**(k-1), RETRY_MAX_DELAY)`` apart, then an explicit ``failed``.

The schedule is long enough to tell every realistic wrong schedule apart: in the fast profile
6 runs with base 0.3 s and cap 2.4 s give 0.3, 0.6, 1.2, 2.4, 2.4 s (four doublings, then one
capped delay), so constant, linear, off-by-one and uncapped schedules all fail; the production
profile keeps the seed's own 2, 4, 8, 16 s (cap 300 s). The tolerance comes from the
calibration and must stay below half the smallest delay, or the verdict is ``unknown``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from harness.checker import Verdict, check_attempt_count, check_retry_schedule
from harness.checks import baseline, judged_jobs
from harness.history import History
from harness.mutation import mutants
from harness.profiles import get_profile
from harness.scenario import ScenarioFactory, ScenarioRun
from system.defects import Defect

TITLE = "Exponential backoff schedule against an upstream that never recovers"
CLAIMS = ["backoff_formula", "backoff_cap", "retry_window", "max_attempts", "complete_or_fail"]


def schedule_settings(profile_name: str) -> dict[str, Any]:
    """Fast: 6 runs, the profile's base, cap 8 x base (reached on the 4th delay, applied on the
    5th). Production: the seed's settings unchanged (5 runs, 2/4/8/16 s, cap 300 s)."""
    p = get_profile(profile_name)
    if p.name == "production":
        return {}
    return {"max_retries": 6, "retry_max_delay": 8 * p.retry_base_delay}


def never_recovers(sc: ScenarioRun) -> Callable[[History], Sequence[Verdict]]:
    """Two jobs against an API that answers 503 to everything, until both failed for good."""
    p = sc.profile
    capped = p.retry_base_delay * 2 ** (p.max_retries - 2) > p.retry_max_delay
    with sc.nemesis.api_fault("status", status=503):
        sc.client.submit_many(2)
        sc.settle()

    def checks(h: History) -> list[Verdict]:
        return [
            *baseline(
                h,
                expected_status="failed",
                smallest=p.retry_base_delay,
                what=f"a {p.retry_base_delay:g}s retry delay",
            ),
            check_retry_schedule(
                h,
                jobs=judged_jobs(h),
                base_delay=p.retry_base_delay,
                max_delay=p.retry_max_delay,
                tolerance=sc.calibration.tolerance,
                require_cap=capped,
            ),
            check_attempt_count(h, max_attempts=p.max_retries, require_failures=True),
        ]

    return checks


def test_backoff_schedule(scenario: ScenarioFactory, pytestconfig: pytest.Config) -> None:
    settings = schedule_settings(pytestconfig.getoption("--profile"))
    with scenario("backoff_schedule", title=TITLE, claims=CLAIMS, settings=settings) as sc:
        sc.finish(never_recovers(sc))


MUTANTS = [
    (Defect.CONSTANT_BACKOFF, ["retry_schedule"]),
    (Defect.LINEAR_BACKOFF, ["retry_schedule"]),
    (Defect.UNCAPPED_BACKOFF, ["retry_schedule"]),
    (Defect.EXTRA_RUN, ["attempt_count"]),
]


@pytest.mark.parametrize(
    ("defect", "failing"),
    mutants("backoff_schedule", MUTANTS, subset=[Defect.LINEAR_BACKOFF]),
)
def test_backoff_schedule_mutant(
    scenario: ScenarioFactory, pytestconfig: pytest.Config, defect: Defect, failing: list[str]
) -> None:
    settings = schedule_settings(pytestconfig.getoption("--profile"))
    with scenario(
        "backoff_schedule",
        title=TITLE,
        settings=settings,
        defect=defect,
        expect_failing=failing,
    ) as sc:
        sc.finish(never_recovers(sc))
