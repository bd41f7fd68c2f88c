"""Database access: connections, schema migration, the jokes table and read models.

Every connection carries libpq timeouts and TCP keepalives so that a dead or blackholed
server turns into an error within seconds instead of a hang (libpq's defaults wait forever).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import select
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import psycopg
import psycopg_pool
from procrastinate import App, PsycopgConnector
from procrastinate import sql as procrastinate_sql
from psycopg.rows import dict_row

from system.defects import Defect
from system.settings import Settings

logger = logging.getLogger("system.db")

#: Errors that mean "the database is unreachable or broke the connection".
DB_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    psycopg_pool.PoolClosed,
)

JOKES_TABLE = "chuck_norris_jokes"
RECOVERIES_TABLE = "bulletproof_stalled_recoveries"
#: One row per job that stored its joke, written in the transaction of the joke's upsert.
JOB_EFFECTS_TABLE = "bulletproof_job_effects"

_JOKES_COLUMNS = """
    joke_id        text NOT NULL{pk},
    value          text NOT NULL,
    categories     text[] NOT NULL DEFAULT '{{}}',
    url            text NOT NULL,
    icon_url       text NOT NULL,
    api_created_at text NOT NULL,
    api_updated_at text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    fetch_count    integer NOT NULL DEFAULT 1,
    last_job_id    bigint
"""

_RECOVERIES_DDL = f"""
CREATE TABLE IF NOT EXISTS {RECOVERIES_TABLE} (
    id           bigserial PRIMARY KEY,
    job_id       bigint NOT NULL,
    worker_id    bigint,
    attempts     integer NOT NULL,
    recovered_at timestamptz NOT NULL DEFAULT now()
)
"""

_JOB_EFFECTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {JOB_EFFECTS_TABLE} (
    job_id    bigint PRIMARY KEY,
    joke_id   text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

# Serialises concurrent `migrate` runs (any constant works; this one spells "bulletpr").
_MIGRATE_LOCK = 0x62756C6C65747072


def connect_kwargs(settings: Settings, application_name: str = "bulletproof") -> dict[str, Any]:
    """libpq parameters for every connection: bounded connect, keepalives, TCP timeout."""
    seconds = settings.connect_timeout_arg
    return {
        "connect_timeout": seconds,
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        # unacknowledged data for this long (ms) breaks the connection: covers blackholes
        "tcp_user_timeout": seconds * 1000,
        "application_name": application_name,
    }


def worker_application_name(name: str) -> str:
    """``application_name`` of every connection of worker ``name`` (pool, LISTEN, probe).

    The harness finds (and terminates) exactly one worker's backends by it.
    """
    return f"bulletproof-worker-{name}"


#: ``application_name`` of the API's own connections (not its in-process worker's).
API_APPLICATION_NAME = "bulletproof-api"


async def probe(settings: Settings, application_name: str) -> None:
    """Connect once and run ``SELECT 1``; raises a psycopg error if the server is not there."""
    async with await psycopg.AsyncConnection.connect(
        settings.procrastinate_database_url,
        autocommit=True,
        **connect_kwargs(settings, application_name),
    ) as conn:
        await conn.execute("SELECT 1")


async def check_pooled_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """The worker pool's check at checkout: a round trip only when the connection may be dead.

    psycopg_pool's own ``check_connection`` costs a round trip on every checkout (about six
    per job: fetch, finish, store, ...). An idle connection in the pool has nothing to read
    unless the server or a proxy closed it or sent an error (a killed backend, a restart, a
    reset), so the full check runs only when its socket is readable; a connection that is
    closed or broken is refused at once. A silently blackholed connection passes, as it did
    before in effect: its first query fails within ``tcp_user_timeout`` (a database error:
    the job is retried, or the session ends and the supervisor starts afresh).
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the pooled connection is closed")
    if _readable(conn.pgconn.socket):
        await psycopg_pool.AsyncConnectionPool.check_connection(conn)


def _readable(fd: int) -> bool:
    # poll() (not select(), which is limited to descriptors below 1024), without waiting
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


