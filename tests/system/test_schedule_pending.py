"""When a schedule defers its periodic task: not while a copy waits, nor while one runs on a
live worker, but a copy running for longer than one interval holds the next one back no
more (its worker may have died with it while its heartbeat still looks fresh)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from system.tasks import STALLED_TASK
from system.worker import _PENDING_SQL

if TYPE_CHECKING:
    from conftest import Sut  # the fixture's class (tests/system/conftest.py)

pytestmark = pytest.mark.integration

THRESHOLD = 2.0  # STALLED_JOB_THRESHOLD of the fast profile
INTERVAL = 0.3  # STALLED_JOB_CHECK_INTERVAL of the fast profile


def _running_recovery(sut: Sut, *, started_ago: float, heartbeat_ago: float) -> None:
    """A ``retry_stalled_jobs`` job ``doing`` on a worker, started ``started_ago`` seconds
    ago, whose heartbeat is ``heartbeat_ago`` seconds old."""
    [worker] = sut.query(
        "INSERT INTO procrastinate_workers (last_heartbeat) "
        "VALUES (now() - make_interval(secs => %s)) RETURNING id",
        (heartbeat_ago,),
    )
    [job] = sut.query(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id, args) "
        "VALUES ('default', %s, 'doing', %s, '{}') RETURNING id",
        (STALLED_TASK, worker["id"]),
    )
    sut.query(
        "INSERT INTO procrastinate_events (job_id, type, at) "
        "VALUES (%s, 'started', now() - make_interval(secs => %s))",
        (job["id"], started_ago),
    )


def _pending(sut: Sut) -> bool:
    params = {"task": STALLED_TASK, "threshold": THRESHOLD, "interval": INTERVAL}
    [row] = sut.query(_PENDING_SQL, params)
    return bool(next(iter(row.values())))


def test_a_recovery_just_started_on_a_live_worker_holds_the_next_one_back(sut: Sut) -> None:
    sut.migrate()
    _running_recovery(sut, started_ago=0.05, heartbeat_ago=0.1)
    assert _pending(sut)


def test_a_recovery_running_past_its_interval_does_not(sut: Sut) -> None:
    # soak seed 20261216 run 71: its worker was killed 30 ms into the run; its heartbeat
    # looked fresh for 2 s more, and the next recovery waited for it
    sut.migrate()
    _running_recovery(sut, started_ago=INTERVAL + 0.2, heartbeat_ago=0.3)
    assert not _pending(sut)


def test_a_recovery_on_a_dead_worker_does_not(sut: Sut) -> None:
    sut.migrate()
    _running_recovery(sut, started_ago=0.05, heartbeat_ago=THRESHOLD + 1.0)
    assert not _pending(sut)
