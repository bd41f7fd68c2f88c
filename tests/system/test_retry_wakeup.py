"""C4: a scheduled retry starts at its retry time, not at the worker's next poll.

Procrastinate wakes its worker for new jobs (LISTEN/NOTIFY) but a retry is an UPDATE: without
system/waker.py a retry due in 2 s starts at the next poll, up to ``WORKER_POLL_INTERVAL`` late.
These tests use the production poll interval (5 s) so that polling cannot pass for waking.
"""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

from harness.fakeapi.client import FakeApiClient
from system.waker import notifications

if TYPE_CHECKING:
    from conftest import Sut  # the fixture's class (tests/system/conftest.py)

pytestmark = pytest.mark.integration

POLL = "5s"
#: No periodic deferrals: each one notifies the workers and would wake them by chance.
QUIET = {
    "STALLED_JOB_CHECK_INTERVAL": "1h",
    "HEALTH_CHECK_INTERVAL": "1h",
    "SCHEDULED_FETCH_INTERVAL": "off",
}
#: How late a retry may start: the issue's bound (tens of ms, plus a loaded 2-core machine).
LATE = 0.2


def retry_latencies(events: list[tuple[str, float]]) -> list[float]:
    """Seconds from each ``deferred_for_retry`` to the next ``started``."""
    latencies = []
    decided: float | None = None
    for kind, at in events:
        if kind == "deferred_for_retry":
            decided = at
        elif kind == "started" and decided is not None:
            latencies.append(at - decided)
            decided = None
    return latencies


def test_retry_starts_at_its_retry_time_at_production_poll_interval(
    sut: Sut, jokeapi: FakeApiClient
) -> None:
    sut.overrides.update(
        QUIET,
        WORKER_POLL_INTERVAL=POLL,
        RETRY_BASE_DELAY="2s",
        RETRY_MAX_DELAY="300s",
        MAX_RETRIES="3",
    )
    sut.migrate()
    jokeapi.status(503, count=2)  # runs 1 and 2 fail: retries after 2 s and 4 s
    sut.worker("w1")
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"succeeded"}, timeout=20)

    latencies = retry_latencies(sut.events(job_id))
    print(f"\nretry wake-up at poll interval {POLL}: delays {[f'{d:.3f}s' for d in latencies]}")
    assert len(latencies) == 2, sut.events(job_id)
    for expected, observed in zip([2.0, 4.0], latencies, strict=True):
        assert expected - 0.05 <= observed <= expected + LATE, (expected, observed)


def test_job_requeued_by_a_shutdown_is_taken_at_once_by_another_worker(
    sut: Sut, jokeapi: FakeApiClient
) -> None:
    """A run aborted at WORKER_TIMEOUT is re-queued (an UPDATE): the other worker is woken."""
    sut.overrides.update(QUIET, WORKER_POLL_INTERVAL=POLL, JOB_TIMEOUT="60s", WORKER_TIMEOUT="1s")
    sut.migrate()
    first = sut.worker("w1")
    # far longer than starting w2 takes on a loaded machine (seen: 5.4 s), so w1 must abort it
    jokeapi.slow(40.0, count=1)
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"doing"}, timeout=10)
    second = sut.worker("w2")
    first.signal(signal.SIGTERM)
    assert first.wait_exit(timeout=15) == 0
    sut.wait_status([job_id], {"succeeded"}, timeout=15)

    events = sut.events(job_id)
    requeued = next((t for kind, t in events if kind == "deferred_for_retry"), None)
    assert requeued is not None, ("not re-queued", events, first.tail(15))
    restarted = [t for kind, t in events if kind == "started"][1]
    print(f"\nre-queued job started again after {restarted - requeued:.3f}s (poll {POLL})")
    assert restarted - requeued <= LATE, (events, first.tail(15), second.tail(15))


def test_waker_sends_what_procrastinates_insert_trigger_sends(sut: Sut) -> None:
    """The wake-up is Procrastinate's own notification, channels and payload alike."""
    sut.migrate()
    expected: list[tuple[str, str]] = []
    with psycopg.connect(sut.dsn, autocommit=True) as conn:
        for channel in ("procrastinate_queue_v1#api_calls", "procrastinate_any_queue_v1"):
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        [job_id] = sut.defer()  # the insert trigger notifies both channels
        received = [(n.channel, n.payload) for n in conn.notifies(timeout=5, stop_after=2)]
        expected = notifications(job_id, "api_calls")
    # the same channels and the same JSON (the trigger's text has other spacing)
    assert sorted((c, json.loads(p)) for c, p in received) == sorted(
        (c, json.loads(p)) for c, p in expected
    )
    assert [json.loads(p) for _, p in received] == [{"type": "job_inserted", "job_id": job_id}] * 2
