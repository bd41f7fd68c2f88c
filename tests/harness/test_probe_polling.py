"""The polled reads keep one connection, and survive it breaking (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from harness import probe

BACKENDS = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"


@pytest.fixture
def dsn(pg_dsn: str) -> Iterator[str]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE procrastinate_jobs (id int, status text, attempts int)")
        conn.execute("INSERT INTO procrastinate_jobs VALUES (1, 'doing', 1)")
    yield pg_dsn
    probe.close()


def _pids(dsn: str) -> set[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return {int(r[0]) for r in rows}


def test_polls_reuse_one_connection(dsn: str) -> None:
    assert probe.job_states(dsn, [1]) == {1: ("doing", 1)}
    first = _pids(dsn)
    for _ in range(20):
        assert probe.job_statuses(dsn, [1, 2]) == {1: "doing"}
    assert _pids(dsn) == first and len(first) == 1


def test_a_connection_broken_between_polls_is_replaced_without_an_error(dsn: str) -> None:
    probe.job_states(dsn, [1])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert probe.job_states(dsn, [1]) == {1: ("doing", 1)}


def test_close_leaves_no_connection_behind(dsn: str) -> None:
    probe.job_states(dsn, [1])
    probe.close()
    assert _pids(dsn) == set()


def test_a_query_error_still_raises(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE procrastinate_jobs")
    with pytest.raises(psycopg.errors.UndefinedTable):
        probe.job_states(dsn, [1])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE procrastinate_jobs (id int, status text, attempts int)")
    assert probe.job_states(dsn, [1]) == {}  # the next poll works again
