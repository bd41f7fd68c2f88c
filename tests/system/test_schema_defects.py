"""Which defects change the schema: the harness copies one migrated database per set of
``SCHEMA_DEFECTS``, so a defect missing from that set would run against the wrong schema."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from harness.postgres import LocalPostgres
from harness.profiles import FAST
from system import db
from system.defects import SCHEMA_DEFECTS, Defect
from system.settings import load_settings
from system.tasks import build_app

SCHEMA = """
SELECT 'column', table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'function', proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
ORDER BY 1, 2
"""


def _schema(postgres: LocalPostgres, name: str, defects: str) -> list[tuple[str, str]]:
    dsn = postgres.create_database(name)
    try:
        env = {**FAST.env(), "PROCRASTINATE_DATABASE_URL": dsn, "BULLETPROOF_DEFECTS": defects}
        settings = load_settings(env)
        asyncio.run(db.migrate(settings, build_app(settings)))
        with psycopg.connect(dsn) as conn:
            return [(str(k), str(v)) for k, v in conn.execute(SCHEMA).fetchall()]
    finally:
        postgres.drop_database(name)


@pytest.fixture(scope="module")
def base(postgres: LocalPostgres) -> list[tuple[str, str]]:
    return _schema(postgres, "schema_base", "")


@pytest.mark.parametrize("defect", list(Defect), ids=str)
def test_a_defect_changes_the_schema_only_if_it_is_a_schema_defect(
    postgres: LocalPostgres, base: list[tuple[str, str]], defect: Defect
) -> None:
    with_defect = _schema(postgres, "schema_defect", defect.value)
    assert (with_defect != base) == (defect in SCHEMA_DEFECTS), (
        f"{defect}: schema {'unchanged' if with_defect == base else 'changed'}"
    )
