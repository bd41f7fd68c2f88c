"""Calibration: how late does this stack start a retry that has come due, before any fault?

Scenarios judge timings (retry delays, aborts at ``WORKER_TIMEOUT``, stall recovery) with a
tolerance. The tolerance must come from the machine and stack as they are *now*, and never
from the runs being judged (a slow worker would buy itself looser checks). So, on the freshly
started stack, the harness submits a few ordinary jobs whose first joke request gets a 503:
each fails once and is retried by the system's own retry path. For each, the lateness of the
retry, ``started - retry time`` (the ``scheduled`` event's time is the retry time the strategy
asked for), is exactly what a backoff check has to tolerate, whatever the strategy's formula.
:class:`harness.budgets.Calibration` turns the worst one into the scheduling tolerance; a
system that wakes late makes the scenario ``unknown``, never ``pass``.

The calibration jobs are ordinary acknowledged jobs: they are in the history and judged with
the others (they must succeed); their ids are in the ``calibration`` observation.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace

import psycopg

from harness import probe
from harness.budgets import Calibration
from harness.vocabulary import TERMINAL_STATUSES
from harness.wait import wait_for

SAMPLES = 5
#: At most this many calibration rounds: a round spoilt by a passing hiccup (another process's
#: burst) is measured again; a machine that stays slow stays slow, and the scenario says so.
ROUNDS = 3


def calibrate(
    *,
    dsn: str,
    fail_next: Callable[[int], object],
    submit: Callable[[int], Sequence[int]],
    timeout: float,
    samples: int = SAMPLES,
) -> Calibration:
    """Make the next ``samples`` joke requests fail (``fail_next``), ``submit`` as many jobs,
    wait (at most ``timeout``) until they ended, and measure each retry's lateness (one per
    failed request: a job submitted late may leave its 503 to an earlier job's retry)."""
    fail_next(samples)
    ids = list(submit(samples))
    if not ids:
        raise RuntimeError("calibration: the system acknowledged none of its jobs")
    # Only jobs that exist can end: an acknowledged job without a row is for the accounting
    # to call lost, not for the calibration to wait for.
    wait_for(
        lambda: (
            len(st := probe.job_statuses(dsn, ids)) > 0
            and all(s in TERMINAL_STATUSES for s in st.values())
        ),
        timeout=timeout,
        what=f"{len(ids)} calibration jobs to end",
        ignore=(psycopg.Error,),
    )
    lateness = sorted(probe.retry_lateness(dsn, ids))
    if not lateness:
        raise RuntimeError("calibration: no calibration job was retried (did the 503s land?)")
    return Calibration(
        samples=len(lateness),
        pickup_p50=round(statistics.median(lateness), 4),
        pickup_max=round(lateness[-1], 4),
        job_ids=tuple(ids),
    )


def calibrate_rounds(
    measure: Callable[[], Calibration], *, precise_enough: float, rounds: int = ROUNDS
) -> Calibration:
    """Calibrate (``measure``) until a round's tolerance is at most ``precise_enough`` seconds,
    at most ``rounds`` times; return the most precise round, with every round's worst pickup
    (``rounds``) and every round's jobs (all of them are judged with the scenario's)."""
    done: list[Calibration] = []
    for _ in range(rounds):
        done.append(measure())
        if done[-1].tolerance <= precise_enough:
            break
    best = min(done, key=lambda c: c.pickup_max)
    return replace(
        best,
        job_ids=tuple(j for c in done for j in c.job_ids),
        rounds=tuple(c.pickup_max for c in done),
    )
