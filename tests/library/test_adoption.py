"""A user's own App under bulletproof's parts: connector swap, stalled recovery, migration.

Real PostgreSQL (``pg_dsn``) wherever the claim is about the database.
"""

from __future__ import annotations

import asyncio
import datetime

import psycopg
import psycopg_pool
import pytest
from procrastinate import App, PsycopgConnector
from procrastinate.testing import InMemoryConnector

import bulletproof
from harness.profiles import FAST
from harness.wait import wait_for_async
from system.db import RECOVERIES_TABLE
from system.settings import Settings, load_settings
from system.tasks import HEALTH_TASK, SCHEDULED_FETCH_TASK, STALLED_TASK
from system.waker import RetryAwareJobManager, RetryWaker
from system.worker import Supervisor, adopt_app

UNREACHABLE = "postgresql://127.0.0.1:1/nowhere?connect_timeout=1"


def settings_for(dsn: str) -> Settings:
    return load_settings({**FAST.env(), "PROCRASTINATE_DATABASE_URL": dsn})


def user_app() -> App:
    """An app as a user writes it: its own connector (pointing nowhere useful here)."""
    app = App(connector=PsycopgConnector(conninfo=UNREACHABLE))

    @app.task(name="user_work", queue="work")
    async def user_work(n: int) -> int:
        return n

    return app


def query(dsn: str, sql: str, params: object = None) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


@pytest.mark.integration
async def test_adopted_app_defers_through_the_sessions_connector(pg_dsn: str) -> None:
    app = user_app()
    settings = settings_for(pg_dsn)
    await bulletproof.migrate(app, settings)
    connector = PsycopgConnector(conninfo=pg_dsn)
    adopted = adopt_app(app)(settings, connector)
    assert adopted is app
    assert app.connector is connector
    assert isinstance(app.job_manager, RetryAwareJobManager)
    assert app.job_manager.connector is connector
    async with app.open_async():
        # the task object was created before the swap: it finds the new manager at defer time
        job_id = await app.tasks["user_work"].defer_async(n=3)
    rows = query(
        pg_dsn,
        "SELECT task_name, queue_name, args FROM procrastinate_jobs WHERE id = %s",
        (job_id,),
    )
    assert rows == [("user_work", "work", {"n": 3})]


@pytest.mark.integration
async def test_supervised_user_app_runs_its_jobs_and_its_recovery_schedule(pg_dsn: str) -> None:
    app = user_app()
    bulletproof.register_stalled_recovery(app, queue="work")
    settings = settings_for(pg_dsn)
    await bulletproof.migrate(app, settings)
    supervisor = Supervisor(
        settings,
        "adopted",
        app_factory=adopt_app(app),
        queues=["work"],
        schedules=[(STALLED_TASK, 0.2)],
    )
    run = asyncio.create_task(supervisor.run())
    try:

        async def started() -> bool:
            assert not run.done(), run
            return supervisor.sessions == 1

        await wait_for_async(started, timeout=20, what="the supervised session to start")
        # in this process the app now defers through the session's connector
        job_id = await app.tasks["user_work"].defer_async(n=1)

        async def finished() -> bool:
            [(status,)] = query(
                pg_dsn, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
            )
            return status == "succeeded"

        await wait_for_async(finished, timeout=20, what="the user's job to succeed")

        async def recovery_ran() -> bool:
            rows = query(
                pg_dsn,
                "SELECT queue_name FROM procrastinate_jobs "
                "WHERE task_name = %s AND status = 'succeeded'",
                (STALLED_TASK,),
            )
            return bool(rows) and all(q == "work" for (q,) in rows)

        await wait_for_async(recovery_ran, timeout=20, what="the scheduled stalled-job recovery")
    finally:
        supervisor.request_stop("test done")
        assert await asyncio.wait_for(run, timeout=20) == 0
    assert supervisor.sessions == 1


@pytest.mark.integration
async def test_stalled_recovery_requeues_a_user_apps_stalled_job(pg_dsn: str) -> None:
    app = App(connector=PsycopgConnector(conninfo=pg_dsn))

    @app.task(name="user_work", queue="work")
    async def user_work() -> None: ...

    settings = settings_for(pg_dsn)
    bulletproof.register_stalled_recovery(app, settings, queue="maintenance")
    await bulletproof.migrate(app, settings)
    async with app.open_async():
        job_id = await user_work.defer_async()
        # a worker took the job, then went silent (SIGKILL): its heartbeat is old
        worker_id = await app.job_manager.register_worker()
        job = await app.job_manager.fetch_job(queues=["work"], worker_id=worker_id)
        assert job is not None and job.id == job_id
        query(
            pg_dsn,
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' "
            "WHERE id = %s",
            (worker_id,),
        )
        await app.configure_task(STALLED_TASK).defer_async()
        # a plain Procrastinate worker on the recovery queue only: it runs the recovery once
        await app.run_worker_async(
            queues=["maintenance"], wait=False, install_signal_handlers=False
        )
    [(status, attempts)] = query(
        pg_dsn, "SELECT status::text, attempts FROM procrastinate_jobs WHERE id = %s", (job_id,)
    )
    assert (status, attempts) == ("todo", 1)
    # (the worker start pruned the silent worker row, so the job's worker_id is NULL by then)
    assert query(pg_dsn, f"SELECT job_id FROM {RECOVERIES_TABLE}") == [(job_id,)]
    [(recovery_queue, recovery_status)] = query(
        pg_dsn,
        "SELECT queue_name, status::text FROM procrastinate_jobs WHERE task_name = %s",
        (STALLED_TASK,),
    )
    assert (recovery_queue, recovery_status) == ("maintenance", "succeeded")


