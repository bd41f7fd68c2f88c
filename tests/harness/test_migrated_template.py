"""Stacks' databases copy a template migrated once per schema (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from harness.backends.base import template_name
from harness.backends.local import LocalPostgresService
from harness.postgres import LocalPostgres

KEYS = ("test-a", "test-b", "test-c")  # not a schema key a stack uses on this server


@pytest.fixture
def service(postgres: LocalPostgres) -> Iterator[LocalPostgresService]:
    svc = LocalPostgresService(postgres, owned=False)
    yield svc
    for name in [*map(template_name, KEYS), "tpl_copy_1", "tpl_copy_2", "tpl_copy_3"]:
        svc.drop_database(name)


def _tables(postgres: LocalPostgres, db: str) -> set[str]:
    with psycopg.connect(postgres.dsn(db)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows.fetchall()}


def test_migrate_runs_once_per_key_and_every_copy_has_the_schema(
    service: LocalPostgresService, postgres: LocalPostgres
) -> None:
    calls: list[str] = []

    def migrate(db: str) -> None:
        calls.append(db)
        with psycopg.connect(postgres.dsn(db), autocommit=True) as conn:
            conn.execute("CREATE TABLE jokes (id text PRIMARY KEY)")

    assert service.create_migrated_database("tpl_copy_1", key="test-a", migrate=migrate)
    assert not service.create_migrated_database("tpl_copy_2", key="test-a", migrate=migrate)
    assert service.create_migrated_database("tpl_copy_3", key="test-b", migrate=migrate)
    assert len(calls) == 2 and calls[0] != calls[1]  # one template per key
    for db in ("tpl_copy_1", "tpl_copy_2", "tpl_copy_3"):
        assert _tables(postgres, db) == {"jokes"}
    # copies are independent: a write to one is not in the next
    with psycopg.connect(postgres.dsn("tpl_copy_1"), autocommit=True) as conn:
        conn.execute("INSERT INTO jokes VALUES ('x')")
    service.create_migrated_database("tpl_copy_2", key="test-a", migrate=migrate)
    with psycopg.connect(postgres.dsn("tpl_copy_2")) as conn:
        assert conn.execute("SELECT count(*) FROM jokes").fetchone() == (0,)


def test_a_failed_migrate_leaves_no_template_and_is_run_again(
    service: LocalPostgresService, postgres: LocalPostgres
) -> None:
    def broken(db: str) -> None:
        raise RuntimeError("migrate: exit code 1")

    with pytest.raises(RuntimeError, match="exit code 1"):
        service.create_migrated_database("tpl_copy_1", key="test-c", migrate=broken)
    calls: list[str] = []
    service.create_migrated_database("tpl_copy_1", key="test-c", migrate=calls.append)
    assert len(calls) == 1


def test_a_template_dropped_behind_its_back_is_made_again(
    service: LocalPostgresService, postgres: LocalPostgres
) -> None:
    calls: list[str] = []
    service.create_migrated_database("tpl_copy_1", key="test-a", migrate=calls.append)
    service.drop_database(template_name("test-a"))
    assert service.create_migrated_database("tpl_copy_2", key="test-a", migrate=calls.append)
    assert len(calls) == 2
