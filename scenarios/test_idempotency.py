"""Idempotency: duplicate submissions while the joke API returns the same joke every time.

The jobs run concurrently and all upsert the same ``joke_id``: exactly one row must remain
(``INSERT ... ON CONFLICT DO UPDATE``), every succeeded job must have recorded its effect
(job -> joke, written in the same transaction), and the repeated fetches of that joke are
counted in the report, not hidden. Mutations: ``plain-insert`` (no primary key, plain
INSERT), ``ack-without-queue`` (the API acknowledges jobs it never queues) and
``succeed-without-store`` (a job reported succeeded without its row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import psycopg
import pytest

from harness.checker import Verdict
from harness.checks import baseline
from harness.history import History
from harness.mutation import mutants
from harness.scenario import ScenarioFactory, ScenarioRun
from system.defects import Defect

TITLE = "Idempotency: duplicate submissions, the same joke every time"
CLAIMS = ["no_duplicate_effects", "no_duplicate_execution", "complete_or_fail"]


def duplicate_submissions(sc: ScenarioRun) -> Callable[[History], Sequence[Verdict]]:
    """Force one joke, submit the same request several times (the seed's Test 5)."""
    p = sc.profile
    sc.stack.fakeapi.set_pool(1)
    sc.client.submit_many(sc.rng.randint(4, 6), category="dev")

    def checks(h: History) -> list[Verdict]:
        return baseline(
            h, expected_status="succeeded", smallest=p.worker_timeout, what="job completion"
        )

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


MUTANTS = [
    (Defect.PLAIN_INSERT, ["no_duplicate_effects"]),
    (Defect.ACK_WITHOUT_QUEUE, ["queue_accounting"]),
    (Defect.SUCCEED_WITHOUT_STORE, ["job_effects"]),
]


@pytest.mark.parametrize(
    ("defect", "failing"), mutants("idempotency", MUTANTS, subset=[Defect.SUCCEED_WITHOUT_STORE])
)
def test_idempotency_mutant(scenario: ScenarioFactory, defect: Defect, failing: list[str]) -> None:
    with scenario("idempotency", title=TITLE, defect=defect, expect_failing=failing) as sc:
        if defect is Defect.PLAIN_INSERT and _has_primary_key(sc.stack.db_dsn):
            pytest.fail(
                "the plain-insert defect is not in place: chuck_norris_jokes has a primary key, "
                "so migrate ran without BULLETPROOF_DEFECTS (docs/DESIGN.md: every SUT process, "
                "migrate included, gets them)",
                pytrace=False,
            )
        sc.finish(duplicate_submissions(sc))
