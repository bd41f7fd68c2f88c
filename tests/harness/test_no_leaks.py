"""Nothing leaks: a pytest run that is interrupted, fails or is SIGKILLed leaves no process,
port or temp dir behind (the last one once the next run starts and reaps it)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import cleanup
from harness.backends.local import REPO_ROOT
from harness.wait import wait_for

pytestmark = pytest.mark.integration

INNER_TEST = textwrap.dedent(
    """
    import json, os
    import pytest
    from harness import cleanup
    from harness.wait import wait_for

    @pytest.mark.stack(workers=2)
    def test_hold(stack):
        services = stack.services
        pg = stack.postgres.server
        info = {
            "pids": [s.pid for s in services.values()] + [stack.toxiproxy.handle.pid],
            "ports": [s.endpoint.outside.port for s in services.values() if s.endpoint]
                     + [e.outside.port for e in stack.proxy_endpoints.values()]
                     + [stack.toxiproxy.handle.port],
            "dirs": [str(cleanup.current_run().dir), str(pg.base_dir)],
            "run_id": cleanup.current_run().id,
        }
        path = os.environ["INNER_INFO"]
        with open(path + ".tmp", "w") as fh:
            json.dump(info, fh)
        os.rename(path + ".tmp", path)
        if os.environ["INNER_MODE"] == "failure":
            assert False, "this test fails on purpose"
        wait_for(lambda: False, timeout=600, what="the outer test to stop this run")
    """
)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def inner_run(tmp_path: Path) -> Iterator[Any]:
    """Start an inner pytest holding a full stack; yield (process, info-reader)."""
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    info_path = tmp_path / "info.json"
    procs: list[subprocess.Popen[bytes]] = []

    def start(mode: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        env = {
            **os.environ,
            "INNER_INFO": str(info_path),
            "INNER_MODE": mode,
            "PYTHONPATH": str(REPO_ROOT),
        }
        env.pop("PYTEST_ADDOPTS", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
             "-p", "harness.pytest_plugin", "-p", "harness.fixtures",
             "--reports-dir", str(tmp_path / "reports"), str(tmp_path / "test_inner.py")],
            cwd=tmp_path,
            env=env,
            stdout=(tmp_path / "inner.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # As from a terminal: a shell without job control starts background commands
            # with SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt.
            preexec_fn=_default_sigint,
        )  # fmt: skip
        procs.append(proc)

        def info() -> dict[str, Any] | None:
            if proc.poll() is not None and not info_path.exists():
                log = (tmp_path / "inner.log").read_text()
                raise AssertionError(f"inner pytest exited early:\n{log}")
            return json.loads(info_path.read_text()) if info_path.exists() else None

        waited = wait_for(info, timeout=120, what="the inner stack to be up")
        return proc, waited.value

    def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
        """The inner run's exit code; on a hang, its threads' stacks (faulthandler) and log."""
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # pytest's faulthandler dumps every thread
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            log = (tmp_path / "inner.log").read_text(errors="replace")[-20000:]
            raise AssertionError(f"inner pytest still running after {timeout}s:\n{log}") from None

    start.wait_exit = wait_exit  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _assert_nothing_left(info: dict[str, Any]) -> None:
    wait_for(
        lambda: not any(_alive(pid) for pid in info["pids"] if pid),
        timeout=20,
        what="every service process to be gone",
    )
    assert not cleanup.marked_pids(info["run_id"])
    assert not [port for port in info["ports"] if _listening(port)]
    assert not [d for d in info["dirs"] if Path(d).exists()]


@pytest.mark.parametrize("mode", ["sigint", "sigterm", "failure"])
def test_interrupted_or_failed_run_leaves_nothing(inner_run: Any, mode: str) -> None:
    proc, info = inner_run(mode)
    assert all(_alive(pid) for pid in info["pids"])  # the stack really was up
    if mode == "sigint":
        proc.send_signal(signal.SIGINT)  # Ctrl-C
    elif mode == "sigterm":
        proc.send_signal(signal.SIGTERM)
    code = inner_run.wait_exit(proc, 120)
    assert code != 0
    _assert_nothing_left(info)


def test_leftovers_of_a_sigkilled_run_are_reaped_by_the_next_start(inner_run: Any) -> None:
    proc, info = inner_run("hold")
    proc.send_signal(signal.SIGKILL)  # the runner dies without any cleanup
    proc.wait(timeout=30)
    assert any(_alive(pid) for pid in info["pids"])  # its services survived it
    assert info["run_id"] in cleanup.reap_stale()  # what the next run does first
    _assert_nothing_left(info)