async def open_worker_pool(
    settings: Settings,
    name: str,
    application_name: str,
    *,
    on_connect_failed: Callable[[], None] | None = None,
) -> psycopg_pool.AsyncConnectionPool:
    """A connection pool for one worker session (closed when the session ends).

    Procrastinate opens its LISTEN connection with the pool's parameters, so it carries the
    same ``application_name``.

    The pool never waits out a backoff of its own: after two failed connects in a row it gives
    up (``reconnect_timeout=0``) and calls ``on_connect_failed``. psycopg_pool's backoff (1, 2,
    4 s ...) would otherwise keep a session waiting seconds after the database is back (seen:
    a heartbeat without a connection for 4 s after a PostgreSQL crash); the worker's supervisor
    owns the backoff instead. Connections asked for later are attempted afresh.
    """

    def connect_failed(_pool: psycopg_pool.AsyncConnectionPool) -> None:
        if on_connect_failed is not None:
            on_connect_failed()

    pool = psycopg_pool.AsyncConnectionPool(
        settings.procrastinate_database_url,
        min_size=min(2, settings.db_pool_size),
        max_size=settings.db_pool_size,
        timeout=settings.db_pool_timeout,
        kwargs=connect_kwargs(settings, application_name),
        check=check_pooled_connection,
        reconnect_timeout=0.0,
        reconnect_failed=connect_failed,
        open=False,
        name=name,
    )
    try:
        await pool.open(wait=True, timeout=settings.db_pool_timeout)
    except BaseException:
        await close_pool(pool, 1.0)
        raise
    return pool


def api_connector(settings: Settings) -> PsycopgConnector:
    """The API's connector: one fresh connection per request (a null pool).

    Why no real pool: after an outage a pool reconnects with its own backoff, and the API
    must answer again (and /health turn 200) as soon as the database does.
    """
    return PsycopgConnector(
        conninfo=settings.procrastinate_database_url,
        pool_factory=psycopg_pool.AsyncNullConnectionPool,
        max_size=settings.db_pool_size,
        timeout=min(settings.db_pool_timeout, 5.0),
        kwargs=connect_kwargs(settings, API_APPLICATION_NAME),
    )


async def close_pool(pool: psycopg_pool.AsyncConnectionPool, timeout: float) -> None:
    """Close ``pool`` within ``timeout`` seconds, whatever state the server is in.

    Gives up waiting (without awaiting a cancellation, which psycopg may stretch by seconds
    on a blackholed connection) and leaves the rest to the garbage collector. The pool's own
    wait for its background workers gets half of ``timeout``; closing its connections the rest.
    """
    closing = asyncio.create_task(pool.close(timeout=timeout / 2), name="close pool")
    closing.add_done_callback(retrieve_outcome)
    if timeout > 0:
        await asyncio.wait({closing}, timeout=timeout)
    if not closing.done():
        logger.warning("closing the connection pool took over %.2fs: abandoned", timeout)
    elif not closing.cancelled() and closing.exception() is not None:
        logger.warning("closing the connection pool failed: %s", closing.exception())


def retrieve_outcome(task: asyncio.Task[Any]) -> None:
    """Mark a background task's outcome as seen (no 'exception never retrieved' noise)."""
    if not task.cancelled():
        task.exception()


def pool_of(app: App) -> psycopg_pool.AsyncConnectionPool:
    """The psycopg pool behind an opened app."""
    connector = app.connector
    if not isinstance(connector, PsycopgConnector):
        raise TypeError("the app must use a PsycopgConnector")
    return connector.pool


def jokes_ddl(plain_insert: bool) -> str:
    """The jokes table; the ``plain-insert`` defect drops its primary key."""
    pk = "" if plain_insert else " PRIMARY KEY"
    return f"CREATE TABLE IF NOT EXISTS {JOKES_TABLE} ({_JOKES_COLUMNS.format(pk=pk)})"


async def migrate(settings: Settings, app: App) -> list[str]:
    """Apply Procrastinate's schema (if missing), the jokes, recoveries and job effects tables.

    Safe to run again and concurrently (see :func:`migrate_recovery`). Returns what was done.
    """
    return await migrate_recovery(
        settings,
        app,
        [jokes_ddl(Defect.PLAIN_INSERT in settings.defects), _JOB_EFFECTS_DDL],
        tables=[JOKES_TABLE, JOB_EFFECTS_TABLE],
    )


async def migrate_recovery(
    settings: Settings,
    app: App,
    extra_ddl: Sequence[str] = (),
    *,
    tables: Sequence[str] = (),
) -> list[str]:
    """Apply Procrastinate's schema (if missing), the recoveries table that stalled-job
    recovery writes to, then ``extra_ddl`` (which creates ``tables``, named in the log).

    Safe to run again and concurrently (an advisory lock serialises runs); Procrastinate's
    own ``apply_schema`` is not idempotent, so it runs only when its tables are absent.
    ``extra_ddl`` statements must be idempotent too (``CREATE TABLE IF NOT EXISTS``).
    Returns what was done, for the log.
    """
    done: list[str] = []
    deadline = time.monotonic() + settings.db_pool_timeout
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(
                settings.procrastinate_database_url,
                autocommit=True,
                **connect_kwargs(settings, "bulletproof-migrate"),
            )
            break
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
        try:
            cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
            row = await cur.fetchone()
            if not (row and row[0]):
                schema = app.schema_manager.get_schema()
                async with conn.transaction():
                    await conn.execute(schema)
                done.append("applied Procrastinate's schema")
            else:
                done.append("Procrastinate's schema already present")
            await conn.execute(_RECOVERIES_DDL)
            for statement in extra_ddl:
                await conn.execute(statement)
            done.append(f"tables {_and([RECOVERIES_TABLE, *tables])} ready")
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))
    return done


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


