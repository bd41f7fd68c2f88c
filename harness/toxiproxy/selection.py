"""Choose a Toxiproxy for the harness and hand out ``toxiproxy-python`` clients for it.

``start_toxiproxy()`` returns a :class:`ToxiproxyHandle` (also a context manager) for, in order:

1. ``"external"``: the server at ``TOXIPROXY_URL`` (e.g. ``http://127.0.0.1:8474``), left running;
2. ``"binary"``: a ``toxiproxy-server`` found on PATH, started as
   ``toxiproxy-server -host 127.0.0.1 -port <free port>`` and polled on ``/version``;
3. ``"embedded"``: ``python -m harness.toxiproxy --host 127.0.0.1 --port 0`` as a subprocess
   (its own process, so it never shares the harness's GIL and can be killed on its own).

``handle.close()`` terminates and reaps a process the handle started (SIGTERM, then SIGKILL after
5 s); every handle is also closed at interpreter exit. ``client_for(handle)`` returns a
``toxiproxy.Toxiproxy`` pointed at the handle. Beware: that client keeps host and port as
*class* attributes, so all clients in a process talk to the last handle given to ``client_for``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Literal
from urllib.parse import urlsplit

import httpx

from harness import http
from harness.ports import free_port
from harness.wait import WaitTimeout, wait_for

if TYPE_CHECKING:
    from toxiproxy import Toxiproxy

Flavour = Literal["external", "binary", "embedded"]
URL_ENV = "TOXIPROXY_URL"
BINARY = "toxiproxy-server"
READY_PREFIX = "toxiproxy: API listening on "
_REPO_ROOT = Path(__file__).resolve().parents[2]


class ToxiproxyError(RuntimeError):
    """A Toxiproxy could not be reached or started."""


class ToxiproxyHandle:
    """A running Toxiproxy: ``url``, ``host``, ``port``, ``flavour``, ``version``, ``close()``."""

    def __init__(
        self,
        *,
        url: str,
        flavour: Flavour,
        version: str,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ToxiproxyError(f"toxiproxy: URL {url!r} needs a host and a port")
        self.url = url.rstrip("/")
        self.host: str = parts.hostname
        self.port: int = parts.port
        self.flavour: Flavour = flavour
        self.version = version
        self.process = process
        self._lock = threading.Lock()
        if process is not None:
            _open_handles.add(self)
            _track(process.pid)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def close(self, timeout: float = 5.0) -> None:
        """Stop the process this handle started (no-op for ``external``); idempotent."""
        with self._lock:
            proc = self.process
            if proc is None:
                return
            self.process = None
        _open_handles.discard(self)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=timeout)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        _untrack(proc.pid)

    def __enter__(self) -> ToxiproxyHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ToxiproxyHandle({self.flavour}, {self.url}, version={self.version!r})"


# Strong references: a handle dropped without close() must still be closed at exit.
_open_handles: set[ToxiproxyHandle] = set()


@atexit.register
def _close_all() -> None:
    for handle in list(_open_handles):
        with contextlib.suppress(Exception):
            handle.close(timeout=2.0)


def _track(pid: int) -> None:
    """Register with the harness's run registry when it is there (reaped if we die)."""
    with contextlib.suppress(Exception):
        from harness import cleanup

        cleanup.track(pid)


def _untrack(pid: int) -> None:
    with contextlib.suppress(Exception):
        from harness import cleanup

        cleanup.untrack(pid)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    with contextlib.suppress(Exception):
        from harness import cleanup

        env.update(cleanup.child_env())
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_REPO_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def fetch_version(url: str, timeout: float = 2.0) -> str:
    """``GET /version`` -> the version string (Toxiproxy 2.x answers ``{"version": "X"}``)."""
    response = http.get(f"{url.rstrip('/')}/version", timeout=timeout)
    response.raise_for_status()
    try:
        return str(response.json()["version"])
    except (ValueError, KeyError, TypeError):
        return response.text.strip()  # Toxiproxy 1.x answered with the bare version


def connect_external(url: str) -> ToxiproxyHandle:
    """A handle on a Toxiproxy someone else runs (never stopped by ``close``)."""
    try:
        version = fetch_version(url)
    except httpx.HTTPError as exc:
        raise ToxiproxyError(
            f"toxiproxy: {URL_ENV}={url} does not answer GET /version ({exc}); "
            f"start it or unset {URL_ENV} to use the embedded server"
        ) from None
    return ToxiproxyHandle(url=url, flavour="external", version=version)


