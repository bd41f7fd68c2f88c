"""Managed subprocesses: each in its own process group, output captured to a file, ready-checked.

A :class:`ManagedProcess` is a :class:`harness.backends.base.Service` for a local command::

    proc = ManagedProcess("w1", [sys.executable, "-m", "system", "worker", "--name", "w1"],
                          log_path=logs / "w1.log", ready=log_line("worker ready name=w1"))
    proc.start(timeout=10)    # returns the seconds until the ready check held
    proc.kill()               # SIGKILL to the whole group; returns once the process is reaped
    proc.restart()            # SIGTERM, wait, start again (same log file, appended)

Every child gets ``PYTHONUNBUFFERED=1`` and the run marker of :mod:`harness.cleanup`, and is
tracked in the run's registry while alive, so a later run can reap it if this one is killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from harness import cleanup, http
from harness.backends.base import Endpoint, Service, ServiceError
from harness.wait import WaitTimeout, wait_for

ReadyCheck = Callable[["ManagedProcess"], bool]
"""Returns True once the (running) process is ready; may raise to mean "not yet"."""


def log_line(pattern: str) -> ReadyCheck:
    """Ready once a line matching the regular expression ``pattern`` appears in this run's log."""
    compiled = re.compile(pattern)

    def check(proc: ManagedProcess) -> bool:
        return compiled.search(proc.output()) is not None

    return check


def http_ok(
    url: str | Callable[[], str], statuses: Sequence[int] = (200,), *, probe_timeout: float = 5.0
) -> ReadyCheck:
    """Ready once ``GET url`` answers with one of ``statuses`` (connection errors mean not yet).

    ``probe_timeout`` bounds one probe: generous, since a slow answer (e.g. a health check
    behind a latency toxic) is still an answer.
    """

    def check(proc: ManagedProcess) -> bool:
        target = url() if callable(url) else url
        try:
            response = http.get(target, timeout=probe_timeout)
        except httpx.HTTPError:
            return False
        return response.status_code in statuses

    return check