_UPSERT = f"""
INSERT INTO {JOKES_TABLE} AS j
    (joke_id, value, categories, url, icon_url, api_created_at, api_updated_at, last_job_id)
VALUES (%(joke_id)s, %(value)s, %(categories)s, %(url)s, %(icon_url)s,
        %(api_created_at)s, %(api_updated_at)s, %(job_id)s)
ON CONFLICT (joke_id) DO UPDATE SET
    value = EXCLUDED.value,
    categories = EXCLUDED.categories,
    url = EXCLUDED.url,
    icon_url = EXCLUDED.icon_url,
    api_created_at = EXCLUDED.api_created_at,
    api_updated_at = EXCLUDED.api_updated_at,
    updated_at = now(),
    fetch_count = j.fetch_count + 1,
    last_job_id = EXCLUDED.last_job_id
"""

_PLAIN_INSERT = f"""
INSERT INTO {JOKES_TABLE}
    (joke_id, value, categories, url, icon_url, api_created_at, api_updated_at, last_job_id)
VALUES (%(joke_id)s, %(value)s, %(categories)s, %(url)s, %(icon_url)s,
        %(api_created_at)s, %(api_updated_at)s, %(job_id)s)
"""


_JOB_EFFECT = f"""
INSERT INTO {JOB_EFFECTS_TABLE} (job_id, joke_id) VALUES (%(job_id)s, %(joke_id)s)
ON CONFLICT (job_id) DO UPDATE SET joke_id = EXCLUDED.joke_id, stored_at = EXCLUDED.stored_at
"""


async def store_joke(
    pool: psycopg_pool.AsyncConnectionPool,
    row: Mapping[str, Any],
    *,
    plain_insert: bool = False,
) -> None:
    """Upsert one joke (``INSERT ... ON CONFLICT DO UPDATE``), or plain INSERT (defect).

    ``row["job_id"]`` is recorded in the job effects table in the same transaction: a job
    has its effect row exactly when its joke was written.
    """
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(_PLAIN_INSERT if plain_insert else _UPSERT, dict(row))
        await conn.execute(_JOB_EFFECT, {"job_id": row["job_id"], "joke_id": row["joke_id"]})


_WAKE_SQL = """
SELECT pg_notify(channel, json_build_object('type', 'job_inserted', 'job_id', id)::text)
  FROM procrastinate_jobs,
       unnest(ARRAY['procrastinate_queue_v1#' || queue_name, 'procrastinate_any_queue_v1'])
           AS channel
 WHERE id = %(job_id)s AND status = 'todo'
"""


async def stored_effect(pool: psycopg_pool.AsyncConnectionPool, job_id: int) -> str | None:
    """The joke an earlier run of job ``job_id`` stored (its job effect row), or None."""
    async with pool.connection() as conn:
        cur = await conn.execute(_STORED_EFFECT, {"job_id": job_id})
        row = await cur.fetchone()
    return None if row is None else str(row[0])


_HAS_EFFECTS = "SELECT to_regclass(%(table)s) IS NOT NULL"
_STORED_EFFECT = f"SELECT joke_id FROM {JOB_EFFECTS_TABLE} WHERE job_id = %(job_id)s"

#: What :func:`recover_stalled_job` did with a stalled run.
Recovery = Literal["retried", "succeeded", "failed"]


