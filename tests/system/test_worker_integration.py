"""The SUT with real processes, signals, PostgreSQL and sockets (the issue's Tests section).

Timings come from the ``fast`` profile (base delay 0.2 s, heartbeat 0.2 s, stall threshold
2 s, poll 50 ms); tolerances are explicit and generous enough for a loaded 2-core machine.
"""

from __future__ import annotations

import re
import signal
import time
from typing import TYPE_CHECKING

import pytest

from harness.fakeapi.client import FakeApiClient
from harness.postgres import LocalPostgres
from harness.wait import wait_for
from system.db import JOB_EFFECTS_TABLE
from system.promises import session_teardown_limit

if TYPE_CHECKING:
    from conftest import Sut  # the fixture's class (tests/system/conftest.py)

pytestmark = pytest.mark.integration

#: Scheduling slack on top of the poll interval, for a machine other tests also load.
SLACK = 0.6


def starts(events: list[tuple[str, float]]) -> list[float]:
    return [t for kind, t in events if kind == "started"]


def test_migrate_is_idempotent(sut: Sut) -> None:
    sut.migrate()
    sut.migrate()
    rows = sut.query(
        "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS jobs, "
        "to_regclass('chuck_norris_jokes') IS NOT NULL AS jokes, "
        "to_regclass(%s) IS NOT NULL AS effects",
        (JOB_EFFECTS_TABLE,),
    )
    assert rows == [{"jobs": True, "jokes": True, "effects": True}]


def test_concurrent_migrations_all_succeed(sut: Sut) -> None:
    procs = [sut.process(f"migrate{i}", ["migrate"], None) for i in range(3)]
    for proc in procs:
        proc.start(timeout=30)
    codes = [proc.wait_exit(timeout=60) for proc in procs]
    assert codes == [0, 0, 0], [proc.tail(5) for proc in procs]
    [row] = sut.query("SELECT to_regclass(%s) IS NOT NULL AS effects", (JOB_EFFECTS_TABLE,))
    assert row["effects"]


def test_failing_upstream_runs_max_attempts_at_backoff_spacing_then_fails(
    sut: Sut, jokeapi: FakeApiClient
) -> None:
    sut.overrides["MAX_RETRIES"] = "4"
    sut.migrate()
    jokeapi.status(503, count=100)
    sut.worker("w1")
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"failed"}, timeout=20)

    events = sut.events(job_id)
    run_starts = starts(events)
    assert len(run_starts) == 4, events
    assert [k for k, _ in events].count("deferred_for_retry") == 3
    assert sut.job(job_id)["attempts"] == 4
    calls = [r for r in jokeapi.requests() if r["path"].startswith("/jokes/random")]
    assert len(calls) == 4

    base, cap = sut.setting("retry_base_delay"), sut.setting("retry_max_delay")
    poll = sut.setting("worker_poll_interval")
    retried_at = [t for kind, t in events if kind == "deferred_for_retry"]
    for k, (decided, started) in enumerate(zip(retried_at, run_starts[1:], strict=True), 1):
        expected = min(base * 2 ** (k - 1), cap)
        observed = started - decided
        assert expected - 0.05 <= observed <= expected + poll + SLACK, (k, observed, expected)


def test_timeout_is_retried(sut: Sut, jokeapi: FakeApiClient) -> None:
    sut.migrate()
    jokeapi.slow(4.0, count=1)
    worker = sut.worker("w1")
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"succeeded"}, timeout=15)

    assert sut.job(job_id)["attempts"] == 2
    events = sut.events(job_id)
    first_start = starts(events)[0]
    retried = next(t for kind, t in events if kind == "deferred_for_retry")
    timeout = sut.setting("job_timeout")
    assert timeout - 0.05 <= retried - first_start <= timeout + SLACK
    assert f"Job {job_id}: API timeout on attempt 1" in worker.output()


