"""A :class:`~harness.stack.Stack` whose SUT is a user's app (a :class:`Target`), not ``system/``.

Same services and wiring as the reference stack, so the same nemesis, waits and collection
work unchanged: PostgreSQL (a fresh database), Toxiproxy with proxy ``postgres`` in front of
it and one proxy per upstream the target names (``upstream_<variable>``), the fake joke API
when an upstream asks for it, and the target's worker processes. The harness reaches the
database directly (``db_dsn``); the workers reach it through Toxiproxy (``database_env``).
Local backend only: the docker backend builds images of ``system/``, not of user apps.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from harness.backends.base import Backend, Endpoint, Service, ServiceError
from harness.backends.local import HOST, REPO_ROOT, python_env
from harness.fakeapi.client import FakeApiClient
from harness.ports import free_port
from harness.processes import ManagedProcess, log_line
from harness.profiles import FAST
from harness.stack import Stack, with_host_port
from harness.target.spec import FAKE_API, Target, load_app
from harness.wait import WaitTimeout


def upstream_proxy_name(variable: str) -> str:
    """The Toxiproxy proxy fronting the upstream held in environment variable ``variable``."""
    return f"upstream_{variable.lower()}"


def _endpoint_of(url: str, *, variable: str) -> tuple[Endpoint, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceError(
            f"upstream {variable}={url!r}: give an http(s) URL with a host (or FAKE_API)"
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Endpoint.same(parts.hostname, port), parts.scheme


def _via(url: str, listen: Endpoint) -> str:
    """``url`` with its host and port replaced by the proxy's address (path kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{listen.inside.host}:{listen.inside.port}"))


def _argv(command: list[str] | tuple[str, ...] | Any) -> list[str]:
    argv = [str(a) for a in command]
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable  # the harness's interpreter, with the user's packages
    return argv


class TargetStack(Stack):
    """Services for one generic scenario against ``target``."""

    def __init__(
        self,
        backend: Backend,
        target: Target,
        *,
        seed: int,
        name: str = "target",
        logs_dir: Path | None = None,
        workers: int = 1,
    ) -> None:
        # FAST only sizes the harness's own waits here; the target's timings are its own.
        super().__init__(
            backend, profile=FAST, seed=seed, name=name, logs_dir=logs_dir, workers=workers
        )
        self.target = target
        self.with_api = False
        #: each worker's health base URL (``GET url + target.health_path``), when declared
        self.health_urls: dict[str, str] = {}

    @property
    def db_url(self) -> str:
        """The scenario's database as a libpq URL (direct, for the harness)."""
        return self.postgres.dsn(self.db_name)

    def _start(self, timeout: float) -> None:
        if self.backend.name != "local":
            raise ServiceError(
                "generic scenarios run on the local backend only (use --backend local)"
            )
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.postgres.start(timeout=timeout)
        self._timed("database", lambda: self.postgres.create_database(self.db_name))
        self._db_created = True
        self._timed("migrate", lambda: self._migrate(timeout))
        self.toxiproxy = self._timed(
            "toxiproxy",
            lambda: self.backend.start_toxiproxy(
                seed=self.seed, log_path=self.logs_dir / "toxiproxy.log"
            ),
        )
        self._add_proxy("postgres", self.postgres.endpoint)
        self.env = self._target_env(timeout)
        workers = [self._new_worker() for _ in range(self.initial_workers)]
        self._timed("sut", lambda: self._start_all(workers, timeout))

    def _migrate(self, timeout: float) -> None:
        """The target's migrate command, or Procrastinate's schema applied through its app."""
        target = self.target
        env = {**python_env(), **target.env, target.database_env: self.db_url}
        if target.migrate is not None:
            proc = ManagedProcess(
                "migrate",
                _argv(target.migrate),
                log_path=self.logs_dir / "migrate.log",
                env=env,
                cwd=REPO_ROOT,
            )
            proc.start(timeout=timeout)
            try:
                code = proc.wait_exit(timeout=timeout)
            except WaitTimeout:
                proc.kill()
                raise ServiceError(
                    f"target {target.name}: migrate still running after {timeout:.0f}s"
                ) from None
            finally:
                proc.close()
            if code != 0:
                raise ServiceError(
                    f"target {target.name}: migrate ({shlex.join(proc.argv)}) exited {code}: "
                    f"{proc.tail()}"
                )
            return
        schema = load_app(target).schema_manager.get_schema()
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(schema)

    def _target_env(self, timeout: float) -> dict[str, str]:
        target = self.target
        pg = self.proxy_endpoints["postgres"]
        env = {**python_env(), **target.env}
        env[target.database_env] = with_host_port(self.postgres.dsn(self.db_name, inside=True), pg)
        for variable, upstream in target.upstreams.items():
            name = upstream_proxy_name(variable)
            if upstream == FAKE_API:
                if self.fakeapi_service is None:
                    self.fakeapi_service = self._timed(
                        "fakeapi",
                        lambda: self.backend.start_fakeapi(
                            seed=self.seed, log_path=self.logs_dir / "fakeapi.log", timeout=timeout
                        ),
                    )
                    assert self.fakeapi_service.endpoint is not None
                    self._fakeapi = FakeApiClient(f"http://{self.fakeapi_service.endpoint.outside}")
                self._add_proxy(name, self.fakeapi_service.endpoint)
                env[variable] = f"http://{self.proxy_endpoints[name].inside}"
            else:
                endpoint, _ = _endpoint_of(upstream, variable=variable)
                self._add_proxy(name, endpoint)
                env[variable] = _via(upstream, self.proxy_endpoints[name])
        env.update(self.extra_env)
        return env

    def _new_worker(self, name: str | None = None, env: Any = None) -> Service:
        name = name or f"w{next(self._worker_names)}"
        if any(w.name == name for w in self.workers):
            raise ValueError(f"a worker named {name!r} already exists")
        health: dict[str, str] = {}
        if self.target.health_port_env is not None:
            port = free_port(HOST)  # kept across restarts: the worker's env is fixed
            health[self.target.health_port_env] = str(port)
            self.health_urls[name] = f"http://{HOST}:{port}"
        worker = ManagedProcess(
            name,
            [a.replace("{name}", name) for a in _argv(self.target.worker)],
            log_path=self.logs_dir / f"worker-{name}.log",
            env={**self.env, **health, **(env or {})},
            cwd=REPO_ROOT,
            ready=log_line(self.target.ready_log),
        )
        self.workers.append(worker)
        return worker

    @property
    def worker_env(self) -> dict[str, str]:
        """The complete environment a worker process gets (the harness's, then the target's)."""
        return {**os.environ, **self.env}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "target": self.target.name}
