"""Capped exponential backoff, counting total runs as the seed's schedule does."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterable

from procrastinate import BaseRetryStrategy, RetryDecision, RetryStrategy
from procrastinate.jobs import Job

from system.defects import Defect

# 2.0 ** 1024 overflows a float; past this exponent every delay is the cap anyway.
_MAX_EXPONENT = 1000


class ExponentialBackoffStrategy(BaseRetryStrategy):
    """Retry with ``min(base_delay * 2**(k-1), max_delay)`` after run ``k``.

    ``max_attempts`` counts total runs: after run ``max_attempts`` the job fails for good.
    (Procrastinate's own ``RetryStrategy(max_attempts=n)`` means n+1 runs and has no cap.)
    Exceptions outside ``retry_exceptions`` (when given) fail at once.

    ``asyncio.CancelledError`` means the worker aborted the run (graceful shutdown past
    ``WORKER_TIMEOUT``): the job did not fail, so it is re-queued at once, whatever the
    attempt count, unless ``requeue_cancelled`` is False. Procrastinate still adds 1 to
    ``attempts`` for such a run.

    ``defects`` (deliberate, for the chaos harness only) bend the schedule the way real bugs
    do: ``constant-backoff``, ``linear-backoff``, ``uncapped-backoff``, ``extra-run``.
    """

    def __init__(
        self,
        max_attempts: int,
        base_delay: float,
        max_delay: float,
        retry_exceptions: Iterable[type[BaseException]] | None = None,
        *,
        requeue_cancelled: bool = True,
        defects: frozenset[Defect] = frozenset(),
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 (it counts total runs)")
        if base_delay < 0 or max_delay < base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.retry_exceptions = tuple(retry_exceptions) if retry_exceptions is not None else None
        self.requeue_cancelled = requeue_cancelled
        self.defects = defects & _SCHEDULE_DEFECTS

    @property
    def runs(self) -> int:
        """Total runs of a job that keeps failing (``max_attempts``; one more if defective)."""
        return self.max_attempts + (1 if Defect.EXTRA_RUN in self.defects else 0)

    def delay_after_run(self, run: int) -> float:
        """Seconds to wait after run ``run`` (1-based) before the next one."""
        if Defect.CONSTANT_BACKOFF in self.defects:
            delay = self.base_delay
        elif Defect.LINEAR_BACKOFF in self.defects:
            delay = self.base_delay * run
        else:
            delay = self.base_delay * 2.0 ** min(run - 1, _MAX_EXPONENT)
        if Defect.UNCAPPED_BACKOFF in self.defects:
            return delay
        return min(delay, self.max_delay)

    def schedule(self) -> list[float]:
        """Every delay between runs, in order (``runs - 1`` values)."""
        return [self.delay_after_run(k) for k in range(1, self.runs)]

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, asyncio.CancelledError):
            return RetryDecision(retry_at=_in(0.0)) if self.requeue_cancelled else None
        if self.retry_exceptions is not None and not isinstance(exception, self.retry_exceptions):
            return None
        run = job.attempts + 1
        if run >= self.runs:
            return None
        return RetryDecision(retry_at=_in(self.delay_after_run(run)))


_SCHEDULE_DEFECTS = frozenset(
    {Defect.CONSTANT_BACKOFF, Defect.LINEAR_BACKOFF, Defect.UNCAPPED_BACKOFF, Defect.EXTRA_RUN}
)


def _in(seconds: float) -> datetime.datetime:
    # `retry_in` is typed for whole seconds; sub-second delays need an explicit `retry_at`.
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)


def runs_allowed(strategy: BaseRetryStrategy | None) -> int | None:
    """How many runs a job of a task with ``strategy`` may have; None: no bound known.

    Ours counts runs (:attr:`ExponentialBackoffStrategy.runs`); Procrastinate's
    ``RetryStrategy(max_attempts=n)`` allows n+1. A task without one states no bound: its
    failures are not retried, but an interrupted run is (as Procrastinate's own recipe for
    stalled jobs does), so None.
    """
    if isinstance(strategy, ExponentialBackoffStrategy):
        return strategy.runs
    if isinstance(strategy, RetryStrategy):
        return None if strategy.max_attempts is None else strategy.max_attempts + 1
    return None
