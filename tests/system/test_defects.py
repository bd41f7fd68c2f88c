"""Deliberate defects: names, descriptions, parsing, and the schedules they bend."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from system.defects import DESCRIPTIONS, Defect, parse_defects
from system.retry import ExponentialBackoffStrategy
from system.settings import SettingsError, load_settings
from system.tasks import FETCH_TASK, build_app

from .test_retry import delay_of, job, runs_until_failure

URL = {"PROCRASTINATE_DATABASE_URL": "postgresql://u@127.0.0.1:1/db"}

CONTRACT_NAMES = {
    "plain-insert",
    "no-stall-recovery",
    "no-db-supervision",
    "no-timeout",
    "constant-backoff",
    "linear-backoff",
    "extra-run",
    "uncapped-backoff",
    "timeout-not-retried",
    "no-shutdown-abort",
    "cancelled-not-requeued",
    "stall-threshold-ignored",
    "slow-stall-recovery",
    "health-always-ok",
    "health-ignores-heartbeat",
    "ack-without-queue",
    "supervisor-gives-up",
    "no-watchdog",
    "succeed-without-store",
}


def test_every_contract_name_is_a_defect_with_a_one_line_description() -> None:
    assert {d.value for d in Defect} == CONTRACT_NAMES
    assert set(DESCRIPTIONS) == set(Defect)
    for defect in Defect:
        assert defect.description.strip()
        assert "\n" not in defect.description


def test_settings_parse_every_name_into_the_enum() -> None:
    s = load_settings({**URL, "BULLETPROOF_DEFECTS": ", ".join(sorted(CONTRACT_NAMES))})
    assert s.defects == frozenset(Defect)
    assert all(isinstance(d, Defect) for d in s.defects)
    assert load_settings({**URL, "BULLETPROOF_DEFECTS": "extra-run"}).defects == {Defect.EXTRA_RUN}


def test_unknown_defect_is_one_line_listing_the_known_ones() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({**URL, "BULLETPROOF_DEFECTS": "constant-backoff,exponential-bakoff"})
    message = str(info.value)
    assert "BULLETPROOF_DEFECTS=" in message
    assert "unknown defect exponential-bakoff" in message
    assert "succeed-without-store" in message  # the known names are listed
    assert "\n" not in message
    with pytest.raises(ValueError, match="unknown defect x"):
        parse_defects("x")


def strategy(*defects: Defect, runs: int = 6) -> ExponentialBackoffStrategy:
    return ExponentialBackoffStrategy(
        max_attempts=runs, base_delay=0.1, max_delay=0.8, defects=frozenset(defects)
    )


@pytest.mark.parametrize(
    ("defects", "schedule"),
    [
        ((), [0.1, 0.2, 0.4, 0.8, 0.8]),
        ((Defect.CONSTANT_BACKOFF,), [0.1, 0.1, 0.1, 0.1, 0.1]),
        ((Defect.LINEAR_BACKOFF,), [0.1, 0.2, 0.3, 0.4, 0.5]),
        ((Defect.UNCAPPED_BACKOFF,), [0.1, 0.2, 0.4, 0.8, 1.6]),
        ((Defect.EXTRA_RUN,), [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]),
    ],
)
def test_schedule_defects_bend_the_delays(
    defects: tuple[Defect, ...], schedule: list[float]
) -> None:
    s = strategy(*defects)
    assert s.schedule() == pytest.approx(schedule)
    # what the worker actually gets, run after run, until the job fails for good
    assert runs_until_failure(s, RuntimeError("boom")) == pytest.approx(schedule, abs=0.05)


def test_linear_backoff_is_capped() -> None:
    s = strategy(Defect.LINEAR_BACKOFF, runs=12)
    assert max(s.schedule()) == pytest.approx(0.8)


def test_unrelated_defects_leave_the_schedule_alone() -> None:
    s = strategy(Defect.PLAIN_INSERT, Defect.NO_WATCHDOG)
    assert s.schedule() == pytest.approx([0.1, 0.2, 0.4, 0.8, 0.8])
    assert s.runs == 6


def fetch_strategy(defects: str) -> ExponentialBackoffStrategy:
    app = build_app(load_settings({**URL, "BULLETPROOF_DEFECTS": defects}))
    retry = app.tasks[FETCH_TASK].retry_strategy
    assert isinstance(retry, ExponentialBackoffStrategy)
    return retry


@pytest.mark.parametrize(
    "exc", [TimeoutError(), httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow")]
)
def test_timeout_not_retried_fails_timeouts_at_once(exc: BaseException) -> None:
    assert delay_of(fetch_strategy(""), 0, exc) == pytest.approx(2.0, abs=0.05)
    assert delay_of(fetch_strategy("timeout-not-retried"), 0, exc) is None
    # network errors are still retried with the defect: only timeouts are forgotten
    assert delay_of(fetch_strategy("timeout-not-retried"), 0, httpx.ConnectError("x")) is not None


def test_cancelled_not_requeued_declines_the_shutdown_abort() -> None:
    assert delay_of(fetch_strategy(""), 0, asyncio.CancelledError()) == pytest.approx(0, abs=0.05)
    declined = fetch_strategy("cancelled-not-requeued")
    assert declined.get_retry_decision(exception=asyncio.CancelledError(), job=job(0)) is None
    # ordinary failures are still retried
    assert delay_of(declined, 0, TimeoutError()) is not None


def test_fetch_strategy_takes_the_schedule_defects_from_settings() -> None:
    assert fetch_strategy("").runs == 5
    assert fetch_strategy("extra-run").runs == 6
    assert fetch_strategy("constant-backoff").schedule() == [2.0, 2.0, 2.0, 2.0]
