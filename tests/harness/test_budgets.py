"""Budgets and tolerances: pure functions of the profile and the calibration."""

from __future__ import annotations

import pytest

from harness import budgets
from harness.budgets import Calibration
from harness.profiles import get_profile
from system.promises import heartbeat_freshness_limit

QUIET = Calibration(samples=5, pickup_p50=0.005, pickup_max=0.01)
LOADED = Calibration(samples=5, pickup_p50=0.05, pickup_max=0.2)


def test_the_tolerance_is_twice_the_worst_pickup_plus_timestamp_noise() -> None:
    assert QUIET.tolerance == pytest.approx(2 * 0.01 + budgets.TIMESTAMP_NOISE)
    assert QUIET.to_dict()["tolerance"] == QUIET.tolerance


def test_a_tolerance_above_half_the_judged_quantity_is_too_coarse() -> None:
    assert budgets.too_coarse(QUIET, 0.2, "a 0.2s delay") is None
    reason = budgets.too_coarse(LOADED, 0.2, "a 0.2s delay")
    assert reason is not None and "too slow to judge a 0.2s delay" in reason
    assert "0.420s" in reason  # the tolerance is named, with its derivation


def test_backoff_total_sums_the_capped_schedule() -> None:
    production = get_profile("production")
    assert budgets.backoff_total(production) == 2 + 4 + 8 + 16  # 5 runs, under the 300 s cap
    capped = production.replace(retry_max_delay=5.0)
    assert budgets.backoff_total(capped) == 2 + 4 + 5 + 5


@pytest.mark.parametrize("name", ["fast", "production"])
def test_stall_recovery_adds_each_configured_wait_and_the_tolerance(name: str) -> None:
    p = get_profile(name)
    expected = (
        p.worker_heartbeat_interval
        + p.stalled_job_threshold
        + p.stalled_job_check_interval
        + p.worker_poll_interval
        + QUIET.tolerance
    )
    assert budgets.stall_recovery(p, QUIET) == pytest.approx(expected)
    # the seed's own bound is the threshold: our configuration implies more
    assert budgets.stall_seed_bound(p) == p.stalled_job_threshold < expected


def test_a_slower_calibration_widens_budgets_by_its_tolerance_only() -> None:
    p = get_profile("fast")
    widened = budgets.stall_recovery(p, LOADED) - budgets.stall_recovery(p, QUIET)
    assert widened == pytest.approx(LOADED.tolerance - QUIET.tolerance)


def test_health_detection_uses_the_systems_own_freshness_rule() -> None:
    p = get_profile("fast")
    detect = budgets.health_detect(p, QUIET)
    sample = budgets.health_interval(p) + QUIET.tolerance
    # the system's rule has a one-second floor over one interval: 0.2 s beats -> 1.2 s
    assert heartbeat_freshness_limit(p.worker_heartbeat_interval) == pytest.approx(1.2)
    assert detect["kill"] == pytest.approx(1.2 + sample)
    assert detect["pg_kill"] == pytest.approx(min(p.db_pool_timeout, 5.0) + sample)
    assert detect["*"] == max(detect["kill"], detect["pg_kill"])


def test_a_long_outage_outlasts_notice_session_teardown_and_four_reconnects() -> None:
    p = get_profile("fast")
    steps = 0.1 + 0.2 + 0.4 + min(0.8, p.db_reconnect_max_delay)
    teardown = p.worker_timeout + p.db_pool_timeout + 2.0  # the system's own limit
    assert budgets.long_outage(p) == pytest.approx(
        p.db_pool_timeout + p.db_connect_timeout + teardown + steps
    )
    assert budgets.long_outage(p) > p.db_pool_timeout + p.worker_timeout


def test_the_settle_budget_covers_every_wait_a_job_can_go_through() -> None:
    p = get_profile("fast")
    assert budgets.settle(p, QUIET) == pytest.approx(
        budgets.backoff_total(p)
        + p.max_retries * (p.job_timeout + p.worker_poll_interval)
        + budgets.stall_recovery(p, QUIET)
        + p.db_reconnect_max_delay
        + budgets.PROCESS_START_MARGIN
    )


def test_the_shutdown_exit_bound_is_worker_timeout_plus_a_stated_margin() -> None:
    p = get_profile("fast")
    assert budgets.shutdown_exit(p, QUIET) == pytest.approx(
        p.worker_timeout + budgets.EXIT_MARGIN + QUIET.tolerance
    )