@pytest.mark.integration
async def test_generic_migration_is_idempotent_and_leaves_the_systems_tables_out(
    pg_dsn: str,
) -> None:
    app = user_app()
    settings = settings_for(pg_dsn)
    first = await bulletproof.migrate(app, settings)
    second = await bulletproof.migrate(
        app, settings, extra_sql=["CREATE TABLE IF NOT EXISTS mine (id int)"], tables=["mine"]
    )
    assert first[0] == "applied Procrastinate's schema"
    assert second[0] == "Procrastinate's schema already present"
    assert f"{RECOVERIES_TABLE} and mine" in second[1]
    [row] = query(
        pg_dsn,
        "SELECT to_regclass('procrastinate_jobs') IS NOT NULL, to_regclass(%s) IS NOT NULL, "
        "to_regclass('mine') IS NOT NULL, to_regclass('chuck_norris_jokes') IS NULL, "
        "to_regclass('bulletproof_job_effects') IS NULL",
        (RECOVERIES_TABLE,),
    )
    assert row == (True, True, True, True, True)


def test_register_stalled_recovery_is_the_systems_task_on_the_chosen_queue() -> None:
    app = App(connector=InMemoryConnector())
    bulletproof.register_stalled_recovery(app, queue="maintenance")
    task = app.tasks[STALLED_TASK]
    assert (task.queue, task.queueing_lock, task.lock) == ("maintenance", STALLED_TASK, None)


def test_supervise_refuses_an_app_whose_recovery_cannot_run() -> None:
    app = App(connector=InMemoryConnector())
    with pytest.raises(bulletproof.AppError, match="register_stalled_recovery"):
        bulletproof.check_stalled_recovery(app, None)
    bulletproof.register_stalled_recovery(app)
    bulletproof.check_stalled_recovery(app, None)
    bulletproof.check_stalled_recovery(app, ["jokes", "default"])
    with pytest.raises(bulletproof.AppError, match=r"queue 'default'.*\(jokes\) leave out"):
        bulletproof.check_stalled_recovery(app, ["jokes"])


def test_schedule_plan_keeps_the_systems_plan_by_default() -> None:
    settings = load_settings({**FAST.env(), "PROCRASTINATE_DATABASE_URL": UNREACHABLE})
    default = Supervisor(settings, "s")
    assert default.queues == ("api_calls", "default")
    assert default.schedule_plan() == [
        (STALLED_TASK, settings.stalled_job_check_interval),
        (HEALTH_TASK, settings.health_check_interval),
        (SCHEDULED_FETCH_TASK, settings.scheduled_fetch_interval),
    ]
    assert Supervisor(settings, "s", schedules=False).schedule_plan() == []
    explicit = Supervisor(settings, "s", schedules=[(STALLED_TASK, 1.5)], queues=None)
    assert explicit.schedule_plan() == [(STALLED_TASK, 1.5)]
    assert explicit.queues is None


async def test_waker_for_all_queues_plans_any_queue() -> None:
    waker = RetryWaker(None, None, scan_interval=5.0, timeout=1.0)  # type: ignore[arg-type]
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    waker.note(7, "anything", soon)
    assert waker.planned() == {7: pytest.approx(2.0, abs=0.1)}


@pytest.mark.integration
async def test_waker_for_all_queues_finds_scheduled_retries_of_any_queue(pg_dsn: str) -> None:
    app = user_app()
    settings = settings_for(pg_dsn)
    await bulletproof.migrate(app, settings)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    with app.replace_connector(PsycopgConnector(conninfo=pg_dsn)):
        async with app.open_async():
            job_id = await app.tasks["user_work"].configure(schedule_at=later).defer_async(n=1)
    async with psycopg_pool.AsyncConnectionPool(pg_dsn, min_size=1, open=False) as pool:
        every = RetryWaker(pool, None, scan_interval=5.0, timeout=5.0)
        others = RetryWaker(pool, ["elsewhere"], scan_interval=5.0, timeout=5.0)
        await every._scan()
        await others._scan()
    assert every.planned() == {job_id: pytest.approx(30.0, abs=2.0)}
    assert others.planned() == {}
