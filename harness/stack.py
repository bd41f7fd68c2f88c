"""The :class:`Stack`: PostgreSQL, Toxiproxy, the fake joke API and the SUT's processes, wired.

Toxiproxy fronts both of the SUT's links: proxy ``postgres`` (SUT -> database) and proxy
``jokeapi`` (SUT -> fake API), so a scenario can cut, slow or reset either. The harness itself
reads the database directly (``stack.db_dsn``) and scripts the fake API directly
(``stack.fakeapi``), never through a proxy.

    with LocalBackend() as backend, Stack(backend, profile=FAST, seed=1, name="demo") as stack:
        httpx.post(f"{stack.api_url}/tasks/fetch-joke")
        stack.proxies["jokeapi"].disable()       # cut the joke API
        stack.workers[0].kill()                  # SIGKILL worker w1
        stack.postgres.restart(kill=True)        # crash PostgreSQL, same data
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from toxiproxy.api import APIConsumer
from toxiproxy.proxy import Proxy

from harness.backends.base import (
    Backend,
    Endpoint,
    PostgresService,
    Service,
    ServiceError,
    ToxiproxyService,
)
from harness.fakeapi.client import FakeApiClient
from harness.profiles import Profile
from system.defects import SCHEMA_DEFECTS

_db_counter = itertools.count(1)
_consumer_lock = threading.RLock()


class PinnedProxy(Proxy):
    """A toxiproxy-python ``Proxy`` that always talks to its own Toxiproxy.

    toxiproxy-python keeps the server's address in class attributes of ``APIConsumer``; with
    two stacks alive (``stack_factory``), a plain ``Proxy`` would silently drive whichever
    server was configured last. Each call here points the client at this proxy's server first.
    """

    def __init__(self, proxy: Proxy, api_url: str) -> None:
        super().__init__(
            name=proxy.name, upstream=proxy.upstream, enabled=proxy.enabled, listen=proxy.listen
        )
        parts = urlsplit(api_url)
        self._api = (parts.hostname or "127.0.0.1", parts.port or 8474)

    def _pinned(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with _consumer_lock:
            APIConsumer.host, APIConsumer.port = self._api
            return method(*args, **kwargs)

    def toxics(self) -> Any:
        return self._pinned(super().toxics)

    def get_toxic(self, toxic_name: str) -> Any:
        return self._pinned(super().get_toxic, toxic_name)

    def add_toxic(self, **kwargs: Any) -> Any:
        return self._pinned(super().add_toxic, **kwargs)

    def destroy_toxic(self, toxic_name: str) -> Any:
        return self._pinned(super().destroy_toxic, toxic_name)

    def destroy(self) -> Any:
        return self._pinned(super().destroy)

    def disable(self) -> Any:
        return self._pinned(super().disable)

    def enable(self) -> Any:
        return self._pinned(super().enable)


def _slug(text: str, limit: int = 30) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "stack"


def with_host_port(dsn: str, endpoint: Endpoint) -> str:
    """``dsn`` pointed at ``endpoint.inside`` (how the SUT reaches it); URLs stay URLs."""
    host, port = endpoint.inside.host, endpoint.inside.port
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(dsn)
        userinfo = parts.netloc.rpartition("@")[0]
        shown = f"[{host}]" if ":" in host else host
        netloc = f"{userinfo}@{shown}:{port}" if userinfo else f"{shown}:{port}"
        return urlunsplit(parts._replace(netloc=netloc))
    params = conninfo_to_dict(dsn)
    params["host"] = endpoint.inside.host
    params["port"] = str(endpoint.inside.port)
    return make_conninfo(**params)  # type: ignore[arg-type]


class Stack:
    """One scenario's services. Build with the constructor, then :meth:`start` (or ``with``).

    Attributes used by scenarios: ``api_url``, ``db_dsn`` (direct), ``proxies`` (toxiproxy-python
    ``Proxy`` objects by name), ``fakeapi`` (:class:`FakeApiClient`), ``workers``, ``api``,
    ``postgres``, ``profile`` (the :class:`Profile`, seconds), ``env`` (the SUT's environment),
    ``logs_dir``, ``toxiproxy`` (its ``flavour`` goes into reports), ``seed``.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        profile: Profile,
        seed: int,
        name: str = "stack",
        logs_dir: Path | None = None,
        workers: int = 1,
        api: bool = True,
        defects: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.backend = backend
        self.profile = profile
        self.seed = seed
        self.name = name
        self.logs_dir = logs_dir or backend.workdir / f"logs-{_slug(name)}-{os.getpid()}"
        self.initial_workers = workers
        self.with_api = api
        self.defects = list(defects)
        self.extra_env = dict(extra_env or {})
        self.db_name = f"bp_{_slug(name)}_{next(_db_counter)}"
        self.postgres: PostgresService = backend.postgres
        self.toxiproxy: ToxiproxyService | None = None
        self.proxies: dict[str, Proxy] = {}
        self.proxy_endpoints: dict[str, Endpoint] = {}
        self.fakeapi_service: Service | None = None
        self._fakeapi: FakeApiClient | None = None
        self.api: Service | None = None
        self.workers: list[Service] = []
        self.env: dict[str, str] = {}
        self._worker_names = itertools.count(1)
        self._db_created = False
        self.timings: dict[str, float] = {}
        """Seconds each start-up step took (``database``, ``toxiproxy``, ``migrate``, ...)."""

    # -- addresses -----------------------------------------------------------------------

    @property
    def db_dsn(self) -> str:
        """The scenario's database, reached directly (not through Toxiproxy), for the harness."""
        return self.postgres.dsn(self.db_name)

    @property
    def api_url(self) -> str:
        """The SUT's HTTP API from the harness, e.g. ``http://127.0.0.1:41234``."""
        if self.api is None or self.api.endpoint is None:
            raise ServiceError("this stack has no API (started with api=False)")
        return f"http://{self.api.endpoint.outside}"

    @property
    def fakeapi(self) -> FakeApiClient:
        """Client for the fake joke API's control endpoints (direct, not through Toxiproxy)."""
        if self._fakeapi is None:
            raise ServiceError("the stack is not started: no fake API yet")
        return self._fakeapi

    @property
    def services(self) -> dict[str, Service]:
        """Every service by name: ``postgres``, ``fakeapi``, ``api``, ``w1``, ``w2``, ..."""
        found: dict[str, Service] = {"postgres": self.postgres}
        if self.fakeapi_service is not None:
            found["fakeapi"] = self.fakeapi_service
        if self.api is not None:
            found["api"] = self.api
        found.update({w.name: w for w in self.workers})
        return found

    def worker(self, name: str) -> Service:
        """The worker called ``name`` (``w1``, ``w2``, ...)."""
        for worker in self.workers:
            if worker.name == name:
                return worker
        raise KeyError(f"no worker {name!r}; workers: {', '.join(w.name for w in self.workers)}")

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> float:
        """Create the database, start and wire every service; return the seconds taken.

        On failure everything started so far is closed and the error is raised.
        """
        started = time.monotonic()
        try:
            self._start(timeout)
        except BaseException:
            self.close()
            raise
        self.timings["total"] = time.monotonic() - started
        return self.timings["total"]

    def _timed(self, step: str, action: Callable[[], Any]) -> Any:
        began = time.monotonic()
        result = action()
        self.timings[step] = time.monotonic() - began
        return result

    def _start(self, timeout: float) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.postgres.start(timeout=timeout)  # no-op if running (a killed one is brought back)
        self._db_created = True  # from here on close() drops it (if it exists)
        migrate_env = {
            **self.profile.env(),
            # the schema itself can carry a defect (plain-insert: no primary key)
            "BULLETPROOF_DEFECTS": ",".join(sorted(set(self.defects) & SCHEMA_DEFECTS)),
        }

        def migrate(dbname: str) -> None:
            self.backend.run_migrate(
                env={
                    **migrate_env,
                    "PROCRASTINATE_DATABASE_URL": self.postgres.dsn(dbname, inside=True),
                },
                log_path=self.logs_dir / "migrate.log",
                timeout=timeout,
            )

        def database() -> None:
            # migrate runs once per server and schema (the defects that change it), into a
            # template every later stack's database copies (setting up is not under test)
            key = migrate_env["BULLETPROOF_DEFECTS"]
            self.postgres.create_migrated_database(self.db_name, key=key, migrate=migrate)

        with ThreadPoolExecutor(max_workers=3) as pool:
            # Three independent boots in parallel (each ~0.3-1 s): the fake API, Toxiproxy, and
            # the database (migrated straight, not through Toxiproxy).
            fake = pool.submit(
                self._timed,
                "fakeapi",
                lambda: self.backend.start_fakeapi(
                    seed=self.seed, log_path=self.logs_dir / "fakeapi.log", timeout=timeout
                ),
            )
            tox = pool.submit(
                self._timed,
                "toxiproxy",
                lambda: self.backend.start_toxiproxy(
                    seed=self.seed, log_path=self.logs_dir / "toxiproxy.log"
                ),
            )
            db = pool.submit(self._timed, "database", database)
        # Keep whatever started (close() stops it), then raise the first failure.
        if fake.exception() is None:
            self.fakeapi_service = fake.result()
        if tox.exception() is None:
            self.toxiproxy = tox.result()
        for future in (tox, fake, db):
            error = future.exception()
            if error is not None:
                raise error
        assert self.fakeapi_service is not None
        self._add_proxy("postgres", self.postgres.endpoint)
        assert self.fakeapi_service.endpoint is not None
        self._fakeapi = FakeApiClient(f"http://{self.fakeapi_service.endpoint.outside}")
        self._add_proxy("jokeapi", self.fakeapi_service.endpoint)
        self.env = self._sut_env()
        to_start: list[Service] = []
        if self.with_api:
            self.api = self.backend.system_service(
                "api", name="api", env=self.env, log_path=self.logs_dir / "api.log"
            )
            to_start.append(self.api)
        for _ in range(self.initial_workers):
            to_start.append(self._new_worker())
        self._timed("sut", lambda: self._start_all(to_start, timeout))

    def _add_proxy(self, name: str, upstream: Endpoint | None) -> None:
        if upstream is None or self.toxiproxy is None:
            raise ServiceError(f"cannot proxy {name}: no address")
        proxy, listen = self.toxiproxy.create_proxy(name, upstream)
        self.proxies[name] = PinnedProxy(proxy, self.toxiproxy.api_url)
        self.proxy_endpoints[name] = listen

    def _sut_env(self) -> dict[str, str]:
        env = self.profile.env()
        pg = self.proxy_endpoints["postgres"]
        env["PROCRASTINATE_DATABASE_URL"] = with_host_port(
            self.postgres.dsn(self.db_name, inside=True), pg
        )
        if "jokeapi" in self.proxy_endpoints:
            env["API_BASE_URL"] = f"http://{self.proxy_endpoints['jokeapi'].inside}"
        env["BULLETPROOF_DEFECTS"] = ",".join(self.defects)
        env.update(self.extra_env)
        return env

    def _new_worker(self, name: str | None = None, env: Mapping[str, str] | None = None) -> Service:
        name = name or f"w{next(self._worker_names)}"
        if any(w.name == name for w in self.workers):
            raise ValueError(f"a worker named {name!r} already exists")
        worker = self.backend.system_service(
            "worker",
            name=name,
            env={**self.env, **(env or {})},
            log_path=self.logs_dir / f"worker-{name}.log",
        )
        self.workers.append(worker)
        return worker

    @staticmethod
    def _start_all(services: Sequence[Service], timeout: float) -> None:
        """Start services concurrently (each Python process takes ~1 s to boot)."""
        if not services:
            return
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            futures = [pool.submit(s.start, timeout=timeout) for s in services]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error

    def add_worker(
        self,
        name: str | None = None,
        *,
        start: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Service:
        """Add a worker (``w<N>`` unless named), started and ready unless ``start=False``."""
        worker = self._new_worker(name, env)
        if start:
            worker.start(timeout=timeout)
        return worker

    def close(self) -> None:
        """Kill the SUT, stop the fake API and Toxiproxy, drop the database. Idempotent.

        A PostgreSQL left stopped or killed by the scenario is started again: the next
        scenario shares it.
        """
        for service in [*self.workers, *([self.api] if self.api else [])]:
            with contextlib.suppress(Exception):
                service.close()
        if self.fakeapi_service is not None:
            with contextlib.suppress(Exception):
                self.fakeapi_service.close()
        if self.toxiproxy is not None:
            with contextlib.suppress(Exception):
                self.toxiproxy.close()
            self.toxiproxy = None
        if self._db_created:
            with contextlib.suppress(Exception):
                if not self.postgres.is_running():
                    self.postgres.start()
                self.postgres.drop_database(self.db_name)
            self._db_created = False

    def __enter__(self) -> Stack:
        if self.toxiproxy is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What a report needs to know about this stack (for the history's ``meta`` record)."""
        return {
            "backend": self.backend.name,
            "profile": self.profile.name,
            "settings": self.profile.as_dict(),
            "seed": self.seed,
            "toxiproxy": self.toxiproxy.flavour if self.toxiproxy else None,
            "workers": [w.name for w in self.workers],
            "defects": self.defects,
        }
