"""Read the system's state straight from its database: the named queries scenarios poll.

Every query the harness runs against the SUT's database while a scenario runs lives here, by
name, so that a scenario reads as what it waits for, not as SQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

JOB_STATES = "SELECT id, status::text, attempts FROM procrastinate_jobs WHERE id = ANY(%s)"
TERMINATE_BACKENDS = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE application_name = %s AND pid <> pg_backend_pid()
"""
BACKENDS_OF = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
EVENTS_OF = """
SELECT job_id, type::text, EXTRACT(EPOCH FROM at)::float8 FROM procrastinate_events
 WHERE job_id = ANY(%s) ORDER BY id
"""

UNACKNOWLEDGED_OF_TASK = """
SELECT id, status::text FROM procrastinate_jobs
 WHERE right(task_name, length(%(task)s)) = %(task)s AND NOT (id = ANY(%(acked)s))
"""

#: Connect quickly and never hang on a dead server: the harness polls, it must not block.
CONNECT_TIMEOUT = 2


def _connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT, autocommit=True)


class _Polling:
    """The one connection the polled reads share, kept between polls.

    Scenarios poll job states every 20 ms; a connection per poll made PostgreSQL fork a
    backend 50 times a second, CPU taken from the processes being timed. A connection
    broken meanwhile (PostgreSQL killed, the database dropped) is replaced once, so a
    read fails only when a fresh connection fails too, as before. One connection for
    the process (psycopg connections are thread-safe; reads are serialised), switched
    when a scenario's database changes, closed by :func:`close`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dsn: str | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def fetchall(self, dsn: str, query: str, params: Any) -> Sequence[tuple[Any, ...]]:
        with self._lock:
            conn = self._conn
            if conn is not None and not conn.closed and self._dsn == dsn:
                try:
                    return conn.execute(query, params).fetchall()
                except psycopg.Error:
                    self._close()  # maybe broken meanwhile: once more on a fresh one
            self._close()
            self._conn, self._dsn = _connect(dsn), dsn
            try:
                return self._conn.execute(query, params).fetchall()
            except psycopg.Error:
                self._close()
                raise

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._dsn = None


_polling = _Polling()


def close() -> None:
    """Close the connection the polled reads keep (a scenario's end calls this)."""
    _polling.close()


def job_states(dsn: str, ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """``job id -> (status, attempts)`` for the given jobs (missing ones are left out)."""
    rows = _polling.fetchall(dsn, JOB_STATES, (list(ids),))
    return {int(i): (str(s), int(a)) for i, s, a in rows}


def job_statuses(dsn: str, ids: Iterable[int]) -> dict[int, str]:
    """``job id -> status`` for the given jobs."""
    return {j: s for j, (s, _) in job_states(dsn, ids).items()}


def unacknowledged_statuses(dsn: str, task: str, acknowledged: Iterable[int]) -> dict[int, str]:
    """``job id -> status`` for jobs of ``task`` (a suffix of the task name) that are not
    among ``acknowledged``: the ones submissions whose answer was lost may have created."""
    rows = _polling.fetchall(
        dsn, UNACKNOWLEDGED_OF_TASK, {"task": task, "acked": list(acknowledged)}
    )
    return {int(i): str(s) for i, s in rows}


def terminate_backends(dsn: str, application_name: str) -> int:
    """Terminate every PostgreSQL backend whose ``application_name`` matches; returns how
    many were terminated (PostgreSQL closes their connections: the client sees them break)."""
    with _connect(dsn) as conn:
        row = conn.execute(TERMINATE_BACKENDS, (application_name,)).fetchone()
    return int(row[0]) if row else 0


def backends_of(dsn: str, application_name: str) -> int:
    """How many connections ``application_name`` has open."""
    with _connect(dsn) as conn:
        row = conn.execute(BACKENDS_OF, (application_name,)).fetchone()
    return int(row[0]) if row else 0


def retry_lateness(dsn: str, ids: Iterable[int]) -> list[float]:
    """Seconds between each retry time of the given jobs (a ``scheduled`` event is written
    with the retry time the strategy asked for) and the start of the run that followed."""
    with _connect(dsn) as conn:
        rows = conn.execute(EVENTS_OF, (list(ids),)).fetchall()
    due: dict[int, float] = {}
    out: list[float] = []
    for job_id, type_, at in rows:
        job = int(job_id)
        if type_ == "scheduled":
            due[job] = float(at)
        elif type_ == "started" and job in due:
            out.append(max(0.0, float(at) - due.pop(job)))
    return out


# Fault injection inside PostgreSQL: reject every heartbeat write (UPDATE of
# procrastinate_workers) with an error while fetching, running and finishing jobs still work.
REJECT_HEARTBEATS = """
CREATE SEQUENCE IF NOT EXISTS bulletproof_harness_rejections;
CREATE OR REPLACE FUNCTION bulletproof_harness_reject_heartbeat() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('bulletproof_harness_rejections');  -- survives the rollback
    RAISE EXCEPTION 'heartbeat write rejected (bulletproof fault injection)';
END $$;
DROP TRIGGER IF EXISTS bulletproof_harness_reject_heartbeat ON procrastinate_workers;
CREATE TRIGGER bulletproof_harness_reject_heartbeat BEFORE UPDATE ON procrastinate_workers
    FOR EACH ROW EXECUTE FUNCTION bulletproof_harness_reject_heartbeat();
"""
ACCEPT_HEARTBEATS = (
    "DROP TRIGGER IF EXISTS bulletproof_harness_reject_heartbeat ON procrastinate_workers"
)
REJECTIONS = (
    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM bulletproof_harness_rejections"
)


def reject_heartbeats(dsn: str, *, on: bool) -> None:
    """Start (``on``) or stop rejecting heartbeat writes."""
    with _connect(dsn) as conn:
        conn.execute(REJECT_HEARTBEATS if on else ACCEPT_HEARTBEATS)


def heartbeat_rejections(dsn: str) -> int:
    """How many heartbeat writes were rejected so far (a sequence: counts survive the
    rollback of the rejected write)."""
    with _connect(dsn) as conn:
        row = conn.execute(REJECTIONS).fetchone()
    return int(row[0]) if row else 0