def test_malformed_payload_fails_at_once(sut: Sut, jokeapi: FakeApiClient) -> None:
    sut.migrate()
    jokeapi.malformed(count=1)
    worker = sut.worker("w1")
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"failed"}, timeout=15)
    assert sut.job(job_id)["attempts"] == 1
    assert "deferred_for_retry" not in [kind for kind, _ in sut.events(job_id)]
    assert f"Job {job_id}: permanent failure on attempt 1: malformed payload" in worker.output()


def test_worker_waits_for_the_schema_and_says_what_to_do(sut: Sut) -> None:
    worker = sut.worker("w1", wait_ready=False)
    wait_for(
        lambda: "run `python -m system migrate`" in worker.output(),
        timeout=20,
        what="the worker to ask for a migration",
    )
    sut.migrate()
    wait_for(
        lambda: "bulletproof: worker ready name=w1" in worker.output(),
        timeout=15,
        what="the worker to start once the schema exists",
    )


@pytest.mark.parametrize(("defects", "rows"), [("", 1), ("plain-insert", 20)])
def test_concurrent_upserts_of_one_joke_leave_one_row(
    sut: Sut, jokeapi: FakeApiClient, defects: str, rows: int
) -> None:
    """With the deliberate plain-insert defect the same test sees 20 rows: it can fail."""
    sut.overrides["BULLETPROOF_DEFECTS"] = defects
    sut.migrate()
    jokeapi.set_pool(1)  # every request returns the same joke
    worker = sut.worker("w1")
    job_ids = sut.defer(20)
    sut.wait_status(job_ids, {"succeeded"}, timeout=30)
    stored = sut.query("SELECT joke_id, count(*) AS n FROM chuck_norris_jokes GROUP BY joke_id")
    assert len(stored) == 1
    assert stored[0]["n"] == rows
    # every job records its effect, in the upsert's transaction, with or without the defect
    effects = sut.query(f"SELECT job_id, joke_id FROM {JOB_EFFECTS_TABLE}")
    assert sorted(e["job_id"] for e in effects) == sorted(job_ids)
    assert {e["joke_id"] for e in effects} == {stored[0]["joke_id"]}
    if not defects:
        [row] = sut.query("SELECT fetch_count FROM chuck_norris_jokes")
        assert row["fetch_count"] == 20
    else:
        assert "DELIBERATE DEFECTS ENABLED: plain-insert" in worker.output()


def test_succeed_without_store_defect_leaves_succeeded_jobs_without_their_row(
    sut: Sut, jokeapi: FakeApiClient
) -> None:
    sut.overrides["BULLETPROOF_DEFECTS"] = "succeed-without-store"
    sut.migrate()
    sut.worker("w1")
    job_ids = sut.defer(4)
    sut.wait_status(job_ids, {"succeeded"}, timeout=30)
    effects = {e["job_id"] for e in sut.query(f"SELECT job_id FROM {JOB_EFFECTS_TABLE}")}
    assert effects == {j for j in job_ids if j % 2}  # even ids skipped the write
    [row] = sut.query("SELECT count(*) AS n FROM chuck_norris_jokes")
    assert row["n"] == len(effects)


def test_sigkilled_workers_job_is_recovered_by_retry_stalled_jobs(
    sut: Sut, jokeapi: FakeApiClient
) -> None:
    sut.overrides["JOB_TIMEOUT"] = "10s"
    sut.migrate()
    jokeapi.slow(6.0, count=1)
    first = sut.worker("w1")
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"doing"}, timeout=10)
    first.kill()  # SIGKILL: no chance to re-queue anything
    [killed_at] = sut.query("SELECT EXTRACT(EPOCH FROM now())::float8 AS t")

    second = sut.worker("w2")
    sut.wait_status([job_id], {"succeeded"}, timeout=20)
    assert sut.job(job_id)["attempts"] == 2
    recovered = sut.query(
        "SELECT EXTRACT(EPOCH FROM recovered_at)::float8 AS t FROM bulletproof_stalled_recoveries "
        "WHERE job_id = %s",
        (job_id,),
    )
    assert len(recovered) == 1
    threshold = sut.setting("stalled_job_threshold")
    heartbeat = sut.setting("worker_heartbeat_interval")
    check = sut.setting("stalled_job_check_interval")
    latency = recovered[0]["t"] - killed_at["t"]
    # the last heartbeat was at most one interval before the kill
    assert threshold - heartbeat - 0.05 <= latency <= threshold + check + 2 * SLACK, latency
    assert f"Stalled job {job_id} (" in second.output()
    assert "successfully retried" in second.output()


