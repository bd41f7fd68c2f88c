"""Shared fixtures: one real PostgreSQL per session, a fresh database per test, the fake joke API.

Set ``PROCRASTINATE_DATABASE_URL`` to use an existing server instead: each test then gets a fresh
database created on that server (the URL's user must be allowed to create databases).
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from harness.fakeapi.client import FakeApiClient
from harness.postgres import LocalPostgres, PostgresError
from harness.processes import ManagedProcess, log_line

_counter = itertools.count()


class ExternalPostgres:
    """A server the user already runs, reached through ``PROCRASTINATE_DATABASE_URL``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        params = conninfo_to_dict(self.url)
        params["dbname"] = name
        return make_conninfo(**params)  # type: ignore[arg-type]

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A private PostgreSQL server for the whole test session (initdb once)."""
    try:
        server = LocalPostgres()
        server.start()
    except PostgresError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN of a fresh, empty database for this test (dropped afterwards)."""
    url = os.environ.get("PROCRASTINATE_DATABASE_URL")
    server: LocalPostgres | ExternalPostgres
    server = ExternalPostgres(url) if url else request.getfixturevalue("postgres")
    if isinstance(server, LocalPostgres) and not server.is_running():
        server.start()  # a test that stopped it and failed must not fail every later test
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40].strip("_")
    name = f"t{next(_counter)}_{slug}"
    dsn = server.create_database(name)
    try:
        yield dsn
    finally:
        server.drop_database(name)


LISTENING = r"fakeapi: listening on (http://\S+)"


@pytest.fixture(scope="module")
def fakeapi_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real fake-API server process for the module."""
    tmp = tmp_path_factory.mktemp("fakeapi")
    proc = ManagedProcess(
        "fakeapi",
        [sys.executable, "-m", "harness.fakeapi", "--port", "0", "--seed", "11"],
        log_path=tmp / "fakeapi.log",
        ready=log_line(LISTENING),
    )
    proc.start(timeout=30)
    try:
        match = re.search(LISTENING, proc.output())
        assert match is not None
        yield match.group(1)
    finally:
        proc.close()


@pytest.fixture
def jokeapi(fakeapi_url: str) -> Iterator[FakeApiClient]:
    """Control client of the fake API, reset before and after each test."""
    client = FakeApiClient(fakeapi_url)
    client.reset()
    yield client
    client.reset()
