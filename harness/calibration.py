"""Calibration: how late does this stack start a job that has come due, before any fault?

Scenarios judge timings (retry delays, aborts at ``WORKER_TIMEOUT``, stall recovery) with a
tolerance. The tolerance must come from the machine and stack as they are *now*, and never
from the runs being judged (a slow worker would buy itself looser checks). So, on the freshly
started stack, the harness defers a few runs of the SUT's own ``health_check_task`` (a real
registered task: reads the database, stores nothing) scheduled a little in the future,
through Procrastinate's public API, and measures ``started - scheduled_at`` for each: exactly
the lateness a backoff retry sees. :class:`harness.budgets.Calibration` turns the worst one
into the scheduling tolerance.
"""

from __future__ import annotations

import statistics

import psycopg
from procrastinate import App, SyncPsycopgConnector

from harness import probe
from harness.budgets import Calibration
from harness.wait import wait_for
from system.tasks import HEALTH_TASK

SAMPLES = 5
#: First sample due this long after deferring, the others spaced by SPACING (seconds).
LEAD = 0.25
SPACING = 0.08
QUEUE = "default"


def calibrate(dsn: str, *, timeout: float, samples: int = SAMPLES) -> Calibration:
    """Defer ``samples`` scheduled health checks, wait until each started (at most
    ``timeout`` after the last is due) and return the measured pickup lateness."""
    app = App(connector=SyncPsycopgConnector(conninfo=dsn))
    with app.open():
        ids = [
            app.configure_task(
                HEALTH_TASK,
                queue=QUEUE,
                queueing_lock=f"bulletproof-calibration-{i}",
                schedule_in={"seconds": LEAD + i * SPACING},
            ).defer()
            for i in range(samples)
        ]
    picked = wait_for(
        lambda: found if len(found := probe.scheduled_pickups(dsn, ids)) == len(ids) else None,
        timeout=LEAD + samples * SPACING + timeout,
        what=f"{samples} calibration jobs to start",
        ignore=(psycopg.Error,),
    ).value
    lateness = sorted(max(0.0, started - scheduled) for scheduled, started in picked.values())
    return Calibration(
        samples=len(lateness),
        pickup_p50=round(statistics.median(lateness), 4),
        pickup_max=round(lateness[-1], 4),
    )
