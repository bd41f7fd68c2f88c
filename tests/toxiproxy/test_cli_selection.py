"""``python -m harness.toxiproxy`` as a process, and the flavour selection in ``select``."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from harness.toxiproxy.selection import (
    ToxiproxyError,
    ToxiproxyHandle,
    client_for,
    start_embedded,
    start_toxiproxy,
)
from harness.wait import wait_for

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.toxiproxy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "abc"],
        ["--port", "70000"],
        ["--bogus"],
        ["--seed", "x"],
        ["--loop", "tokio"],
        ["--host", "no-such-host.invalid"],
    ],
)
def test_bad_arguments_one_line_exit_2(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("toxiproxy: "), result.stderr


def test_port_in_use_one_line_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("--port", str(taken.getsockname()[1]))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "address already in use" in lines[0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_ready_line_and_clean_signal_exit(signum: int) -> None:
    with socket.socket() as echo_listener:
        echo_listener.bind(("127.0.0.1", 0))
        echo_listener.listen()
        handle = start_embedded()
        assert handle.process is not None
        proc = handle.process
        try:
            assert handle.url.startswith("http://127.0.0.1:")
            port = echo_listener.getsockname()[1]
            proxy = client_for(handle).create(upstream=f"127.0.0.1:{port}", name="e")
            host, pport = proxy.listen.rsplit(":", 1)
            client = socket.create_connection((host, int(pport)), timeout=5)
            upstream_side, _ = echo_listener.accept()
            upstream_side.settimeout(5)
            proc.send_signal(signum)
            assert proc.wait(timeout=10) == 0
            assert client.recv(10) == b""  # connections closed on the way out
            assert upstream_side.recv(10) == b""
            client.close()
            upstream_side.close()
            assert proc.stdout is not None
            assert proc.stdout.read() == b""  # the ready line was the only line
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{handle.url}/version", timeout=2)
        finally:
            handle.close()


def test_close_reaps_and_is_idempotent() -> None:
    handle = start_embedded()
    proc = handle.process
    assert proc is not None and handle.flavour == "embedded" and handle.version
    with handle:
        assert httpx.get(f"{handle.url}/version").status_code == 200
    assert proc.returncode is not None
    handle.close()


def test_selection_prefers_url_then_binary_then_embedded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing else: a real toxiproxy-server is hidden
    with start_toxiproxy() as embedded:
        assert embedded.flavour == "embedded"
        # TOXIPROXY_URL wins and is left running by close().
        monkeypatch.setenv("TOXIPROXY_URL", embedded.url)
        external = start_toxiproxy()
        assert (external.flavour, external.url, external.process) == (
            "external",
            embedded.url,
            None,
        )
        external.close()
        assert httpx.get(f"{embedded.url}/version").status_code == 200
    # A toxiproxy-server on PATH is started with its own flags: a stand-in that runs ours.
    monkeypatch.delenv("TOXIPROXY_URL")
    fake = tmp_path / "toxiproxy-server"
    fake.write_text(
        "#!/bin/sh\n"
        '[ "$1" = -host ] && [ "$3" = -port ] || exit 64\n'
        f'exec {sys.executable} -m harness.toxiproxy --host "$2" --port "$4"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    binary: ToxiproxyHandle = start_toxiproxy()
    try:
        assert binary.flavour == "binary" and binary.version
        assert client_for(binary).proxies() == {}
    finally:
        proc = binary.process
        binary.close()
    assert proc is not None and proc.returncode is not None


def test_unreachable_external_url_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TOXIPROXY_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(ToxiproxyError, match="TOXIPROXY_URL"):
        start_toxiproxy()


def test_log_path_collects_the_server_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "toxiproxy.log"
    with start_embedded(log_path=log, seed=7) as handle:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()[1]
        proxy = client_for(handle).create(upstream=f"127.0.0.1:{dead}", name="dead")
        host, port = proxy.listen.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as client:
            assert client.recv(10) == b""
        wait_for(lambda: "cannot reach upstream" in log.read_text(), timeout=5, what="the warning")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_expect_100_continue(toxiproxy_handle: ToxiproxyHandle, tp: object) -> None:
    """curl sends ``Expect: 100-continue`` for bodies over 1 KiB and waits 1 s without a 100."""
    body = json.dumps({"name": "c" * 1500, "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"})
    start = time.monotonic()
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "--data-binary",
            body,
            f"{toxiproxy_handle.url}/proxies",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    text, code = result.stdout.rsplit("\n", 1)
    assert code == "201" and json.loads(text)["name"] == "c" * 1500
    assert time.monotonic() - start < 0.9


def test_a_dropped_handle_is_still_stopped_at_exit() -> None:
    script = "from harness.toxiproxy.selection import start_embedded\nprint(start_embedded().pid)\n"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.strip())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