def test_sigterm_finishes_or_requeues_and_leaves_nothing_doing(
    sut: Sut, jokeapi: FakeApiClient
) -> None:
    sut.overrides.update(JOB_TIMEOUT="10s", WORKER_TIMEOUT="2s", STALLED_JOB_THRESHOLD="3s")
    sut.migrate()
    worker = sut.worker("w1")
    jokeapi.slow(1.2, count=2)
    quick = sut.defer(2)
    sut.wait_status(quick, {"doing"}, timeout=10)
    wait_for(lambda: not jokeapi.faults(), timeout=5, what="both slow requests to arrive")
    jokeapi.slow(8.0, count=2)
    slow = sut.defer(2)
    sut.wait_status(slow, {"doing"}, timeout=10)

    sent = time.monotonic()
    worker.terminate()
    code = worker.wait_exit(timeout=15)
    elapsed = time.monotonic() - sent
    assert code == 0, worker.tail(10)
    graceful = sut.setting("worker_timeout")
    assert graceful - 0.1 <= elapsed <= graceful + 4.0, elapsed

    assert sut.statuses(quick) == dict.fromkeys(quick, "succeeded")
    assert sut.statuses(slow) == dict.fromkeys(slow, "todo")
    assert sut.query("SELECT id FROM procrastinate_jobs WHERE status = 'doing'") == []
    # the re-queued jobs run again on the next worker
    sut.worker("w2")
    sut.wait_status(slow, {"succeeded"}, timeout=15)


def test_worker_survives_a_postgres_restart(
    sut: Sut, local_pg: LocalPostgres, jokeapi: FakeApiClient
) -> None:
    sut.migrate()
    worker = sut.worker("w1")
    before = sut.defer(3)
    sut.wait_status(before, {"succeeded"}, timeout=10)
    local_pg.restart()
    after = sut.defer(3)
    sut.wait_status(after, {"succeeded"}, timeout=20)
    assert worker.is_running()


def test_a_postgres_crash_ends_the_session_at_once_and_it_resumes_at_once(
    sut: Sut, local_pg: LocalPostgres, jokeapi: FakeApiClient
) -> None:
    """Neither noticing the crash nor resuming waits for the pool: psycopg_pool's own backoff
    (1, 2, 4 s ...) kept a heartbeat without a connection for 4 s after PostgreSQL was back."""
    sut.overrides["DB_POOL_TIMEOUT"] = "10s"  # far above what either step may take
    sut.migrate()
    worker = sut.worker("w1")
    heartbeat = sut.setting("worker_heartbeat_interval")
    local_pg.kill()
    down = time.monotonic()
    wait_for(
        lambda: "worker session lost" in worker.output(),
        timeout=20,
        what="the worker to notice the crash",
    )
    noticed = time.monotonic() - down
    local_pg.start()
    up = time.monotonic()
    wait_for(
        lambda: "database back: worker resumed name=w1" in worker.output(),
        timeout=15,
        what="the worker to resume",
    )
    resumed = time.monotonic() - up
    print(f"\ncrash noticed after {noticed:.2f}s, resumed {resumed:.2f}s after the restart")
    # a heartbeat interval (plus a loaded machine's second) to notice; the supervisor's first
    # delays (0.1, 0.2, 0.4 ... 1 s) to resume, never the 10 s pool timeout
    assert noticed <= heartbeat + 1.0, noticed
    assert resumed <= 3.0, resumed
    job_ids = sut.defer(2)
    sut.wait_status(job_ids, {"succeeded"}, timeout=10)


