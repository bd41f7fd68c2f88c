"""ExponentialBackoffStrategy: the seed's schedule, capped, exact run count (Hypothesis)."""

from __future__ import annotations

import asyncio
import datetime
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from procrastinate import RetryStrategy
from procrastinate.jobs import Job

from system.retry import ExponentialBackoffStrategy, runs_allowed


def job(attempts: int) -> Job:
    return Job(id=1, queue="q", lock=None, queueing_lock=None, task_name="t", attempts=attempts)


def delay_of(
    strategy: ExponentialBackoffStrategy, attempts: int, exc: BaseException
) -> float | None:
    before = datetime.datetime.now(datetime.UTC)
    decision = strategy.get_retry_decision(exception=exc, job=job(attempts))
    if decision is None:
        return None
    assert decision.retry_at is not None
    return (decision.retry_at - before).total_seconds()


def runs_until_failure(strategy: ExponentialBackoffStrategy, exc: BaseException) -> list[float]:
    """Simulate Procrastinate: run, ask the strategy, attempts += 1; return the delays."""
    delays: list[float] = []
    attempts = 0
    while (d := delay_of(strategy, attempts, exc)) is not None:
        delays.append(d)
        attempts += 1
        assert attempts < 10_000
    return delays


def test_seed_schedule() -> None:
    strategy = ExponentialBackoffStrategy(max_attempts=5, base_delay=2.0, max_delay=300.0)
    assert strategy.schedule() == [2.0, 4.0, 8.0, 16.0]
    delays = runs_until_failure(strategy, RuntimeError("boom"))
    assert delays == pytest.approx([2.0, 4.0, 8.0, 16.0], abs=0.05)


@settings(deadline=None)  # pure arithmetic; a loaded CI machine must not flake it
@given(
    max_attempts=st.integers(min_value=1, max_value=40),
    base=st.floats(min_value=0.001, max_value=100.0),
    factor=st.floats(min_value=1.0, max_value=1000.0),
)
def test_schedule_is_monotone_capped_and_exact(
    max_attempts: int, base: float, factor: float
) -> None:
    cap = base * factor
    strategy = ExponentialBackoffStrategy(max_attempts=max_attempts, base_delay=base, max_delay=cap)
    schedule = strategy.schedule()
    assert len(schedule) == max_attempts - 1  # exactly max_attempts runs in total
    assert all(a <= b for a, b in itertools.pairwise(schedule))
    assert all(base <= d <= cap for d in schedule)
    for k, d in enumerate(schedule, start=1):
        assert d == pytest.approx(min(base * 2 ** (k - 1), cap))
    # the decision the worker gets matches the schedule, and the run after the last fails
    assert strategy.get_retry_decision(exception=ValueError(), job=job(max_attempts - 1)) is None


@settings(deadline=None)
@given(attempts=st.integers(min_value=0, max_value=100_000))
def test_huge_attempt_counts_do_not_overflow(attempts: int) -> None:
    strategy = ExponentialBackoffStrategy(max_attempts=200_000, base_delay=2.0, max_delay=300.0)
    d = strategy.delay_after_run(attempts + 1)
    assert 2.0 <= d <= 300.0


def test_exceptions_outside_the_list_fail_at_once() -> None:
    strategy = ExponentialBackoffStrategy(5, 1.0, 10.0, retry_exceptions=[TimeoutError])
    assert delay_of(strategy, 0, TimeoutError()) == pytest.approx(1.0, abs=0.05)
    assert delay_of(strategy, 0, ValueError()) is None


def test_cancellation_is_requeued_at_once_whatever_the_count() -> None:
    strategy = ExponentialBackoffStrategy(2, 1.0, 10.0, retry_exceptions=[TimeoutError])
    assert delay_of(strategy, 5, asyncio.CancelledError()) == pytest.approx(0.0, abs=0.05)
    off = ExponentialBackoffStrategy(2, 1.0, 10.0, requeue_cancelled=False)
    assert delay_of(off, 0, asyncio.CancelledError()) is None


@pytest.mark.parametrize(("args"), [(0, 1.0, 2.0), (3, 2.0, 1.0), (3, -1.0, 1.0)])
def test_nonsense_parameters_are_rejected(args: tuple[int, float, float]) -> None:
    with pytest.raises(ValueError):
        ExponentialBackoffStrategy(*args)


def test_runs_allowed_counts_runs_whatever_the_strategy() -> None:
    assert runs_allowed(ExponentialBackoffStrategy(5, 1.0, 2.0)) == 5
    assert runs_allowed(RetryStrategy(max_attempts=5)) == 6  # Procrastinate's: 5 retries
    assert runs_allowed(RetryStrategy()) is None  # retries for ever
    assert runs_allowed(None) is None  # no bound stated: an interrupted run is retried
