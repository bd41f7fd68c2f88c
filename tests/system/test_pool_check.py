"""The worker pool's checkout check: no round trip for a healthy idle connection, and a
connection the server has closed (terminated backend) is refused before it is handed out.
Real PostgreSQL."""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg_pool
import pytest

from harness.wait import wait_for
from system import db
from system.settings import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def full_checks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Records every call of psycopg_pool's round-trip check (still performed)."""
    calls: list[object] = []
    real = psycopg_pool.AsyncConnectionPool.check_connection

    async def counted(conn: psycopg.AsyncConnection[Any]) -> None:
        calls.append(conn)
        await real(conn)

    monkeypatch.setattr(psycopg_pool.AsyncConnectionPool, "check_connection", counted)
    return calls


async def test_healthy_idle_connection_passes_without_a_round_trip(
    pg_dsn: str, full_checks: list[object]
) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        await conn.execute("SELECT 1")
        await conn.rollback()
        await db.check_pooled_connection(conn)
    assert full_checks == []


async def test_terminated_backend_is_refused(pg_dsn: str, full_checks: list[object]) -> None:
    conn = await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True)
    try:
        pid = conn.info.backend_pid
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # the server's goodbye (an error message, then EOF) reaches the idle socket
        wait_for(lambda: db._readable(conn.pgconn.socket), timeout=10, what="the socket's EOF")
        with pytest.raises(psycopg.OperationalError):
            await db.check_pooled_connection(conn)
        assert full_checks == [conn]
    finally:
        await conn.close()


async def test_closed_connection_is_refused(pg_dsn: str) -> None:
    conn = await psycopg.AsyncConnection.connect(pg_dsn)
    await conn.close()
    with pytest.raises(psycopg.OperationalError, match="closed"):
        await db.check_pooled_connection(conn)


async def test_worker_pool_hands_out_a_live_connection_after_its_backends_die(
    pg_dsn: str,
) -> None:
    """Every idle connection of the worker's pool killed: the next checkout still works."""
    settings = load_settings({"PROCRASTINATE_DATABASE_URL": pg_dsn, "DB_POOL_SIZE": "3"})
    pool = await db.open_worker_pool(settings, "checktest", "bulletproof-checktest")
    try:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            pids = [
                row[0]
                for row in admin.execute(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE application_name = 'bulletproof-checktest'"
                ).fetchall()
            ]
            assert pids
            admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (pids,))

            def gone() -> bool:
                row = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
                ).fetchone()
                return row is not None and row[0] == 0

            wait_for(gone, timeout=10, what="the terminated backends to exit")
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT 42")
            assert await cur.fetchone() == (42,)
    finally:
        await db.close_pool(pool, timeout=2.0)