def start_binary(
    *,
    host: str = "127.0.0.1",
    binary: str = BINARY,
    seed: int | None = None,
    log_path: Path | None = None,
    timeout: float = 10.0,
) -> ToxiproxyHandle:
    """Start ``toxiproxy-server`` on a free port and wait until ``/version`` answers."""
    path = shutil.which(binary)
    if path is None:
        raise ToxiproxyError(f"toxiproxy: {binary} is not on PATH")
    port = free_port(host)
    argv = [path, "-host", host, "-port", str(port)]
    if seed is not None:
        argv += ["-seed", str(seed)]
    with _log_file(log_path) as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=log if log is not None else subprocess.DEVNULL,
            env=_child_env(),
            start_new_session=True,
        )
    url = f"http://{host}:{port}"
    handle = ToxiproxyHandle(url=url, flavour="binary", version="", process=proc)

    def answered() -> str | None:
        if proc.poll() is not None:
            raise ToxiproxyError(f"toxiproxy: {path} exited with code {proc.returncode}")
        return fetch_version(url, timeout=0.5)

    try:
        handle.version = wait_for(
            answered, timeout=timeout, what=f"{binary} on {url}", ignore=(httpx.HTTPError,)
        ).value
    except (WaitTimeout, ToxiproxyError):
        handle.close()
        raise
    return handle


def start_embedded(
    *,
    host: str = "127.0.0.1",
    seed: int | None = None,
    log_path: Path | None = None,
    timeout: float = 15.0,
) -> ToxiproxyHandle:
    """Run ``python -m harness.toxiproxy --port 0`` and wait for its ready line.

    ``seed`` seeds toxicity draws and jitter; its log (stderr) is appended to ``log_path``, or
    goes to our own stderr when ``None``.
    """
    argv = [sys.executable, "-m", "harness.toxiproxy", "--host", host, "--port", "0"]
    if seed is not None:
        argv += ["--seed", str(seed)]
    with _log_file(log_path) as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,  # None: warnings go to our stderr
            env=_child_env(),
            cwd=str(_REPO_ROOT),
            start_new_session=True,  # a Ctrl-C in the terminal goes to the harness, not to it
        )
    try:
        line = _read_line(proc, timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if not line.startswith(READY_PREFIX):
        proc.kill()
        proc.wait()
        raise ToxiproxyError(f"toxiproxy: unexpected first line from the embedded server: {line!r}")
    url = line[len(READY_PREFIX) :].strip()
    handle = ToxiproxyHandle(url=url, flavour="embedded", version="", process=proc)
    try:
        handle.version = fetch_version(url)
    except httpx.HTTPError as exc:
        handle.close()
        raise ToxiproxyError(f"toxiproxy: embedded server at {url} did not answer: {exc}") from None
    return handle


@contextlib.contextmanager
def _log_file(path: Path | None) -> Iterator[BinaryIO | None]:
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as log:
        yield log


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's first stdout line, or :class:`ToxiproxyError` if it exits or times out."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ToxiproxyError(f"toxiproxy: embedded server not ready after {timeout:.0f}s")
            if not sel.select(remaining):
                continue
            data = os.read(fd, 4096)
            if not data:
                code = proc.wait()
                raise ToxiproxyError(
                    f"toxiproxy: embedded server exited with code {code} before it was ready"
                )
            buf += data
    return buf.split(b"\n", 1)[0].decode("utf-8", "replace")


def start_toxiproxy(
    *, host: str = "127.0.0.1", seed: int | None = None, log_path: Path | None = None
) -> ToxiproxyHandle:
    """External (``TOXIPROXY_URL``), else ``toxiproxy-server`` on PATH, else embedded.

    ``seed`` and ``log_path`` apply to a server this call starts (not to an external one).
    """
    url = os.environ.get(URL_ENV)
    if url:
        return connect_external(url)
    if shutil.which(BINARY):
        return start_binary(host=host, seed=seed, log_path=log_path)
    return start_embedded(host=host, seed=seed, log_path=log_path)


def client_for(handle: ToxiproxyHandle) -> Toxiproxy:
    """A ``toxiproxy-python`` client for ``handle`` (sets the process-wide host and port)."""
    from toxiproxy import Toxiproxy

    client = Toxiproxy()
    client.update_api_consumer(handle.host, handle.port)
    return client


__all__ = [
    "ToxiproxyError",
    "ToxiproxyHandle",
    "client_for",
    "connect_external",
    "start_binary",
    "start_embedded",
    "start_toxiproxy",
]
