"""How a stalled run is settled: retried, or finished when a retry would be wrong.

A stalled run's worker is gone, so nothing wrote its outcome. Re-queuing it is right unless
the run had already stored its effect (a second run would do the work twice; the job
would even end ``failed`` with its effect if the later runs failed) or it was the job's last
allowed run (a retry would run it ``max_attempts + 1`` times). Both were found by random
schedules (a worker frozen or cut off from the database on a job's fifth run).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import psycopg_pool
import pytest

from harness.fakeapi.client import FakeApiClient
from system import db

if TYPE_CHECKING:
    from conftest import Sut  # the fixture's class (tests/system/conftest.py)

pytestmark = pytest.mark.integration


def stalled_job(sut: Sut, *, attempts: int, effect: str | None = None) -> int:
    """A job left ``doing`` by a worker that is gone, on its run ``attempts + 1``."""
    [job_id] = sut.defer()
    sut.query(
        "UPDATE procrastinate_jobs SET status = 'doing', attempts = %s, worker_id = NULL "
        "WHERE id = %s",
        (attempts, job_id),
    )
    if effect is not None:
        sut.query(
            f"INSERT INTO {db.JOB_EFFECTS_TABLE} (job_id, joke_id) VALUES (%s, %s)",
            (job_id, effect),
        )
    return job_id


def settle(sut: Sut, job_id: int, *, attempts: int, runs_allowed: int | None) -> str | None:
    async def run() -> str | None:
        async with psycopg_pool.AsyncConnectionPool(sut.dsn, min_size=1, open=False) as pool:
            return await db.recover_stalled_job(
                pool,
                job_id=job_id,
                attempts=attempts,
                worker_id=None,
                threshold=1.0,
                runs_allowed=runs_allowed,
            )

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("attempts", "effect", "outcome", "status"),
    [
        (0, None, "retried", "todo"),
        (3, None, "retried", "todo"),  # run 4 of 5 stalled: run 5 is still allowed
        (4, None, "failed", "failed"),  # run 5 of 5 stalled: a retry would be run 6
        (1, "joke-7", "succeeded", "succeeded"),  # stored before its worker went silent
        (4, "joke-7", "succeeded", "succeeded"),  # the effect wins over the run count
    ],
)
def test_a_stalled_run_is_settled_by_its_effect_and_its_run_count(
    sut: Sut, attempts: int, effect: str | None, outcome: str, status: str
) -> None:
    sut.migrate()
    job_id = stalled_job(sut, attempts=attempts, effect=effect)
    assert settle(sut, job_id, attempts=attempts, runs_allowed=5) == outcome
    assert sut.job(job_id)["status"] == status
    recorded = sut.query(f"SELECT attempts FROM {db.RECOVERIES_TABLE} WHERE job_id = %s", (job_id,))
    assert recorded == [{"attempts": attempts}]


def test_a_run_that_moved_on_is_left_alone(sut: Sut) -> None:
    sut.migrate()
    job_id = stalled_job(sut, attempts=2)
    # another recovery (or the run itself) got there first: the attempt is no longer 2
    assert settle(sut, job_id, attempts=1, runs_allowed=5) is None
    assert sut.job(job_id)["status"] == "doing"
    assert sut.query(f"SELECT 1 FROM {db.RECOVERIES_TABLE} WHERE job_id = %s", (job_id,)) == []


def test_without_a_known_bound_a_stalled_run_is_retried(sut: Sut) -> None:
    sut.migrate()
    job_id = stalled_job(sut, attempts=40)
    assert settle(sut, job_id, attempts=40, runs_allowed=None) == "retried"
    assert sut.job(job_id)["status"] == "todo"


def test_a_run_of_a_job_whose_effect_is_stored_does_not_fetch_again(
    sut: Sut, jokeapi: FakeApiClient
) -> None:
    # what a stalled recovery that predates the effect check (or a re-run after a lost status
    # write) meets: the work is done, the run must not call the API or store again
    sut.migrate()
    [job_id] = sut.defer()
    sut.query(
        f"INSERT INTO {db.JOB_EFFECTS_TABLE} (job_id, joke_id) VALUES (%s, 'joke-7')", (job_id,)
    )
    before = len(jokeapi.requests())
    worker = sut.worker("w1")
    sut.wait_status([job_id], {"succeeded"}, timeout=20)
    assert len(jokeapi.requests()) == before
    assert f"Job {job_id}: joke joke-7 was stored by an earlier run: done" in worker.output()
