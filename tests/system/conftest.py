"""Fixtures for the SUT's integration tests: a `Sut` helper (fake API: tests/conftest.py).

`Sut` starts real ``python -m system ...`` processes against a fresh database (``pg_dsn``),
with the ``fast`` timing profile, and reads the database directly to check outcomes.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from harness.fakeapi.client import FakeApiClient
from harness.ports import free_port
from harness.postgres import LocalPostgres
from harness.processes import ManagedProcess, ReadyCheck, http_ok, log_line
from harness.profiles import FAST
from harness.wait import wait_for
from system.settings import load_settings
from system.tasks import FETCH_TASK, build_app


class Sut:
    """The system under test for one test: env, processes, and database reads."""

    def __init__(self, dsn: str, api_url: str, tmp: Path) -> None:
        self.dsn = dsn
        self.api_url = api_url
        self.tmp = tmp
        self.procs: list[ManagedProcess] = []
        self.overrides: dict[str, str] = {}

    def env(self, **overrides: str) -> dict[str, str]:
        env = FAST.env()
        env.update(
            PROCRASTINATE_DATABASE_URL=self.dsn,
            API_BASE_URL=self.api_url,
            BULLETPROOF_DEFECTS="",
        )
        env.update(self.overrides)
        env.update(overrides)
        return env

    def setting(self, name: str) -> float:
        value = getattr(load_settings(self.env()), name)
        assert isinstance(value, int | float)
        return float(value)

    def process(
        self, name: str, argv: list[str], ready: ReadyCheck | None, **overrides: str
    ) -> ManagedProcess:
        proc = ManagedProcess(
            name,
            [sys.executable, "-m", "system", *argv],
            log_path=self.tmp / f"{name}.log",
            env=self.env(**overrides),
            ready=ready,
        )
        self.procs.append(proc)
        return proc

    def migrate(self, **overrides: str) -> None:
        proc = self.process(f"migrate{len(self.procs)}", ["migrate"], None, **overrides)
        proc.start(timeout=30)
        code = proc.wait_exit(timeout=60)
        assert code == 0, proc.tail(10)

    def worker(self, name: str, *, wait_ready: bool = True, **overrides: str) -> ManagedProcess:
        ready = log_line(rf"bulletproof: worker ready name={re.escape(name)}\b")
        proc = self.process(
            name, ["worker", "--name", name], ready if wait_ready else None, **overrides
        )
        proc.start(timeout=60)
        return proc

    # -- database ------------------------------------------------------------------------
    def defer(self, count: int = 1, **kwargs: Any) -> list[int]:
        app = build_app(load_settings(self.env()))
        with app.open():
            task = app.configure_task(FETCH_TASK)
            return [task.defer(**kwargs) for _ in range(count)]

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            cur = conn.cursor(row_factory=dict_row)
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def job(self, job_id: int) -> dict[str, Any]:
        rows = self.query(
            "SELECT id, status::text AS status, attempts FROM procrastinate_jobs WHERE id = %s",
            (job_id,),
        )
        assert rows, f"no job {job_id}"
        return rows[0]

    def events(self, job_id: int) -> list[tuple[str, float]]:
        rows = self.query(
            "SELECT type::text AS type, EXTRACT(EPOCH FROM at)::float8 AS t "
            "FROM procrastinate_events WHERE job_id = %s ORDER BY at, id",
            (job_id,),
        )
        return [(r["type"], r["t"]) for r in rows]

    def statuses(self, job_ids: list[int]) -> dict[int, str]:
        rows = self.query(
            "SELECT id, status::text AS status FROM procrastinate_jobs WHERE id = ANY(%s)",
            (job_ids,),
        )
        return {r["id"]: r["status"] for r in rows}

    def wait_status(
        self, job_ids: list[int], wanted: set[str], *, timeout: float
    ) -> dict[int, str]:
        def reached() -> dict[int, str] | None:
            current = self.statuses(job_ids)
            return current if all(current.get(j) in wanted for j in job_ids) else None

        return wait_for(
            reached,
            timeout=timeout,
            what=f"jobs {job_ids} to be {'/'.join(sorted(wanted))}",
            interval=0.05,
            ignore=(psycopg.OperationalError,),
        ).value

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.close()


@pytest.fixture
def local_pg(postgres: LocalPostgres) -> Iterator[LocalPostgres]:
    """The session's server, for tests that stop it; always running again afterwards."""
    if os.environ.get("PROCRASTINATE_DATABASE_URL"):
        pytest.skip("stops the server: needs the test session's own PostgreSQL")
    try:
        yield postgres
    finally:
        if not postgres.is_running():
            postgres.start()


@pytest.fixture
def sut(pg_dsn: str, fakeapi_url: str, jokeapi: FakeApiClient, tmp_path: Path) -> Iterator[Sut]:
    """A migrated database and a way to start SUT processes; everything stopped afterwards."""
    system = Sut(pg_dsn, fakeapi_url, tmp_path)
    try:
        yield system
    finally:
        system.close()


# -- one API server for a whole module (hostile-input tests, Schemathesis) -------------------


@pytest.fixture(scope="module")
def module_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for a whole test module, on the session's server (or the one
    ``PROCRASTINATE_DATABASE_URL`` names), dropped afterwards."""
    name = "m_" + re.sub(r"[^a-z0-9]+", "_", request.module.__name__.lower())[-40:].strip("_")
    url = os.environ.get("PROCRASTINATE_DATABASE_URL")
    if url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        params = conninfo_to_dict(url)
        params["dbname"] = name
        dsn = make_conninfo(**params)  # type: ignore[arg-type]
    else:
        server = request.getfixturevalue("postgres")
        if not server.is_running():
            server.start()  # a test that stopped it and failed must not fail every later test
        dsn = server.create_database(name)
    try:
        yield dsn
    finally:
        if url:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            request.getfixturevalue("postgres").drop_database(name)


class ApiServer:
    """``python -m system api`` (with its in-process worker) on a free loopback port."""

    def __init__(self, sut: Sut, **overrides: str) -> None:
        self.sut = sut
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.proc = sut.process(
            "api",
            ["api", "--port", str(port), "--name", "api-worker"],
            http_ok(f"{self.url}/health", statuses=(200, 503)),
            **overrides,
        )

    def start(self) -> ApiServer:
        self.sut.migrate()
        self.proc.start(timeout=60)
        return self

    def close(self) -> None:
        self.sut.close()


@pytest.fixture(scope="module")
def module_api(
    request: pytest.FixtureRequest,
    module_dsn: str,
    fakeapi_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiServer]:
    """One :class:`ApiServer` for the module, with the module's ``API_ENV`` settings;
    stopped (and its processes killed) afterwards."""
    overrides: dict[str, str] = getattr(request.module, "API_ENV", {})
    tmp = tmp_path_factory.mktemp("api")
    server = ApiServer(Sut(module_dsn, fakeapi_url, tmp), **overrides)
    try:
        yield server.start()
    finally:
        server.close()
