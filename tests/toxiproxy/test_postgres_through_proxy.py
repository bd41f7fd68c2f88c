"""A real PostgreSQL connection (psycopg) through the embedded proxy, and the errors faults cause.

What an application sees in production: a reset gives an ``OperationalError`` at once, a
blackhole (``timeout`` toxic) gives one when the proxy gives up, a disabled proxy closes the
session and refuses new ones, and everything works again once the fault is gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from toxiproxy import Toxiproxy
from toxiproxy.proxy import Proxy

pytestmark = pytest.mark.integration


@pytest.fixture
def db_proxy(tp: Toxiproxy, pg_dsn: str) -> Proxy:
    params = conninfo_to_dict(pg_dsn)
    return tp.create(upstream=f"{params['host']}:{params['port']}", name="postgres")


@pytest.fixture
def proxied_dsn(db_proxy: Proxy, pg_dsn: str) -> str:
    params = conninfo_to_dict(pg_dsn)
    host, port = db_proxy.listen.rsplit(":", 1)
    params.update(host=host, port=port, connect_timeout=5)
    return make_conninfo(**params)  # type: ignore[arg-type]


@pytest.fixture
def conn(proxied_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(proxied_dsn, autocommit=True) as connection:
        yield connection


def test_queries_work_through_the_proxy(
    conn: psycopg.Connection[tuple[object, ...]], pg_dsn: str
) -> None:
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    conn.execute("INSERT INTO t SELECT i, repeat('x', 1000) FROM generate_series(1, 2000) AS i")
    rows = conn.execute("SELECT id, body FROM t ORDER BY id").fetchall()
    assert len(rows) == 2000 and rows[-1] == (2000, "x" * 1000)
    with psycopg.connect(pg_dsn) as direct:
        assert direct.execute("SELECT count(*) FROM t").fetchone() == (2000,)


def test_reset_peer_breaks_the_session(
    conn: psycopg.Connection[tuple[object, ...]], db_proxy: Proxy, proxied_dsn: str
) -> None:
    assert conn.execute("SELECT 1").fetchone() == (1,)
    db_proxy.add_toxic(type="reset_peer", attributes={"timeout": 0})
    start = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 2")
    assert time.monotonic() - start < 2.0
    assert conn.broken
    # A new session made while the toxic is there is reset by a real RST.
    with pytest.raises(psycopg.OperationalError, match=r"(?i)reset|closed"):
        psycopg.connect(proxied_dsn)
    db_proxy.destroy_toxic("reset_peer_downstream")
    with psycopg.connect(proxied_dsn) as again:
        assert again.execute("SELECT 3").fetchone() == (3,)


def test_timeout_blackholes_then_closes(
    conn: psycopg.Connection[tuple[object, ...]], db_proxy: Proxy
) -> None:
    db_proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 300})
    start = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match=r"(?i)closed"):
        conn.execute("SELECT 1")
    elapsed = time.monotonic() - start
    assert 0.29 <= elapsed < 3.0, f"error after {elapsed:.3f}s, timeout was 0.3s"
    assert conn.broken


def test_disable_closes_sessions_and_refuses_new(
    conn: psycopg.Connection[tuple[object, ...]], db_proxy: Proxy, proxied_dsn: str
) -> None:
    assert conn.execute("SELECT 1").fetchone() == (1,)
    with db_proxy.down():
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError, match=r"(?i)refused"):
            psycopg.connect(proxied_dsn)
    with psycopg.connect(proxied_dsn) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)


def test_latency_slows_each_round_trip(
    conn: psycopg.Connection[tuple[object, ...]], db_proxy: Proxy
) -> None:
    db_proxy.add_toxic(type="latency", attributes={"latency": 50})
    start = time.monotonic()
    for _ in range(3):
        conn.execute("SELECT 1").fetchone()
    elapsed = time.monotonic() - start
    assert 0.15 - 0.01 <= elapsed <= 0.15 + 0.2, f"3 round trips took {elapsed:.3f}s"
