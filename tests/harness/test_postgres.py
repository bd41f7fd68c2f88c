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


def test_a_crash_amid_new_connections_leaves_no_backend_to_block_the_restart(
    postgres: LocalPostgres, pg_dsn: str
) -> None:
    """The postmaster forks a backend for each connection: one forked between the listing of
    its children and its SIGKILL survived, and the restart refused ("Terminate any old server
    processes"). Clients connect all the while; each crash must be followed by a clean start."""
    stop = threading.Event()

    def connect_all_along() -> None:
        while not stop.is_set():
            with contextlib.suppress(psycopg.Error):
                psycopg.connect(pg_dsn, connect_timeout=1).close()

    clients = [threading.Thread(target=connect_all_along, daemon=True) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        for _ in range(5):
            wait_for(lambda: postgres.is_running(), timeout=5, what="the server")
            assert postgres.kill() is not None
            postgres.start(timeout=10)  # raises PostgresError if an old backend is left
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=5)


def test_a_start_refused_for_an_old_backend_is_tried_again_and_other_refusals_are_not(
    postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal is the spawned server's own exit; here it is played by a stand-in."""
    old = PostgresError(
        "postgres exited with code 1 (server log: HINT:  Terminate any old "
        "server processes associated with data directory)"
    )
    postgres.kill()
    refusals = [old, old]
    pending: list[PostgresError] = []
    real_spawn, real_ready = postgres._spawn, postgres.wait_ready

    def spawn() -> None:
        if refusals:
            pending.append(refusals.pop())  # this attempt's server exits at once
        else:
            real_spawn()

    def ready(*, timeout: float = 30.0) -> float:
        if pending:
            raise pending.pop()
        return real_ready(timeout=timeout)

    monkeypatch.setattr(postgres, "_spawn", spawn)
    monkeypatch.setattr(postgres, "wait_ready", ready)
    postgres.start(timeout=10)  # two refusals, then the real server
    assert postgres.is_running() and not refusals
    postgres.kill()
    refusals.append(PostgresError("postgres exited with code 1 (server log: FATAL: bad config)"))
    with pytest.raises(PostgresError, match="bad config"):
        postgres.start(timeout=10)
    monkeypatch.undo()
    postgres.start()
