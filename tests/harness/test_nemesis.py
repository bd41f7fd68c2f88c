"""The nemesis really does what it records, on a real stack, and always closes its windows."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
import pytest

from harness import probe
from harness.history import read_history
from harness.history.store import HistoryWriter
from harness.nemesis import Nemesis
from harness.stack import Stack
from harness.wait import wait_for

pytestmark = pytest.mark.integration


def _fetch(stack: Stack) -> int | None:
    """One request through the SUT's joke-API proxy, as the SUT makes it (None: failed)."""
    try:
        return httpx.get(f"{stack.env['API_BASE_URL']}/jokes/random", timeout=1.0).status_code
    except httpx.HTTPError:
        return None


@pytest.mark.stack(workers=1, api=False)
def test_windows_are_recorded_and_faults_are_real(stack: Stack, tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "h.jsonl")
    nemesis = Nemesis(stack, writer)
    assert _fetch(stack) == 200
    with nemesis.proxy_down("jokeapi"):
        assert _fetch(stack) is None  # refused
    assert _fetch(stack) == 200
    with nemesis.api_fault("status", status=503, count=1):
        assert _fetch(stack) == 503
    with nemesis.toxic("jokeapi", "reset_peer", {"timeout": 0}, kind="reset_peer"):
        assert _fetch(stack) is None
    assert _fetch(stack) == 200

    worker = stack.workers[0]
    pid_before = getattr(worker, "pid", None)
    length = nemesis.kill_worker("w1")
    assert worker.is_running() and length > 0
    if pid_before is not None:
        assert worker.pid != pid_before  # type: ignore[attr-defined]

    code = nemesis.sigterm_worker("w1", timeout=10.0)
    assert code == 0 and not worker.is_running()

    nemesis.pg_kill()
    with psycopg.connect(stack.db_dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    writer.close()

    faults = read_history(writer.path).faults
    kinds = [f.kind_ for f in faults]
    assert kinds == ["proxy_down", "http_status", "reset_peer", "kill", "sigterm", "pg_kill"]
    assert all(f.end is not None and f.end >= f.start for f in faults)
    assert [f.target for f in faults] == [
        "jokeapi",
        "jokeapi",
        "jokeapi",
        "worker:w1",
        "worker:w1",
        "postgres",
    ]
    assert faults[4].detail["exit_code"] == 0
    assert faults[3].detail["ready_after"] > 0


@pytest.mark.stack(workers=0, api=False)
def test_a_failing_block_still_heals_and_closes_the_window(stack: Stack, tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "h.jsonl")
    nemesis = Nemesis(stack, writer)
    with pytest.raises(RuntimeError, match="boom"), nemesis.proxy_down("jokeapi"):
        raise RuntimeError("boom")
    wait_for(lambda: _fetch(stack) == 200, timeout=5.0, what="the joke API proxy back up")
    (fault,) = read_history(writer.path).faults
    assert fault.end is not None


def _heartbeat_age(stack: Stack) -> float | None:
    with psycopg.connect(stack.db_dsn, connect_timeout=2, autocommit=True) as conn:
        row = conn.execute(
            "SELECT EXTRACT(EPOCH FROM now() - max(last_heartbeat)) FROM procrastinate_workers"
        ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


@pytest.mark.stack(workers=1, api=False)
def test_breaking_one_workers_connections_and_rejecting_heartbeats(
    stack: Stack, tmp_path: Path
) -> None:
    writer = HistoryWriter(tmp_path / "h.jsonl")
    nemesis = Nemesis(stack, writer)
    app_name = "bulletproof-worker-w1"
    wait_for(lambda: probe.backends_of(stack.db_dsn, app_name), timeout=10, what="w1 connected")
    assert nemesis.terminate_backends("w1") >= 1
    # the worker opens fresh sessions by itself (its watchdog or Procrastinate notices)
    wait_for(
        lambda: probe.backends_of(stack.db_dsn, app_name),
        timeout=10,
        what="w1 connected again",
    )
    hb = stack.profile.worker_heartbeat_interval
    with nemesis.heartbeats_rejected() as window:
        wait_for(
            lambda: probe.heartbeat_rejections(stack.db_dsn) >= 2,
            timeout=10 * hb + 2,
            what="two rejected heartbeat writes",
        )
    assert window.detail["rejected"] >= 2
    # accepted again: a fresh heartbeat comes within a few intervals
    wait_for(
        lambda: (age := _heartbeat_age(stack)) is not None and age < 2 * hb,
        timeout=10,
        what="a fresh heartbeat after the fault",
    )
    armed = nemesis.arm_api_fault("status", status=503, count=1)
    assert armed.end is not None and armed.detail["armed"] is True
    assert _fetch(stack) == 503 and _fetch(stack) == 200
    kinds = [(f.kind_, f.target) for f in read_history(writer.path).faults]
    assert kinds == [
        ("terminate_backend", "worker:w1"),
        ("heartbeat_rejected", "heartbeat"),
        ("http_status", "jokeapi"),
    ]
    assert nemesis.stopped_for_good == set()
    nemesis.kill_worker("w1", restart=False)
    assert nemesis.stopped_for_good == {"w1"}
