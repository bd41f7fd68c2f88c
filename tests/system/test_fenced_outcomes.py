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

import psycopg
import pytest
from procrastinate import App
from procrastinate.exceptions import ConnectorException
from procrastinate.jobs import Status

from harness.wait import wait_for
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


def _fail_first(manager: RetryAwareJobManager, times: int) -> list[str]:
    """The manager's next ``times`` queries raise what a reset connection raises."""
    real = manager.connector.execute_query_all_async
    failures: list[str] = []

    async def flaky(query: str, **arguments: Any) -> list[dict[str, Any]]:
        if len(failures) < times:
            failures.append(query)
            raise ConnectorException("Database error.") from psycopg.OperationalError(
                "consuming input failed: server closed the connection unexpectedly"
            )
        return await real(query, **arguments)

    manager.connector.execute_query_all_async = flaky  # type: ignore[method-assign]
    return failures


@pytest.mark.parametrize("outcome", ["retry", "succeeded"])
def test_an_outcome_write_cut_by_a_reset_connection_is_written_when_it_comes_back(
    sut: Sut, outcome: str
) -> None:
    # random schedule seed 20261207 (run 7): a dblink reset as a run ended; Procrastinate wrote
    # the outcome once, gave up, and the job stayed `doing` under a worker that beat on: lost
    sut.migrate()
    [job_id] = sut.defer()
    worker_id = register(sut)

    async def body(app: App, manager: RetryAwareJobManager) -> list[str]:
        job = await manager.fetch_job(None, worker_id)
        assert job is not None
        failures = _fail_first(manager, 2)
        if outcome == "retry":
            await manager.retry_job(job)
        else:
            await manager.finish_job(job, Status.SUCCEEDED, delete_job=False)
        return failures

    failures = with_manager(sut, body)
    assert len(failures) == 2
    status = "todo" if outcome == "retry" else "succeeded"
    assert sut.job(job_id) == {
        "id": job_id,
        "status": status,
        "attempts": 1,
    }


def test_an_outcome_the_database_never_takes_ends_the_session_instead_of_hiding_the_job(
    sut: Sut,
) -> None:
    # given up after outcome_retry_for: the watchdog reads outcome_lost and ends the session,
    # so the worker row stops beating and the stalled recovery takes the job
    sut.migrate()
    [job_id] = sut.defer()
    worker_id = register(sut)

    async def body(app: App, manager: RetryAwareJobManager) -> str | None:
        job = await manager.fetch_job(None, worker_id)
        assert job is not None
        manager.outcome_retry_for = 0.3
        failures = _fail_first(manager, 1_000)
        with pytest.raises(ConnectorException):
            await manager.retry_job(job)
        assert 3 <= len(failures) <= 6  # 0.05 + 0.1 + 0.2 s of waits fit in 0.3 s
        return manager.outcome_lost

    lost = with_manager(sut, body)
    assert lost == (
        f"job {job_id}: the outcome (retry) of its run could not be written within 0.3s: "
        "consuming input failed: server closed the connection unexpectedly"
    )
    assert sut.job(job_id)["status"] == "doing"  # for the stalled recovery, once the row is stale


REJECT_OUTCOMES = """
CREATE FUNCTION test_reject_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'outcome rejected (test)'; END $$;
CREATE TRIGGER test_reject_outcome BEFORE UPDATE ON procrastinate_jobs
    FOR EACH ROW WHEN (OLD.status = 'doing' AND NEW.status <> 'doing')
    EXECUTE FUNCTION test_reject_outcome();
"""
ACCEPT_OUTCOMES = """
DROP TRIGGER test_reject_outcome ON procrastinate_jobs;
DROP FUNCTION test_reject_outcome();
"""


def test_a_worker_whose_outcome_write_fails_ends_its_session_and_the_job_runs_again(
    sut: Sut,
) -> None:
    """Procrastinate logs the failed write and runs on: the job stays `doing` under a worker
    row that keeps beating, which no stalled recovery takes. Ours ends the session."""
    sut.migrate()
    worker = sut.worker("w1")
    sut.query(REJECT_OUTCOMES)
    try:
        [job_id] = sut.defer()
        wait_for(
            lambda: "outcome rejected (test)" in worker.output(),
            timeout=15,
            what="the run's outcome write to be rejected",
        )
    finally:
        sut.query(ACCEPT_OUTCOMES)
    sut.wait_status([job_id], {"succeeded"}, timeout=20)
    # the first rejected outcome may be a periodic task's (the stalled recovery, the health
    # check): any of them ends the session, at the watchdog's next beat
    wait_for(
        lambda: "worker session lost (job " in worker.output(),
        timeout=10,
        what="the watchdog to end the session",
    )
    assert "of its run could not be written: outcome rejected (test)" in worker.output()


def test_a_stopping_session_cuts_the_outcome_retries_short(sut: Sut) -> None:
    sut.migrate()
    [job_id] = sut.defer()
    worker_id = register(sut)

    async def body(app: App, manager: RetryAwareJobManager) -> tuple[float, str | None]:
        job = await manager.fetch_job(None, worker_id)
        assert job is not None
        manager.outcome_retry_for = 60.0
        _fail_first(manager, 1_000)
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, manager.give_up.set)  # what the supervisor does when it stops
        began = loop.time()
        with pytest.raises(ConnectorException):
            await manager.finish_job(job, Status.SUCCEEDED, delete_job=False)
        return loop.time() - began, manager.outcome_lost

    took, lost = with_manager(sut, body)
    assert took < 1.0, f"the stop waited {took:.2f}s for a write it had given up"
    assert lost is not None and "could not be written before the session stopped" in lost
    assert sut.job(job_id)["status"] == "doing"
