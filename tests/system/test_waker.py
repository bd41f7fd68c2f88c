"""RetryAwareJobManager and RetryWaker's planning, without a database (InMemoryConnector)."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

import pytest
from procrastinate import App, manager
from procrastinate.testing import InMemoryConnector

from harness.history.collect import SLOW_FETCH_LOG
from system.waker import (
    FOLLOW_UPS,
    SLOW_FETCH,
    RetryAwareJobManager,
    RetryWaker,
    notifications,
)

UTC = datetime.UTC


def _app() -> tuple[InMemoryConnector, App]:
    """An app on Procrastinate's in-memory connector, with the system's job manager."""
    connector = InMemoryConnector()
    app = App(connector=connector)
    app.job_manager = RetryAwareJobManager(connector)
    return connector, app


async def test_listeners_hear_of_a_retry_once_it_is_stored() -> None:
    connector, app = _app()

    @app.task(queue="api_calls")
    async def work() -> None: ...

    heard: list[tuple[int, str, datetime.datetime, str]] = []

    def listener(job_id: int, queue: str, at: datetime.datetime) -> None:
        heard.append((job_id, queue, at, connector.jobs[job_id]["status"]))

    app.job_manager.retry_listeners.append(listener)
    async with app.open_async():
        job_id = await work.defer_async()
        worker_id = await app.job_manager.register_worker()
        job = await app.job_manager.fetch_job(queues=None, worker_id=worker_id)
        assert job is not None and job.id == job_id
        at = datetime.datetime.now(UTC) + datetime.timedelta(seconds=2)
        await app.job_manager.retry_job(job, retry_at=at)
    # called after the row went back to `todo`, with the job's queue and retry time
    assert heard == [(job_id, "api_calls", at, "todo")]


async def test_a_slow_fetch_that_found_a_job_says_when_it_waited(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, app = _app()

    @app.task(queue="api_calls")
    async def work() -> None: ...

    fetch = manager.JobManager.fetch_job

    async def slow(self: manager.JobManager, queues: Any, worker_id: int) -> Any:
        await asyncio.sleep(2 * SLOW_FETCH)  # the database answering slowly
        return await fetch(self, queues, worker_id)

    caplog.set_level("INFO", logger="system.waker")
    async with app.open_async():
        worker_id = await app.job_manager.register_worker()
        job_id = await work.defer_async()
        assert await app.job_manager.fetch_job(queues=None, worker_id=worker_id) is not None
        assert await app.job_manager.fetch_job(queues=None, worker_id=worker_id) is None
        monkeypatch.setattr(manager.JobManager, "fetch_job", slow)
        before = time.time()
        second = await work.defer_async()
        assert await app.job_manager.fetch_job(queues=None, worker_id=worker_id) is not None
        assert await app.job_manager.fetch_job(queues=None, worker_id=worker_id) is None
    # one line, for the slow fetch that found a job (not the fast one, nor the empty one)
    found = [m for r in caplog.records if (m := SLOW_FETCH_LOG.search(r.getMessage()))]
    assert [int(m.group("job_id")) for m in found] == [second] and second != job_id
    start, end = float(found[0].group("start")), float(found[0].group("end"))
    assert before <= start and end - start >= 2 * SLOW_FETCH


async def test_a_lost_sessions_worker_row_is_left_to_the_prune_when_the_database_is_slow(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    connector, app = _app()
    unregister = manager.JobManager.unregister_worker
    hold = asyncio.Event()

    async def waiting(self: manager.JobManager, worker_id: int) -> None:
        await hold.wait()  # a pool checkout during an outage
        await unregister(self, worker_id)

    async with app.open_async():
        first = await app.job_manager.register_worker()
        second = await app.job_manager.register_worker()
        await app.job_manager.unregister_worker(first)  # not lost: Procrastinate's own call
        assert list(connector.workers) == [second]
        monkeypatch.setattr(manager.JobManager, "unregister_worker", waiting)
        app.job_manager.unregister_within = 0.05
        loop = asyncio.get_running_loop()
        began = loop.time()
        await app.job_manager.unregister_worker(second)
        took = loop.time() - began
    # gave up after its 0.05 s (not the pool timeout), said so, and left the row
    assert 0.05 <= took < 1.0
    assert list(connector.workers) == [second]
    assert any(
        f"worker row {second} not removed in a lost session (no answer within 0.05s)"
        in r.getMessage()
        for r in caplog.records
    )


async def test_note_plans_our_queues_only_and_at_the_retry_time() -> None:
    waker = RetryWaker(None, ["api_calls"], scan_interval=5.0, timeout=1.0)  # type: ignore[arg-type]
    soon = datetime.datetime.now(UTC) + datetime.timedelta(seconds=2)
    waker.note(7, "api_calls", soon)
    waker.note(8, "elsewhere", soon)
    assert waker.planned() == {7: pytest.approx(2.0, abs=0.1)}


def test_notifications_mirror_procrastinates_trigger() -> None:
    assert notifications(5, "api_calls") == [
        ("procrastinate_queue_v1#api_calls", '{"type": "job_inserted", "job_id": 5}'),
        ("procrastinate_any_queue_v1", '{"type": "job_inserted", "job_id": 5}'),
    ]


class _FakeConn:
    """Records NOTIFYs; answers the 'still waiting' query with ``waiting``."""

    def __init__(self, waiting: set[int], sent: list[int]) -> None:
        self.waiting, self.sent = waiting, sent

    def transaction(self) -> _FakeConn:
        return self

    async def __aenter__(self) -> _FakeConn:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self, sql: str, params: tuple[object, ...]) -> _FakeConn:
        if "pg_notify" in sql and params[0] == "procrastinate_any_queue_v1":
            self.sent.append(int(str(params[1]).split('"job_id": ')[1].rstrip("}")))
        self._rows = [(j,) for j in self.waiting if j in params[0]] if "status" in sql else []
        return self

    async def fetchall(self) -> list[tuple[int]]:
        return self._rows


class _FakePool:
    def __init__(self, waiting: set[int]) -> None:
        self.waiting, self.sent = waiting, []  # type: list[int]

    def connection(self) -> _FakeConn:
        return _FakeConn(self.waiting, self.sent)


async def test_a_job_still_waiting_after_its_wake_up_is_woken_again_a_few_times() -> None:
    pool = _FakePool(waiting={7})
    waker = RetryWaker(pool, ["api_calls"], scan_interval=5.0, timeout=1.0)  # type: ignore[arg-type]
    now = datetime.datetime.now(UTC)
    waker.note(7, "api_calls", now)  # 7 stays todo: its wake-up was used up elsewhere
    waker.note(8, "api_calls", now)  # 8 starts at once
    await waker.flush()
    assert sorted(pool.sent) == [7, 8]
    pool.waiting.discard(8)
    for _ in range(10):  # follow-ups come FOLLOW_UP apart; force them due
        waker._planned = {j: (0.0, q) for j, (_, q) in waker._planned.items()}
        await waker.flush()
    # 7 woken again FOLLOW_UPS times, 8 never again (it was no longer waiting)
    assert pool.sent.count(7) == 1 + FOLLOW_UPS and pool.sent.count(8) == 1
    assert waker.planned() == {}


async def test_drain_sends_the_follow_ups_a_single_flush_would_leave_behind() -> None:
    """A stopping worker drains: follow-ups of a re-queued job must not die with the process."""
    pool = _FakePool(waiting={7})
    waker = RetryWaker(pool, ["api_calls"], scan_interval=5.0, timeout=1.0)  # type: ignore[arg-type]
    waker.note(7, "api_calls", datetime.datetime.now(UTC))
    await waker.drain()
    assert pool.sent.count(7) == 1 + FOLLOW_UPS
    assert waker.planned() == {}


async def test_drain_stops_waking_a_job_once_it_was_taken() -> None:
    pool = _FakePool(waiting=set())  # taken at once by another worker
    waker = RetryWaker(pool, ["api_calls"], scan_interval=5.0, timeout=1.0)  # type: ignore[arg-type]
    waker.note(7, "api_calls", datetime.datetime.now(UTC))
    await waker.drain()
    assert pool.sent == [7]


async def test_listening_is_set_by_this_managers_own_probe_only() -> None:
    """The probe is a ``job_inserted`` every listener sees; only its sender counts it as proof."""
    connector = InMemoryConnector()
    mine, other = RetryAwareJobManager(connector), RetryAwareJobManager(connector)
    seen: list[dict[str, object]] = []

    async def on_notification(*, channel: str, notification: Any) -> None:
        seen.append(dict(notification))

    await mine.listen_for_jobs(on_notification=on_notification, queues=["api_calls"])
    assert connector.on_notification is not None
    _, foreign = other.probe(["api_calls"])
    await connector.on_notification(channel="procrastinate_queue_v1#api_calls", payload=foreign)
    assert not mine.listening.is_set()
    channel, payload = mine.probe(["api_calls"])
    assert channel == "procrastinate_queue_v1#api_calls"
    await connector.on_notification(channel=channel, payload=payload)
    assert mine.listening.is_set()
    # both reached Procrastinate's callback as job_inserted: a fetch, never a job id
    assert [(n["type"], n["job_id"]) for n in seen] == [("job_inserted", None)] * 2
