"""Managed processes: real children, real signals, real sockets."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from harness.backends.base import ServiceError
from harness.ports import free_port
from harness.processes import ManagedProcess, ProcessSet, http_ok, log_line
from harness.wait import wait_for

PY = sys.executable


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def script(body: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(body)]


CHILD_WITH_GRANDCHILD = script(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(f"grandchild={child.pid}", flush=True)
    print("ready", flush=True)
    time.sleep(60)
    """
)

GRACEFUL = script(
    """
    import signal, sys, time
    def bye(signum, frame):
        print("got SIGTERM, exiting", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    print("ready", flush=True)
    time.sleep(60)
    """
)

STUBBORN = script(
    """
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_start_waits_for_log_line_and_kill_takes_the_whole_group(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "p", CHILD_WITH_GRANDCHILD, log_path=tmp_path / "p.log", ready=log_line("^ready$|ready")
    )
    try:
        elapsed = proc.start(timeout=20)
        assert elapsed < 20
        assert proc.is_running()
        pid = proc.pid
        assert pid is not None and _alive(pid)
        grandchild = int(proc.output().split("grandchild=")[1].split()[0])
        assert _alive(grandchild)
        assert os.getpgid(grandchild) == pid  # same group: the child leads its own group

        proc.kill()

        assert not proc.is_running()
        assert proc.exit_code == -signal.SIGKILL
        assert not _alive(pid)
        wait_for(lambda: not _alive(grandchild), timeout=5, what="grandchild to die")
    finally:
        proc.close()


def test_terminate_is_graceful_and_exit_code_is_kept(tmp_path: Path) -> None:
    proc = ManagedProcess("g", GRACEFUL, log_path=tmp_path / "g.log", ready=log_line("ready"))
    try:
        proc.start(timeout=20)
        proc.terminate()
        assert proc.wait_exit(timeout=10) == 0
        assert "got SIGTERM" in proc.output()
        assert proc.exit_code == 0
    finally:
        proc.close()


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    proc = ManagedProcess("s", STUBBORN, log_path=tmp_path / "s.log", ready=log_line("ready"))
    try:
        proc.start(timeout=20)
        pid = proc.pid
        assert pid is not None
        assert proc.stop(timeout=0.5) is None  # had to be killed
        assert proc.exit_code == -signal.SIGKILL
        assert not _alive(pid)
    finally:
        proc.close()


def test_restart_gives_a_new_process_and_appends_to_the_same_log(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    proc = ManagedProcess("r", GRACEFUL, log_path=log, ready=log_line("ready"))
    try:
        proc.start(timeout=20)
        first = proc.pid
        proc.restart(timeout=20)
        second = proc.pid
        assert first != second
        assert first is not None and not _alive(first)
        assert proc.is_running() and proc.starts == 2
        text = log.read_text()
        assert text.count("--- harness: start") == 2
        assert "got SIGTERM" in text  # the first run stopped gracefully
        assert "got SIGTERM" not in proc.output()  # output() is only the current run
        proc.restart(kill=True, timeout=20)
        assert proc.starts == 3 and proc.pid not in (first, second)
    finally:
        proc.close()


def test_exit_before_ready_raises_one_line_with_the_log_tail(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "bad",
        script("import sys; print('boom: no config', flush=True); sys.exit(3)"),
        log_path=tmp_path / "bad.log",
        ready=log_line("never printed"),
    )
    with pytest.raises(ServiceError, match=r"exited with code 3 .*boom: no config"):
        proc.start(timeout=20)
    assert proc.exit_code == 3


def test_not_ready_in_time_raises_and_leaves_nothing_running(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "slow", STUBBORN, log_path=tmp_path / "slow.log", ready=log_line("never printed")
    )
    with pytest.raises(ServiceError, match="not ready after"):
        proc.start(timeout=1.0)
    assert not proc.is_running()
    assert proc.pid is not None and not _alive(proc.pid)


def test_http_probe_readiness_and_refused_socket_after_kill(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = ManagedProcess(
        "http",
        [PY, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        log_path=tmp_path / "http.log",
        cwd=tmp_path,
        ready=http_ok(url),
    )
    try:
        proc.start(timeout=20)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        proc.kill()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
    finally:
        proc.close()


def test_several_processes_at_once_are_closed_together(tmp_path: Path) -> None:
    procs = ProcessSet()
    for i in range(3):
        log = tmp_path / f"w{i}.log"
        procs.add(ManagedProcess(f"w{i}", GRACEFUL, log_path=log, ready=log_line("ready")))
    try:
        for proc in procs:
            proc.start(timeout=20)
        pids = [p.pid for p in procs]
        assert len(set(pids)) == 3 and all(pid is not None and _alive(pid) for pid in pids)
        procs["w1"].kill()
        assert not procs["w1"].is_running()
        assert procs["w0"].is_running() and procs["w2"].is_running()
    finally:
        procs.close()
    assert all(pid is not None and not _alive(pid) for pid in pids)
    with pytest.raises(ValueError, match="already exists"):
        procs.add(ManagedProcess("w0", GRACEFUL, log_path=tmp_path / "x.log"))
