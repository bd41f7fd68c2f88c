"""Idempotency: duplicate submissions while the joke API returns the same joke every time.

The jobs run concurrently and all upsert the same ``joke_id``: exactly one row must remain
(``INSERT ... ON CONFLICT DO UPDATE``), and the repeated fetches of that joke are counted in
the report, not hidden. Mutation: with ``plain-insert`` (no primary key, plain INSERT) the
checker must fail ``no_duplicate_effects``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import psycopg
import pytest

from harness.checker import Verdict, check_no_duplicate_effects, check_queue_accounting
from harness.history import History
from harness.scenario import ScenarioFactory, ScenarioRun

TITLE = "Idempotency: duplicate submissions, the same joke every time"
CLAIMS = ["no_duplicate_effects", "no_duplicate_execution", "complete_or_fail"]


def duplicate_submissions(sc: ScenarioRun) -> Callable[[History], Sequence[Verdict]]:
    """Force one joke, submit the same request several times (the seed's Test 5)."""
    sc.stack.fakeapi.set_pool(1)
    sc.client.submit_many(sc.rng.randint(4, 6), category="dev")

    def checks(h: History) -> list[Verdict]:
        return [
            check_no_duplicate_effects(h),
            check_queue_accounting(h, expected_status="succeeded"),
        ]

    return checks


def test_idempotency(scenario: ScenarioFactory) -> None:
    with scenario("idempotency", title=TITLE, claims=CLAIMS) as sc:
        sc.finish(duplicate_submissions(sc))


def _has_primary_key(dsn: str) -> bool:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'chuck_norris_jokes'::regclass"
            " AND contype = 'p'"
        ).fetchone()
    return bool(row and row[0])


def test_idempotency__defect_plain_insert(scenario: ScenarioFactory) -> None:
    with scenario(
        "idempotency__defect_plain_insert",
        title=f"{TITLE}, upsert replaced by a plain INSERT without primary key (defect)",
        defects=["plain-insert"],
        expect="fail",
        expect_failing=["no_duplicate_effects"],
    ) as sc:
        if _has_primary_key(sc.stack.db_dsn):
            pytest.fail(
                "the plain-insert defect is not in place: chuck_norris_jokes has a primary key, "
                "so migrate ran without BULLETPROOF_DEFECTS (docs/DESIGN.md: every SUT process, "
                "migrate included, gets them)",
                pytrace=False,
            )
        sc.finish(duplicate_submissions(sc))
