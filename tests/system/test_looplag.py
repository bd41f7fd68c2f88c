"""A worker's event loop watches itself: a stretch in which it could not run is logged with its
wall-clock bounds, in the line the harness reads."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from harness.history.collect import STALL_LOG
from harness.wait import wait_for_async
from system.looplag import THRESHOLD, watch_loop

BLOCK = 0.15  # > THRESHOLD: what a burst of tracebacks does to a loaded loop


def _hold_the_loop(seconds: float) -> None:
    """The fault under test: a callback that keeps the loop from running (not a wait)."""
    time.sleep(seconds)


async def test_a_loop_held_past_the_threshold_is_logged_with_its_bounds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="system.looplag")
    watcher = asyncio.create_task(watch_loop())
    await asyncio.sleep(0)  # the watcher's first step: it has looked, and waits for its timer
    before = time.time()
    _hold_the_loop(BLOCK)
    after = time.time()

    async def covering() -> list[tuple[float, float]]:
        found = [STALL_LOG.search(r.getMessage()) for r in caplog.records]
        stretches = [(float(m.group("start")), float(m.group("end"))) for m in found if m]
        return [(s, e) for s, e in stretches if s <= before + 0.001 and e >= after - 0.001]

    (stretch,) = (await wait_for_async(covering, timeout=2.0, what="the stall logged")).value
    watcher.cancel()
    # the logged stretch holds the block and is at most about one look wider
    assert stretch[1] - stretch[0] < BLOCK + 0.1
    assert BLOCK > THRESHOLD