class ManagedProcess(Service):
    """A local command run as its own process group, with start/terminate/kill/restart."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready: ReadyCheck | None = None,
        endpoint: Endpoint | None = None,
    ) -> None:
        """``env`` is laid over the harness's environment; ``ready=None``: ready once started."""
        self.name = name
        self.argv = list(argv)
        self.env = dict(env or {})
        self.cwd = cwd
        self.ready = ready
        self._endpoint = endpoint
        self._log_path = log_path
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self.starts = 0
        """How many times the process was started."""

    # -- Service -------------------------------------------------------------------------

    @property
    def endpoint(self) -> Endpoint | None:
        return self._endpoint

    @endpoint.setter
    def endpoint(self, value: Endpoint | None) -> None:
        self._endpoint = value

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def pid(self) -> int | None:
        """The process id of the current (or last) run."""
        return self._popen.pid if self._popen is not None else None

    def start(self, *, timeout: float = 30.0) -> float:
        """Spawn the process and wait for its ready check; return the seconds taken.

        Raises :class:`ServiceError` (with the log's last lines) if it exits or is not ready.
        """
        if self.is_running():
            raise ServiceError(f"{self.name}: already running (pid {self.pid})")
        started = time.monotonic()
        self._spawn()
        try:
            self.wait_ready(timeout=max(0.0, timeout - (time.monotonic() - started)))
        except ServiceError:
            self.kill()
            raise
        return time.monotonic() - started

    def _spawn(self) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env, **cleanup.child_env()}
        with self._log_path.open("ab") as log:
            header = (
                f"--- harness: start #{self.starts + 1} of {self.name}: {' '.join(self.argv)}\n"
            )
            log.write(header.encode())
            log.flush()
            self._log_offset = log.tell()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,  # own session and process group: pgid == pid
            )
        self.starts += 1
        cleanup.track(self._popen.pid)

    def wait_ready(self, *, timeout: float) -> float:
        """Wait until the ready check holds; raise :class:`ServiceError` if the process exits."""
        check = self.ready

        def ready() -> bool:
            if self._popen is None or self._popen.poll() is not None:
                raise _Exited()
            return True if check is None else check(self)

        try:
            return wait_for(ready, timeout=timeout, what=f"{self.name} to be ready").elapsed
        except _Exited:
            raise ServiceError(
                f"{self.name}: exited with code {self.exit_code} before it was ready; "
                f"log {self._log_path}: {self.tail()}"
            ) from None
        except WaitTimeout:
            raise ServiceError(
                f"{self.name}: not ready after {timeout:.1f}s; log {self._log_path}: {self.tail()}"
            ) from None

    def signal(self, signum: int, *, group: bool = False) -> bool:
        """Send ``signum`` to the process (or its whole group); False if it was already gone."""
        if self._popen is None or self._popen.poll() is not None:
            return False
        try:
            if group:
                os.killpg(self._popen.pid, signum)
            else:
                self._popen.send_signal(signum)
        except ProcessLookupError:
            return False
        return True

    def terminate(self) -> None:
        """SIGTERM to the process itself (like ``kill PID``); returns at once."""
        self.signal(signal.SIGTERM)

    def interrupt(self) -> None:
        """SIGINT to the process (like Ctrl-C); returns at once."""
        self.signal(signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL the whole process group; return once the process is reaped."""
        if self._popen is None:
            return
        self._kill_group()
        self._popen.wait(timeout=30)
        self._forget()

    def _kill_group(self) -> None:
        if self._popen is None:
            return
        # The leader's pid is the group id; once the leader is reaped the id may be reused, so
        # the group is only signalled while the leader is still unreaped (alive or zombie).
        if self._popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)

    def stop(self, *, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL the group; return the exit code."""
        code = super().stop(timeout=timeout)
        if self._popen is not None:
            # Children left in the group after the leader exited: the group id cannot be reused
            # while any member lives, so signalling it right away hits only our leftovers.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)
        self._forget()
        return code

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait_exit(self, *, timeout: float) -> int:
        """Wait for the process to exit; return its exit code (``-N`` for signal N)."""
        if self._popen is None:
            raise ServiceError(f"{self.name}: never started")
        try:
            code = self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self.name} to exit", timeout) from None
        self._forget()
        return code

    def _forget(self) -> None:
        """Untrack the process group once its leader has exited."""
        if self._popen is not None and self._popen.returncode is not None:
            cleanup.untrack(self._popen.pid)

    @property
    def exit_code(self) -> int | None:
        if self._popen is None:
            return None
        return self._popen.poll()

    def close(self) -> None:
        """Kill the process group if it is still alive. Idempotent."""
        if self._popen is not None:
            if self._popen.poll() is None:
                self.kill()
            self._forget()

    # -- output --------------------------------------------------------------------------

    def output(self) -> str:
        """Everything this run (the latest start) has written so far."""
        try:
            with self._log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 5) -> str:
        """The last ``lines`` lines of this run's output, joined with `` | ``."""
        text = self.output().strip().splitlines()
        return " | ".join(text[-lines:]) if text else "(empty)"

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited {self.exit_code}"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"


class _Exited(Exception):
    """The process exited while we waited for it to be ready."""


class ProcessSet:
    """Several managed processes started, stopped and closed together (closing is best effort)."""

    def __init__(self) -> None:
        self._procs: dict[str, ManagedProcess] = {}

    def add(self, proc: ManagedProcess) -> ManagedProcess:
        if proc.name in self._procs:
            raise ValueError(f"a process named {proc.name!r} already exists")
        self._procs[proc.name] = proc
        return proc

    def __getitem__(self, name: str) -> ManagedProcess:
        return self._procs[name]

    def __iter__(self) -> Iterator[ManagedProcess]:
        return iter(list(self._procs.values()))

    def __len__(self) -> int:
        return len(self._procs)

    def close(self) -> None:
        """SIGKILL every process that is still running."""
        for proc in reversed(list(self._procs.values())):
            with contextlib.suppress(Exception):
                proc.close()
