"""One line per aborted job: Procrastinate's abort tracebacks cost the shutdown its precision.

On a graceful stop, Procrastinate logs every job it aborts at ``WORKER_TIMEOUT`` ("ended with
status: Aborted, to retry") with the full traceback of its ``CancelledError``: some 70 lines
through httpx and anyio internals, formatted synchronously in the event loop *before* the job's
re-queue is written. Python 3.11 re-reads source lines to draw its ``^^^`` markers, so each
one took 5-12 ms on a loaded 2-core machine, and the k-th of k aborted jobs was re-queued k
tracebacks late (3 jobs: 1.037 s after SIGTERM for a 1.0 s ``WORKER_TIMEOUT``; 50 jobs, a
quarter of a second). The abort is the intended outcome of a shutdown, so its traceback says
nothing; the one-line message stays, and real failures keep theirs.
"""

from __future__ import annotations

import asyncio
import logging

from procrastinate.exceptions import JobAborted

#: The logger of Procrastinate's "Job ... ended with status" lines.
JOB_OUTCOME_LOGGER = "procrastinate.worker"


class AbortTracebackFilter(logging.Filter):
    """Drop the traceback (never the line) of a record about a cancelled or aborted job."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (asyncio.CancelledError, JobAborted)):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_abort_tracebacks() -> None:
    """Install :class:`AbortTracebackFilter` on Procrastinate's job-outcome logger (once)."""
    target = logging.getLogger(JOB_OUTCOME_LOGGER)
    if not any(isinstance(f, AbortTracebackFilter) for f in target.filters):
        target.addFilter(AbortTracebackFilter())