async def recover_stalled_job(
    pool: psycopg_pool.AsyncConnectionPool,
    *,
    job_id: int,
    attempts: int,
    worker_id: int | None,
    threshold: float,
    runs_allowed: int | None = None,
) -> Recovery | None:
    """Settle one stalled run if it is still the same stalled run; None if it moved on.

    Procrastinate's ``retry_job`` also accepts a ``failed`` job, so a job that failed for
    good between listing and retrying would be resurrected. Here the job row is locked and
    re-checked (still ``doing``, same attempt, same worker, worker still silent) in the
    transaction that settles it:

    - ``succeeded`` when the run had stored its effect (its worker died between that commit
      and the status write): running it again would do the work twice;
    - ``failed`` when the stalled run was its last allowed one (``runs_allowed`` runs; the
      interrupted run counts, as it ran): a retry would exceed ``max_attempts``;
    - else ``retried`` with Procrastinate's own ``retry_job`` query, at once.
    """
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """
            SELECT j.id
              FROM procrastinate_jobs j
              LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
             WHERE j.id = %(job_id)s AND j.status = 'doing' AND j.attempts = %(attempts)s
               AND j.worker_id IS NOT DISTINCT FROM %(worker_id)s
               AND (j.worker_id IS NULL OR w.id IS NULL
                    OR w.last_heartbeat < now() - make_interval(secs => %(threshold)s))
               FOR UPDATE OF j
            """,
            {
                "job_id": job_id,
                "attempts": attempts,
                "worker_id": worker_id,
                "threshold": threshold,
            },
        )
        if await cur.fetchone() is None:
            return None
        outcome: Recovery = "retried"
        # a user's app adopting this recovery has no job effects table of ours
        cur = await conn.execute(_HAS_EFFECTS, {"table": JOB_EFFECTS_TABLE})
        row = await cur.fetchone()
        effect = None
        if row is not None and row[0]:
            effect = await (await conn.execute(_STORED_EFFECT, {"job_id": job_id})).fetchone()
        if effect is not None:
            outcome = "succeeded"
        elif runs_allowed is not None and attempts + 1 >= runs_allowed:
            outcome = "failed"
        else:
            try:
                async with conn.transaction():  # a savepoint
                    await conn.execute(
                        procrastinate_sql.queries["retry_job"],
                        {
                            "job_id": job_id,
                            "retry_at": datetime.datetime.now(datetime.UTC),
                            "new_priority": None,
                            "new_queue_name": None,
                            "new_lock": None,
                        },
                    )
            except psycopg.errors.UniqueViolation:
                # Its queueing lock is taken by a queued twin (periodic tasks): that twin does
                # the same work, so this run ends `failed` instead of blocking recovery forever.
                logger.warning(
                    "Stalled job %s has a queued twin with the same queueing lock: marked failed",
                    job_id,
                )
                outcome = "failed"
        if outcome != "retried":
            await conn.execute(
                procrastinate_sql.queries["finish_job"],
                {"job_id": job_id, "status": outcome, "delete_job": False},
            )
        await conn.execute(
            f"INSERT INTO {RECOVERIES_TABLE} (job_id, worker_id, attempts) VALUES (%s, %s, %s)",
            (job_id, worker_id, attempts),
        )
        if outcome == "retried":
            # A retry is an UPDATE, which notifies nobody: wake the workers as Procrastinate's
            # insert trigger would (delivered at commit), not at their next poll.
            await conn.execute(_WAKE_SQL, {"job_id": job_id})
        return outcome


async def reserve_job_id(conn: psycopg.AsyncConnection[Any]) -> int:
    """A fresh id from the jobs' sequence (the ``ack-without-queue`` defect's fake job id)."""
    cur = await conn.execute("SELECT nextval(pg_get_serial_sequence('procrastinate_jobs', 'id'))")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def job_detail(conn: psycopg.AsyncConnection[Any], job_id: int) -> dict[str, Any] | None:
    """One job and its events (from ``procrastinate_events``), or None."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, task_name AS task, queue_name AS queue, status::text AS status, "
            "attempts, args, scheduled_at FROM procrastinate_jobs WHERE id = %s",
            (job_id,),
        )
        job = await cur.fetchone()
        if job is None:
            return None
        await cur.execute(
            "SELECT type::text AS type, at FROM procrastinate_events "
            "WHERE job_id = %s ORDER BY at, id",
            (job_id,),
        )
        job["events"] = await cur.fetchall()
    return job


async def stats(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    """Jobs by status, jokes stored, retries and stalled recoveries."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status ORDER BY 1"
        )
        by_status = {status: count for status, count in await cur.fetchall()}
        await cur.execute(f"SELECT count(*) FROM {JOKES_TABLE}")
        jokes = (await cur.fetchone() or (0,))[0]
        await cur.execute(
            "SELECT count(*) FROM procrastinate_events WHERE type = 'deferred_for_retry'"
        )
        retries = (await cur.fetchone() or (0,))[0]
        await cur.execute(f"SELECT count(*) FROM {RECOVERIES_TABLE}")
        recoveries = (await cur.fetchone() or (0,))[0]
    return {
        "jobs": by_status,
        "jokes_stored": jokes,
        "retries": retries,
        "stalled_recoveries": recoveries,
    }


async def heartbeat_age(conn: psycopg.AsyncConnection[Any]) -> tuple[int, float | None]:
    """(number of registered workers, seconds since the freshest heartbeat or None)."""
    cur = await conn.execute(
        "SELECT count(*), EXTRACT(EPOCH FROM now() - max(last_heartbeat))::float8 "
        "FROM procrastinate_workers"
    )
    row = await cur.fetchone()
    if row is None:
        return 0, None
    count, age = row
    return int(count), (None if age is None or math.isnan(age) else float(age))
