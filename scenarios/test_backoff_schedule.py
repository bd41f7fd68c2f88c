"""Exponential backoff: an upstream that never recovers gives exactly ``MAX_RETRIES`` runs,
spaced ``min(RETRY_BASE_DELAY * 2**(k-1), RETRY_MAX_DELAY)`` apart, then an explicit ``failed``.

``RETRY_MAX_DELAY`` is set to twice the base delay so that the cap is reached within the
attempts and checked too. Tolerance: polling interval + measured scheduling slack.
"""

from __future__ import annotations

import pytest

from harness.checker import (
    Verdict,
    check_attempt_count,
    check_queue_accounting,
    check_retry_schedule,
)
from harness.history import History
from harness.profiles import get_profile
from harness.scenario import ScenarioFactory

TITLE = "Exponential backoff schedule against an upstream that never recovers"
CLAIMS = ["backoff_formula", "backoff_cap", "retry_window", "max_attempts", "complete_or_fail"]


def test_backoff_schedule(scenario: ScenarioFactory, pytestconfig: pytest.Config) -> None:
    base = get_profile(pytestconfig.getoption("--profile")).retry_base_delay
    with scenario(
        "backoff_schedule",
        title=TITLE,
        claims=CLAIMS,
        settings={"retry_max_delay": 2 * base},
    ) as sc:
        p = sc.profile
        with sc.nemesis.api_fault("status", status=503):
            sc.client.submit_many(2)
            sc.settle()

        def checks(h: History) -> list[Verdict]:
            return [
                check_retry_schedule(
                    h,
                    base_delay=p.retry_base_delay,
                    max_delay=p.retry_max_delay,
                    tolerance=sc.tolerance(h),
                ),
                check_attempt_count(h, max_attempts=p.max_retries, require_failures=True),
                check_queue_accounting(h, expected_status="failed"),
            ]

        sc.finish(checks)
