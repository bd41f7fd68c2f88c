"""A run's outcome is written only while its job is still in that run, and a worker whose row
was pruned fetches nothing: the two guards of :class:`system.waker.RetryAwareJobManager`.

Both were found by random schedules: a worker whose session came back after a database outage
re-queued a job that had meanwhile been recovered, run elsewhere and failed for good (it ran
again); a job fetched just after a PostgreSQL restart, before its worker's next heartbeat, had
the worker row pruned under it and ran twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
from procrastinate import App
from procrastinate.jobs import Status

from system.settings import load_settings
from system.tasks import build_app
from system.waker import RetryAwareJobManager, WorkerGone

if TYPE_CHECKING:
    from conftest import Sut  # the fixture's class (tests/system/conftest.py)

pytestmark = pytest.mark.integration


def with_manager(sut: Sut, body: Callable[[App, RetryAwareJobManager], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        app = build_app(load_settings(sut.env()))
        async with app.open_async():
            assert isinstance(app.job_manager, RetryAwareJobManager)
            return await body(app, app.job_manager)

    return asyncio.run(run())


def register(sut: Sut) -> int:
    [row] = sut.query("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
    return int(row["id"])


def test_a_stale_retry_does_not_revive_a_job_that_failed_meanwhile(sut: Sut) -> None:
    sut.migrate()
    [job_id] = sut.defer()
    worker_id = register(sut)

    async def body(app: App, manager: RetryAwareJobManager) -> None:
        job = await manager.fetch_job(None, worker_id)  # run 1, attempts 0
        assert job is not None and job.id == job_id
        # meanwhile: recovered (attempts 1), run 2 elsewhere, failed for good
        sut.query(
            "UPDATE procrastinate_jobs SET status = 'failed', attempts = 2 WHERE id = %s",
            (job_id,),
        )
        await manager.retry_job(job)  # run 1's held-up re-queue: dropped
        await manager.finish_job(job, Status.SUCCEEDED, delete_job=False)  # dropped too

    with_manager(sut, body)
    assert sut.job(job_id) == {"id": job_id, "status": "failed", "attempts": 2}
    assert [kind for kind, _ in sut.events(job_id)].count("retried") == 0


def test_a_current_run_writes_its_outcome(sut: Sut) -> None:
    sut.migrate()
    [first, second] = sut.defer(2)
    worker_id = register(sut)
    heard: list[int] = []

    async def body(app: App, manager: RetryAwareJobManager) -> None:
        manager.retry_listeners.append(lambda job_id, queue, at: heard.append(job_id))
        a = await manager.fetch_job(None, worker_id)
        b = await manager.fetch_job(None, worker_id)
        assert a is not None and b is not None
        await manager.retry_job(a)
        await manager.finish_job(b, Status.SUCCEEDED, delete_job=False)

    with_manager(sut, body)
    assert sut.job(first) == {"id": first, "status": "todo", "attempts": 1}
    assert sut.job(second)["status"] == "succeeded"
    assert heard == [first]


def test_a_fetch_beats_first_and_a_pruned_worker_fetches_nothing(sut: Sut) -> None:
    sut.migrate()
    [job_id] = sut.defer()
    stale = register(sut)
    sut.query(
        "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = %s",
        (stale,),
    )
    gone = register(sut)
    sut.query("DELETE FROM procrastinate_workers WHERE id = %s", (gone,))

    async def body(app: App, manager: RetryAwareJobManager) -> None:
        with pytest.raises(WorkerGone, match=f"worker row {gone} is gone"):
            await manager.fetch_job(None, gone)
        job = await manager.fetch_job(None, stale)
        assert job is not None and job.id == job_id

    with_manager(sut, body)
    [row] = sut.query(
        "SELECT EXTRACT(EPOCH FROM now() - last_heartbeat)::float8 AS age "
        "FROM procrastinate_workers WHERE id = %s",
        (stale,),
    )
    assert row["age"] < 60  # beaten by the fetch, not an hour old
    assert sut.job(job_id)["status"] == "doing"
