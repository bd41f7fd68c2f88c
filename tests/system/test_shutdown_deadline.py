"""The running jobs of a worker asked to stop are aborted ``WORKER_TIMEOUT`` after the request,
even when Procrastinate reaches its own graceful timeout late (InMemoryConnector, no
database: what is judged is when the job's coroutine is cancelled)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from procrastinate import App
from procrastinate.testing import InMemoryConnector
from procrastinate.worker import Worker

from system.worker import _stop_worker

GRACE = 0.2
#: A side task that misses its first cancellation holds Procrastinate's shutdown up for
#: ``procrastinate.utils.CANCEL_TIMEOUT`` (1 s) before it even starts the graceful timeout.
SLOW_CANCEL = 1.0


async def _worker_with_a_slow_side_task() -> tuple[Worker, dict[str, float], asyncio.Event]:
    app = App(connector=InMemoryConnector())
    seen: dict[str, float] = {}
    started = asyncio.Event()

    @app.task(name="long")
    async def long() -> None:
        seen["started"] = time.monotonic()
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["cancelled"] = time.monotonic()
            raise

    worker = Worker(
        app,
        concurrency=2,
        wait=True,
        fetch_job_polling_interval=0.01,
        shutdown_graceful_timeout=GRACE,
        install_signal_handlers=False,
        listen_notify=False,
    )
    starting = worker._start_side_tasks

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)  # missed: Procrastinate cancels it again after CANCEL_TIMEOUT
        await asyncio.sleep(60)

    def with_stubborn() -> list[asyncio.Task[Any]]:
        return [*starting(), asyncio.create_task(stubborn(), name="stubborn")]

    worker._start_side_tasks = with_stubborn  # type: ignore[method-assign]
    await app.open_async()
    await long.defer_async()
    return worker, seen, started


async def _stopped(abort_after: float | None) -> float:
    """Seconds from the stop request to the running job's cancellation."""
    worker, seen, started = await _worker_with_a_slow_side_task()
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), timeout=10)
    asked = time.monotonic()
    _stop_worker(worker, abort_after=abort_after)
    await asyncio.wait_for(run, timeout=10)
    return seen["cancelled"] - asked


async def test_running_jobs_are_aborted_at_the_deadline_from_the_stop_request() -> None:
    took = await _stopped(abort_after=GRACE)
    print(f"\naborted {took:.3f}s after the stop request (deadline {GRACE}s)")
    assert GRACE - 0.05 <= took <= GRACE + 0.15, took


async def test_procrastinate_alone_aborts_a_whole_cancel_round_late() -> None:
    took = await _stopped(abort_after=None)
    print(f"\nProcrastinate alone: aborted {took:.3f}s after the stop request")
    assert took >= GRACE + SLOW_CANCEL - 0.05, took
