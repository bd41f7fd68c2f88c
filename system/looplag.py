"""Event-loop stalls, logged: when this process's loop did not run for a while, say when.

A worker keeps its promises (``JOB_TIMEOUT``, ``WORKER_TIMEOUT``) with timers on its event
loop, and a timer fires only when the loop gets to it. Under a burst (ten runs failing in the
same few milliseconds, each logging its traceback) on a loaded 2-core machine, a worker's loop
was measured 76 ms behind; a timeout due in that stretch fired 76 ms late. That lateness is
the machine's, not a missing timeout, and nothing else in the logs can tell the two apart. So
the worker watches its own loop: a timer every :data:`INTERVAL`, and one line whenever it ran
more than :data:`THRESHOLD` late, naming the stretch in which the loop was not seen running
(from the last time it was, to the moment the timer ran), in wall-clock seconds.

Hand-written rather than asyncio's debug mode (``loop.slow_callback_duration``): debug mode
slows every coroutine (origin tracking, extra checks) and names one slow callback, not the
stretch a timer waited through, which is what a judge of timers needs.
"""

from __future__ import annotations

import asyncio
import logging
import time

logger = logging.getLogger("system.looplag")

#: Seconds between two looks at the loop: a stall is placed to within this.
INTERVAL = 0.01
#: A timer running later than this (seconds) is logged: below the scheduling tolerances the
#: harness calibrates (tens of milliseconds), so every stall that matters to them is seen.
THRESHOLD = 0.02

#: The line, parsed by the harness (``harness.history.collect``): keep them in step.
STALL_LINE = "event loop stalled %.3fs: not seen running from %.6f to %.6f"


async def watch_loop(*, interval: float = INTERVAL, threshold: float = THRESHOLD) -> None:
    """Log one :data:`STALL_LINE` per stall longer than ``threshold``, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        seen = time.time()
        due = loop.time() + interval
        await asyncio.sleep(interval)
        late = loop.time() - due
        if late > threshold:
            now = time.time()
            logger.warning(STALL_LINE, now - seen, seen, now)
