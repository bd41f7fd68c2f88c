"""The local backend: services as processes on this machine, all on 127.0.0.1.

PostgreSQL runs from the machine's server binaries (:class:`harness.postgres.LocalPostgres`,
initdb once per session), Toxiproxy is :func:`harness.toxiproxy.selection.start_toxiproxy`'s
choice (a real binary if present, else the embedded one), and the fake API and the SUT are
:class:`harness.processes.ManagedProcess` children. Ports are chosen up front, so a restarted
service comes back on the same address. Everything lives in the run's temp dir
(:mod:`harness.cleanup`) and is reaped even if this process is killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import cleanup
from harness.backends.base import (
    Backend,
    BackendUnavailable,
    Endpoint,
    PostgresService,
    ServiceError,
    SystemRole,
    ToxiproxyService,
)
from harness.ports import free_port
from harness.postgres import LocalPostgres, PostgresError, find_bindir
from harness.processes import ManagedProcess, http_ok, log_line
from harness.wait import WaitTimeout, wait_for

if TYPE_CHECKING:
    from toxiproxy.proxy import Proxy
    from toxiproxy.server import Toxiproxy

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]


def python_env() -> dict[str, str]:
    """Lets ``python -m system`` / ``-m harness.fakeapi`` import this checkout, installed or not."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT)}


class LocalPostgresService(PostgresService):
    """:class:`LocalPostgres` as a :class:`PostgresService`.

    ``terminate`` sends SIGINT (PostgreSQL's *fast* shutdown: a graceful stop that does not wait
    for clients to disconnect); ``kill`` SIGKILLs the postmaster and every backend.
    """

    name = "postgres"

    def __init__(self, server: LocalPostgres, *, owned: bool) -> None:
        self.server = server
        self._owned = owned
        self._exit_code: int | None = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint.same(self.server.host, self.server.port)

    @property
    def log_path(self) -> Path:
        return self.server.log_file

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while running."""
        return self.server.pid

    def start(self, *, timeout: float = 30.0) -> float:
        if self.server.is_running():
            return self.server.wait_ready(timeout=timeout)
        elapsed = self.server.start(timeout=timeout)
        self._exit_code = None
        return elapsed

    def terminate(self) -> None:
        pid = self.server.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)

    def kill(self) -> None:
        self.server.kill()
        self._exit_code = -signal.SIGKILL

    def stop(self, *, timeout: float = 10.0) -> int | None:
        if not self.server.is_running():
            return self._exit_code
        try:
            self.server.stop("fast", timeout=timeout)
            self._exit_code = 0
        except PostgresError:
            self.kill()
            return None
        return 0

    def restart(self, *, kill: bool = False, timeout: float = 30.0) -> float:
        started = time.monotonic()
        if kill:
            self.kill()
        else:
            self.stop(timeout=timeout)
        self.start(timeout=timeout)
        return time.monotonic() - started

    def is_running(self) -> bool:
        return self.server.is_running()

    def wait_exit(self, *, timeout: float) -> int:
        wait_for(lambda: not self.server.is_running(), timeout=timeout, what="PostgreSQL to stop")
        if self._exit_code is None:
            self._exit_code = 0
        return self._exit_code

    @property
    def exit_code(self) -> int | None:
        return None if self.server.is_running() else self._exit_code

    def close(self) -> None:
        if self._owned:
            self.server.close()

    def create_database(self, name: str, *, template: str | None = None) -> None:
        self.server.create_database(name, template=template)

    def drop_database(self, name: str) -> None:
        self.server.drop_database(name)

    def dsn(self, dbname: str, *, inside: bool = False) -> str:
        return self.server.dsn(dbname)

    def server_version(self) -> str:
        return self.server.server_version()


class LocalToxiproxy(ToxiproxyService):
    """A Toxiproxy on this machine (whatever ``start_toxiproxy`` chose), proxies on 127.0.0.1."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    @property
    def api_url(self) -> str:
        return str(self.handle.url)

    @property
    def flavour(self) -> str:
        return str(self.handle.flavour)

    def client(self) -> Toxiproxy:
        from harness.toxiproxy.selection import client_for

        client: Toxiproxy = client_for(self.handle)
        return client

    def create_proxy(self, name: str, upstream: Endpoint) -> tuple[Proxy, Endpoint]:
        # A port of our own, not :0: a proxy re-enabled after a cut binds the same port again.
        listen = f"{HOST}:{free_port(HOST)}"
        proxy = self.client().create(upstream=str(upstream.outside), name=name, listen=listen)
        host, _, port = str(proxy.listen).rpartition(":")
        return proxy, Endpoint.same(host or HOST, int(port))

    def close(self) -> None:
        self.handle.close()


