"""LocalPostgres really starts, crashes and restarts a server, keeping committed rows."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from harness.postgres import LocalPostgres, PostgresError, cleanup_stale, find_bindir
from harness.wait import wait_for

pytestmark = pytest.mark.integration


def test_committed_rows_survive_sigkill_and_restart(postgres: LocalPostgres, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
    old_pid = postgres.kill()
    assert old_pid is not None
    assert not postgres.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_dsn, connect_timeout=2)
    elapsed = postgres.start()
    assert postgres.pid not in (None, old_pid)
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT x FROM t ORDER BY x").fetchall()
    assert rows == [(1,), (2,)]
    assert elapsed < 30


def test_fast_restart_refuses_then_accepts(postgres: LocalPostgres) -> None:
    postgres.stop("fast")
    with socket.socket() as sock:
        assert sock.connect_ex((postgres.host, postgres.port)) != 0
    postgres.start()
    assert postgres.server_version().split(".")[0].isdigit()


def test_missing_binaries_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("BULLETPROOF_PG_BINDIR", "/nonexistent")
    monkeypatch.setattr("harness.postgres.Path.glob", lambda self, pattern: iter(()))
    with pytest.raises(PostgresError, match="apt-get install postgresql"):
        find_bindir()


def test_cleanup_stale_removes_dead_runs() -> None:
    # A root the postgres user can traverse (pytest's tmp_path is private to root).
    root = Path(tempfile.mkdtemp(prefix="bp-test-"))
    root.chmod(0o755)
    server = LocalPostgres(tmp_root=root)
    server.start()
    assert server.base_dir is not None
    # Pretend the owner died: a pid that cannot exist.
    (server.base_dir / "owner.pid").write_text(str(2**22 + 12345))
    pid = server.pid
    removed = cleanup_stale(root)
    assert removed == [server.base_dir]
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.base_dir = None
    root.rmdir()


def test_a_stop_held_up_says_by_what_and_leaves_the_server_down(
    postgres: LocalPostgres, pg_dsn: str
) -> None:
    # A backend that cannot act on the postmaster's SIGTERM (SIGSTOPped) holds a fast shutdown
    # up for good: stop() must name it, then crash-stop the server rather than leave it
    # half-way through a shutdown (which failed every later test of a CI run).
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        backend = conn.info.backend_pid
        os.kill(backend, signal.SIGSTOP)
        try:
            with pytest.raises(PostgresError) as raised:
                postgres.stop("fast", timeout=1.0)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(backend, signal.SIGCONT)
    message = str(raised.value)
    assert "did not stop within 1.0s and was killed" in message
    assert f"{backend} T" in message  # the stopped backend, by pid and state
    assert "received fast shutdown request" in message  # the server log's last lines
    assert not postgres.is_running()
    with socket.socket() as sock:
        assert sock.connect_ex((postgres.host, postgres.port)) != 0
    postgres.start()


def test_a_client_silent_during_a_stop_holds_it_only_briefly(
    postgres: LocalPostgres, pg_dsn: str
) -> None:
    # A client that connects while the server shuts down and never sends its startup packet
    # (a reconnect caught mid-way) gets a dead-end backend the postmaster waits for. At
    # PostgreSQL's default authentication_timeout (60 s) that held a fast stop past its 30 s in
    # CI; the harness's server gives such a client 5 s.
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            postgres.stop("fast", timeout=20.0)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        backend = conn.info.backend_pid
        os.kill(backend, signal.SIGSTOP)  # holds the shutdown open while the silent client comes
        stopper = threading.Thread(target=stop)
        try:
            stopper.start()
            wait_for(
                lambda: "received fast shutdown request" in postgres.log_file.read_text(),
                timeout=10,
                what="the server to begin its fast shutdown",
            )
            silent = socket.create_connection((postgres.host, postgres.port), timeout=5)
        finally:
            os.kill(backend, signal.SIGCONT)
        started = time.monotonic()
        with silent:
            stopper.join(timeout=30)
            held = time.monotonic() - started
    assert not stopper.is_alive()
    assert errors == []
    assert not postgres.is_running()
    assert held < 15, f"a silent client held the stop for {held:.1f}s"
    postgres.start()
