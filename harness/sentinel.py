"""A stall sentinel: did the machine freeze while a scenario ran?

A thread asks to be woken every ``PERIOD`` seconds and records each wake-up that came at
least ``STALL`` seconds late: a window in which this process could not run (the machine was
frozen, starved or swapping). Timing verdicts cannot be judged across such a window; the
calibration check reads these ``machine_stall`` observations (see
:func:`harness.checker.calibration.check_calibration`). The pacing uses ``Event.wait``: this
measures the scheduler, it synchronises with nothing.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from harness.history.records import Observation
from harness.history.store import HistoryWriter
from harness.vocabulary import ObservationName

PERIOD = 0.01
#: A wake-up at least this late (seconds) is recorded as a stall.
STALL = 0.1


class StallSentinel:
    """Records ``machine_stall`` observations (``{"start", "duration"}``) while running."""

    def __init__(self, writer: HistoryWriter) -> None:
        self.writer = writer
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-sentinel", daemon=True)

    def _run(self) -> None:
        before = time.monotonic()
        while not self._stop.wait(PERIOD):
            now = time.monotonic()
            late = now - before - PERIOD
            if late >= STALL:
                self.worst = max(self.worst, late)
                start = time.time() - (now - before)
                self.writer.write(
                    Observation(
                        name=ObservationName.MACHINE_STALL,
                        value={"start": round(start, 4), "duration": round(late, 4)},
                        t=start,
                    )
                )
            before = now

    def start(self) -> StallSentinel:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def __enter__(self) -> StallSentinel:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
