"""The Procrastinate app and its four tasks, configured as the seed's matrix says.

| task                        | queue     | runs        | base   | max    | timeout | q. lock |
|-----------------------------|-----------|-------------|--------|--------|---------|---------|
| fetch_and_cache_joke        | api_calls | MAX_RETRIES | RETRY_ | RETRY_ | JOB_    | no      |
|                             |           | (5)         | BASE_  | MAX_   | TIMEOUT |         |
|                             |           |             | DELAY  | DELAY  | (300 s) |         |
|                             |           |             | (2 s)  | (300 s)|         |         |
| scheduled_fetch_random_joke | default   | 3           | 2 s    | 60 s   | n/a     | yes     |
| retry_stalled_jobs          | default   | 3           | 5 s    | 60 s   | n/a     | yes     |
| health_check_task           | default   | 2           | 10 s   | 30 s   | n/a     | yes     |
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
from procrastinate import App, JobContext, PsycopgConnector
from procrastinate.connector import BaseConnector

from system import db
from system.defects import Defect
from system.jokes import PermanentJokeError, TransientJokeError, fetch_joke
from system.retry import ExponentialBackoffStrategy, runs_allowed
from system.settings import Settings, load_settings
from system.waker import bind_connector

logger = logging.getLogger("system.tasks")

FETCH_TASK = "fetch_and_cache_joke"
SCHEDULED_FETCH_TASK = "scheduled_fetch_random_joke"
STALLED_TASK = "retry_stalled_jobs"
HEALTH_TASK = "health_check_task"
QUEUES = ("api_calls", "default")
#: Key of the worker session's shared ``httpx.AsyncClient`` in the job context.
HTTP_CLIENT_KEY = "http_client"
#: Key of the supervised worker's :class:`Settings` in the job context.
SETTINGS_KEY = "bulletproof_settings"

#: What makes `fetch_and_cache_joke` retry: an unwell API, the network, a timeout (the
#: seed's list forgets `TimeoutError`, which `asyncio.timeout` raises) and a database that
#: went away mid-run. Everything else (4xx, malformed payloads, bugs) fails at once.
FETCH_RETRY_EXCEPTIONS: tuple[type[BaseException], ...] = (
    TransientJokeError,
    httpx.TransportError,
    TimeoutError,
    *db.DB_ERRORS,
)

#: The retry list of the ``timeout-not-retried`` defect: network errors but no timeouts
#: (``httpx.TimeoutException`` is a ``TransportError``, so the real list retries it).
_DEFECTIVE_RETRY_EXCEPTIONS: tuple[type[BaseException], ...] = (
    TransientJokeError,
    httpx.NetworkError,
    httpx.ProtocolError,
    *db.DB_ERRORS,
)


def build_app(settings: Settings, connector: BaseConnector | None = None) -> App:
    """A Procrastinate app with the four tasks registered.

    ``connector`` defaults to an unopened ``PsycopgConnector`` for the configured database;
    the worker passes a fresh one per session (see ``system.worker``).
    """
    app = App(connector=connector or PsycopgConnector(conninfo=settings.procrastinate_database_url))
    bind_connector(app, app.connector)
    register_tasks(app, settings)
    return app


def register_tasks(app: App, settings: Settings) -> None:
    """Register the four tasks on ``app`` with retry strategies built from ``settings``."""
    defects = settings.defects
    timeouts_retried = Defect.TIMEOUT_NOT_RETRIED not in defects
    fetch_strategy = ExponentialBackoffStrategy(
        max_attempts=settings.max_retries,
        base_delay=settings.retry_base_delay,
        max_delay=settings.retry_max_delay,
        retry_exceptions=FETCH_RETRY_EXCEPTIONS
        if timeouts_retried
        else _DEFECTIVE_RETRY_EXCEPTIONS,
        requeue_cancelled=Defect.CANCELLED_NOT_REQUEUED not in defects,
        defects=defects,
    )

    @app.task(name=FETCH_TASK, queue="api_calls", retry=fetch_strategy, pass_context=True)
    async def fetch_and_cache_joke(context: JobContext, category: str | None = None) -> str:
        job = context.job
        run = job.attempts + 1
        logger.info("Job %s: Fetching joke (attempt %d/%d)", job.id, run, settings.max_retries)
        timeout = (
            contextlib.nullcontext()
            if Defect.NO_TIMEOUT in defects
            else asyncio.timeout(settings.job_timeout)
        )
        last = run >= fetch_strategy.runs
        try:
            async with timeout:
                return await _fetch_and_store(context, settings, category)
        except (TimeoutError, httpx.TimeoutException):
            logger.warning(
                "Job %s: API timeout on attempt %d%s",
                job.id,
                run,
                _then(last, retry=timeouts_retried),
            )
            raise
        except FETCH_RETRY_EXCEPTIONS as exc:
            logger.warning(
                "Job %s: attempt %d failed (%s: %s)%s",
                job.id,
                run,
                type(exc).__name__,
                exc,
                _then(last, retry=True),
            )
            raise
        except PermanentJokeError as exc:
            logger.error("Job %s: permanent failure on attempt %d: %s", job.id, run, exc)
            raise

    @app.task(
        name=SCHEDULED_FETCH_TASK,
        queue="default",
        queueing_lock=SCHEDULED_FETCH_TASK,
        retry=ExponentialBackoffStrategy(max_attempts=3, base_delay=2.0, max_delay=60.0),
        pass_context=True,
    )
    async def scheduled_fetch_random_joke(context: JobContext) -> str:
        job = context.job
        logger.info("Job %s: Fetching joke (attempt %d/3)", job.id, job.attempts + 1)
        return await _fetch_and_store(context, settings, None)

    register_stalled_recovery(app, settings)

    @app.task(
        name=HEALTH_TASK,
        queue="default",
        queueing_lock=HEALTH_TASK,
        retry=ExponentialBackoffStrategy(max_attempts=2, base_delay=10.0, max_delay=30.0),
        pass_context=True,
    )
    async def health_check_task(context: JobContext) -> dict[str, Any]:
        pool = db.pool_of(context.app)
        async with pool.connection() as conn:
            workers, age = await db.heartbeat_age(conn)
            figures = await db.stats(conn)
        age_text = "none" if age is None else f"{age:.1f}s ago"
        logger.info(
            "Health check passed: Database connection OK (workers=%d, freshest heartbeat %s, "
            "jobs=%s)",
            workers,
            age_text,
            figures["jobs"],
        )
        return {"workers": workers, "heartbeat_age": age, **figures}


def register_stalled_recovery(
    app: App, settings: Settings | None = None, *, queue: str = "default"
) -> None:
    """Register ``retry_stalled_jobs`` (:data:`STALLED_TASK`) on ``app``, on ``queue``.

    The task runs :func:`recover_stalled_jobs`. ``settings`` None: the supervised worker's
    (from the job context), else the environment's when the task runs (so the app's module
    imports without them). A worker must listen on ``queue`` for the recovery to run, and
    something must defer the task (the supervised worker's schedule does, every
    ``STALLED_JOB_CHECK_INTERVAL``). Its queueing lock keeps one queued copy at most; it
    carries no ``lock``: a stalled recovery must never block the next one.
    """

    @app.task(
        name=STALLED_TASK,
        queue=queue,
        queueing_lock=STALLED_TASK,
        retry=ExponentialBackoffStrategy(max_attempts=3, base_delay=5.0, max_delay=60.0),
        pass_context=True,
    )
    async def retry_stalled_jobs(context: JobContext) -> dict[str, int]:
        current = settings or context.additional_context.get(SETTINGS_KEY) or load_settings()
        return await recover_stalled_jobs(context.app, current, own_job_id=context.job.id)


@contextlib.asynccontextmanager
async def http_client(context: JobContext) -> AsyncIterator[httpx.AsyncClient]:
    """The worker session's shared client (connections reused), else one for this run.

    The worker puts its client in the job context under :data:`HTTP_CLIENT_KEY`; timeouts
    are per request (``system.jokes.HTTP_TIMEOUT``), so sharing changes no error handling.
    """
    shared = context.additional_context.get(HTTP_CLIENT_KEY)
    if isinstance(shared, httpx.AsyncClient) and not shared.is_closed:
        yield shared
        return
    async with httpx.AsyncClient() as client:
        yield client


_RECOVERY_TEXT = {
    "retried": "successfully retried",
    "succeeded": "its effect was stored before its worker went silent: marked succeeded",
    "failed": "it was its last allowed run: marked failed",
}


def _then(last: bool, *, retry: bool) -> str:
    return ", giving up" if last or not retry else ", will retry"


async def _fetch_and_store(context: JobContext, settings: Settings, category: str | None) -> str:
    """Fetch a joke and store it with the job's effect row, unless a run did already.

    A run whose worker died (or lost the database) after the store committed but before
    its status was written is run again: it must not fetch and store a second time.
    """
    job_id = context.job.id
    assert job_id is not None
    stored = await db.stored_effect(db.pool_of(context.app), job_id)
    if stored is not None:
        logger.info("Job %s: joke %s was stored by an earlier run: done", job_id, stored)
        return stored
    async with http_client(context) as client:
        row = await fetch_joke(client, settings.api_base_url, category)
    row["job_id"] = context.job.id
    plain_insert = Defect.PLAIN_INSERT in settings.defects
    if Defect.SUCCEED_WITHOUT_STORE in settings.defects:
        return await _store_swallowing_errors(context, row, plain_insert=plain_insert)
    await db.store_joke(db.pool_of(context.app), row, plain_insert=plain_insert)
    logger.info("Job %s: Successfully cached joke %s", context.job.id, row["joke_id"])
    return str(row["joke_id"])


async def _store_swallowing_errors(
    context: JobContext, row: dict[str, Any], *, plain_insert: bool
) -> str:
    """The ``succeed-without-store`` defect: a failed write is logged and the job succeeds.

    Jobs with an even id skip the write (as if it had failed), so the defect shows without
    a database fault.
    """
    job_id = context.job.id
    assert job_id is not None
    try:
        if job_id % 2 == 0:
            raise psycopg.OperationalError("DEFECT succeed-without-store: write skipped")
        await db.store_joke(db.pool_of(context.app), row, plain_insert=plain_insert)
    except db.DB_ERRORS as exc:
        logger.warning("Job %s: could not store joke %s (%s): ignored", job_id, row["joke_id"], exc)
    else:
        logger.info("Job %s: Successfully cached joke %s", job_id, row["joke_id"])
    return str(row["joke_id"])


async def recover_stalled_jobs(
    app: App, settings: Settings, own_job_id: int | None = None
) -> dict[str, int]:
    """Re-queue ``doing`` jobs whose worker has been silent for ``STALLED_JOB_THRESHOLD``.

    Uses Procrastinate's heartbeat-based ``get_stalled_jobs``; each job is re-checked and
    re-queued in its own transaction, so a job finishing in between is left alone and one
    failing job does not stop the others. Returns the counts it logs.
    """
    threshold = settings.stalled_job_threshold
    if Defect.STALL_THRESHOLD_IGNORED in settings.defects:
        threshold = 0.0  # every `doing` job looks stalled, live or not
    elif Defect.SLOW_STALL_RECOVERY in settings.defects:
        threshold *= 2
    stalled = [
        job
        for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=threshold)
        if job.id != own_job_id
    ]
    counts = {
        "found": len(stalled),
        "retried": 0,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
        "errors": 0,
    }
    if not stalled:
        logger.debug("No stalled jobs")
        return counts
    logger.warning("Found %d stalled jobs, retrying...", len(stalled))
    if Defect.NO_STALL_RECOVERY in settings.defects:
        logger.warning("DEFECT no-stall-recovery: leaving %d stalled jobs alone", len(stalled))
        counts["skipped"] = len(stalled)
        return counts
    pool = db.pool_of(app)
    for job in stalled:
        assert job.id is not None
        task = app.tasks.get(job.task_name)
        try:
            outcome = await db.recover_stalled_job(
                pool,
                job_id=job.id,
                attempts=job.attempts,
                worker_id=job.worker_id,
                threshold=threshold,
                runs_allowed=runs_allowed(task.retry_strategy) if task else None,
            )
        except psycopg.Error as exc:
            counts["errors"] += 1
            logger.warning("Could not retry stalled job %s: %s", job.id, exc)
            continue
        if outcome is None:
            counts["skipped"] += 1
            logger.info("Stalled job %s moved on before its retry: left alone", job.id)
            continue
        counts[outcome] += 1
        logger.info(
            "Stalled job %s (%s, attempt %d): %s",
            job.id,
            job.task_name,
            job.attempts + 1,
            _RECOVERY_TEXT[outcome],
        )
    logger.info(
        "Stalled job recovery: found %(found)d, retried %(retried)d, succeeded %(succeeded)d "
        "(effect stored), failed %(failed)d (last run), skipped %(skipped)d, errors %(errors)d",
        counts,
    )
    return counts