def test_a_lost_session_ends_within_the_teardown_limit(
    sut: Sut, local_pg: LocalPostgres, jokeapi: FakeApiClient
) -> None:
    """Jobs in flight, then PostgreSQL crashes and stays away: stopping the worker, its
    database writes, cancelling it, closing the pool and the HTTP client all share one limit
    (``session_teardown_limit``: the harness's budgets count on it). Each of those steps had
    its own 2-3 s wait on top of the limit: a 0.2 s crash once kept a worker out for 6 s."""
    sut.overrides["JOB_TIMEOUT"] = "10s"  # the jobs are still running when the session ends
    sut.migrate()
    worker = sut.worker("w1")
    limit = session_teardown_limit(sut.setting("worker_timeout"), sut.setting("db_pool_timeout"))
    jokeapi.slow(5.0, count=3)
    jobs = sut.defer(3)
    sut.wait_status(jobs, {"doing"}, timeout=10)
    local_pg.kill()
    ended = wait_for(
        lambda: re.search(r"lost session ended in ([0-9.]+)s", worker.output()),
        timeout=limit + 10,
        what="the lost session to end",
    )
    took = float(ended.value.group(1))
    print(f"\nlost session ended in {took:.2f}s, limit {limit:.2f}s")
    assert took <= limit + SLACK, (took, limit)
    local_pg.start()
    sut.wait_status(jobs, {"succeeded"}, timeout=30)
    assert worker.is_running()


def test_outage_longer_than_pool_timeout_loses_nothing(
    sut: Sut, local_pg: LocalPostgres, jokeapi: FakeApiClient
) -> None:
    """A job whose final write fails while the database is away still ends succeeded."""
    sut.overrides["JOB_TIMEOUT"] = "10s"
    sut.migrate()
    worker = sut.worker("w1")
    jokeapi.slow(1.0, count=1)
    [caught] = sut.defer()
    sut.wait_status([caught], {"doing"}, timeout=10)
    local_pg.stop()
    down = time.monotonic()
    pool_timeout = sut.setting("db_pool_timeout")
    wait_for(
        lambda: (
            time.monotonic() - down > 2 * pool_timeout
            and worker.output().count("database unavailable") >= 2
        ),
        timeout=30,
        what="an outage twice the pool timeout, seen by the worker",
    )
    assert worker.is_running()
    local_pg.start()
    wait_for(
        lambda: "database back: worker resumed name=w1" in worker.output(),
        timeout=15,
        what="the worker to resume",
    )
    sut.wait_status([caught], {"succeeded"}, timeout=15)
    assert sut.job(caught)["attempts"] >= 2  # the first run's write failed: it ran again
    later = sut.defer(2)
    sut.wait_status(later, {"succeeded"}, timeout=15)
    assert worker.is_running()


def test_database_down_at_start_is_waited_for_without_traceback(
    sut: Sut, local_pg: LocalPostgres, jokeapi: FakeApiClient
) -> None:
    sut.migrate()
    local_pg.stop()
    worker = sut.worker("w1", wait_ready=False)
    wait_for(
        lambda: worker.output().count("database unavailable") >= 3,
        timeout=20,
        what="the worker to report the database unavailable",
    )
    assert worker.is_running()
    assert "Traceback" not in worker.output()
    local_pg.start()
    wait_for(
        lambda: "bulletproof: worker ready name=w1" in worker.output(),
        timeout=15,
        what="the worker to become ready",
    )
    job_ids = sut.defer(2)
    sut.wait_status(job_ids, {"succeeded"}, timeout=15)


def test_no_db_supervision_defect_exits_when_the_database_goes(
    sut: Sut, local_pg: LocalPostgres
) -> None:
    """The deliberate defect shows what supervision buys: without it the worker is gone."""
    sut.migrate()
    worker = sut.worker("w1", BULLETPROOF_DEFECTS="no-db-supervision")
    local_pg.stop()
    assert worker.wait_exit(timeout=30) == 1
    assert "DEFECT no-db-supervision: exiting" in worker.output()


def test_sigint_stops_gracefully_and_unregisters_the_worker(sut: Sut) -> None:
    sut.migrate()
    worker = sut.worker("w1")
    worker.signal(signal.SIGINT)
    assert worker.wait_exit(timeout=15) == 0
    assert sut.query("SELECT id FROM procrastinate_workers") == []