class LocalBackend(Backend):
    """Services as local processes. ``postgres=`` reuses a running :class:`LocalPostgres`."""

    name = "local"

    def __init__(self, workdir: Path | None = None, *, postgres: LocalPostgres | None = None):
        super().__init__(workdir or cleanup.current_run().dir)
        self._given_postgres = postgres
        self._postgres: LocalPostgresService | None = None

    @classmethod
    def check_available(cls) -> None:
        try:
            find_bindir()
        except PostgresError as exc:
            raise BackendUnavailable(str(exc)) from None

    def open(self) -> None:
        cleanup.current_run()  # before any child, so that every descendant carries the marker
        if self._postgres is not None:
            return
        if self._given_postgres is not None:
            self._postgres = LocalPostgresService(self._given_postgres, owned=False)
            if not self._given_postgres.is_running():
                self._postgres.start()
            return
        self.check_available()
        # As root the server runs as the postgres user, who must be able to reach its data dir.
        self.workdir.chmod(0o755)
        server = LocalPostgres(tmp_root=self.workdir)
        self._postgres = LocalPostgresService(server, owned=True)
        try:
            server.start()
        except PostgresError as exc:
            raise ServiceError(f"PostgreSQL did not start: {exc}") from None

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.close()
            self._postgres = None

    @property
    def postgres(self) -> LocalPostgresService:
        if self._postgres is None:
            raise ServiceError("the local backend is not open: call open() first")
        return self._postgres

    def start_toxiproxy(self, *, seed: int, log_path: Path) -> LocalToxiproxy:
        from harness.toxiproxy.selection import start_toxiproxy

        return LocalToxiproxy(start_toxiproxy(seed=seed, log_path=log_path))

    def start_fakeapi(self, *, seed: int, log_path: Path, timeout: float = 30.0) -> ManagedProcess:
        port = free_port(HOST)
        argv = [sys.executable, "-m", "harness.fakeapi", "--host", HOST, "--port", str(port)]
        proc = ManagedProcess(
            "fakeapi",
            [*argv, "--seed", str(seed)],
            log_path=log_path,
            env=python_env(),
            cwd=REPO_ROOT,
            ready=log_line(r"fakeapi: listening on http://"),
            endpoint=Endpoint.same(HOST, port),
        )
        proc.start(timeout=timeout)
        return proc

    def run_migrate(self, *, env: Mapping[str, str], log_path: Path, timeout: float = 60.0) -> None:
        proc = ManagedProcess(
            "migrate",
            [sys.executable, "-m", "system", "migrate"],
            log_path=log_path,
            env={**python_env(), **env},
            cwd=REPO_ROOT,
        )
        proc.start(timeout=timeout)
        try:
            code = proc.wait_exit(timeout=timeout)
        except WaitTimeout:
            proc.kill()
            raise ServiceError(
                f"migrate: still running after {timeout:.0f}s; log {log_path}"
            ) from None
        finally:
            proc.close()
        if code != 0:
            raise ServiceError(f"migrate: exit code {code}; log {log_path}: {proc.tail()}")

    def system_service(
        self, role: SystemRole, *, name: str, env: Mapping[str, str], log_path: Path
    ) -> ManagedProcess:
        argv = [sys.executable, "-m", "system", role]
        if role == "api":
            port = free_port(HOST)
            argv += ["--host", HOST, "--port", str(port), "--no-worker"]
            health = f"http://{HOST}:{port}/health"
            return ManagedProcess(
                name,
                argv,
                log_path=log_path,
                env={**python_env(), **env},
                cwd=REPO_ROOT,
                ready=http_ok(health, statuses=(200, 503)),
                endpoint=Endpoint.same(HOST, port),
            )
        if role == "worker":
            argv += ["--name", name]
            return ManagedProcess(
                name,
                argv,
                log_path=log_path,
                env={**python_env(), **env},
                cwd=REPO_ROOT,
                ready=log_line(rf"bulletproof: worker ready name={re.escape(name)}(\s|$)"),
            )
        raise ValueError(f"unknown SUT role {role!r}; choose api or worker")
