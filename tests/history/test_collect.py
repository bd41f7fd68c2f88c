"""Collection from a real PostgreSQL (Procrastinate's schema, a real worker) and the fake API."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import procrastinate
import psycopg
import pytest
import respx

from harness.checker import accounting, runs_by_job
from harness.history import History, Submit
from harness.history.collect import (
    JOB_EFFECTS_TABLE,
    collect_api_requests,
    collect_database,
    collect_run_workers,
)
from harness.history.records import ApiRequest, Effect, Job, JobEffect, JobEvent


@pytest.mark.integration
async def test_collect_database_reads_jobs_events_and_effects(pg_dsn: str) -> None:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=pg_dsn))
    calls: dict[str, int] = {}

    @app.task(name="fetch_and_cache_joke", retry=procrastinate.RetryStrategy(max_attempts=1))
    async def flaky(key: str) -> None:
        calls[key] = calls.get(key, 0) + 1
        if key == "retry-once" and calls[key] == 1:
            raise RuntimeError("first run fails")
        if key == "always":
            raise RuntimeError("always fails")

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        ids = [await flaky.defer_async(key=k) for k in ("ok", "retry-once", "always")]
        await app.run_worker_async(wait=False, install_signal_handlers=False)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE chuck_norris_jokes (joke_id text, value text,"
            " created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now())"
        )
        conn.execute(
            "INSERT INTO chuck_norris_jokes (joke_id, value) VALUES ('a', 'x'), ('a', 'y')"
        )

    records = collect_database(pg_dsn)
    history = History(
        [
            Submit(op_id=i, t_invoke=0, t_complete=0, outcome="ok", job_id=j)
            for i, j in enumerate(ids)
        ]
        + records
    )
    jobs = {r.id: r for r in records if isinstance(r, Job)}
    assert [jobs[i].status for i in ids] == ["succeeded", "succeeded", "failed"]
    assert all(isinstance(e.at, float) for e in records if isinstance(e, JobEvent))
    effects = [r for r in records if isinstance(r, Effect)]
    assert [e.joke_id for e in effects] == ["a", "a"] and effects[0].created_at is not None

    runs = runs_by_job(history)
    assert [len(runs[i]) for i in ids] == [1, 2, 2]
    # Procrastinate's retry writes a `scheduled` event with the retry: the checker sees its
    # time (RetryStrategy's default wait is 0) and counts it as the strategy's retry.
    first = runs[ids[1]][0]
    assert first.retry_at is not None and first.requested_delay is not None
    assert first.requested_delay <= 0.01 and first.scheduled_retry
    acc = accounting(history, task_name="fetch_and_cache_joke")
    assert (acc["succeeded"], acc["failed"], acc["lost"], acc["duplicate_effects"]) == (2, 1, 0, 1)

    assert not [r for r in records if isinstance(r, JobEffect)]  # no table: no record
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {JOB_EFFECTS_TABLE} (job_id bigint PRIMARY KEY, joke_id text NOT NULL,"
            " stored_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        conn.execute(
            f"INSERT INTO {JOB_EFFECTS_TABLE} (job_id, joke_id) VALUES (%s, 'a')", (ids[0],)
        )
    (effect,) = [r for r in collect_database(pg_dsn) if isinstance(r, JobEffect)]
    assert (effect.job_id, effect.joke_id) == (ids[0], "a") and effect.stored_at > 1e9


@respx.mock
def test_collect_api_requests_maps_the_fake_api_records() -> None:
    item = {
        "t_start": 1.0,
        "t_end": 1.2,
        "method": "GET",
        "path": "/jokes/random",
        "query": {"category": "dev"},
        "status": 503,
        "outcome": "fault",
        "joke_id": None,
        "fault": "status",
    }
    respx.get("http://fake:1/_control/requests").mock(
        return_value=httpx.Response(200, json={"requests": [item]})
    )
    (req,) = collect_api_requests("http://fake:1/")
    assert isinstance(req, ApiRequest)
    assert (req.status, req.outcome, req.query, req.fault) == (
        503,
        "fault",
        {"category": "dev"},
        "status",
    )
    as_string = {**item, "query": "category=dev"}  # a query string is read as a mapping too
    respx.get("http://fake:2/_control/requests").mock(
        return_value=httpx.Response(200, json=[as_string])
    )
    (again,) = collect_api_requests("http://fake:2")
    assert again.query == {"category": "dev"}


def test_collect_run_workers_reads_each_workers_log(tmp_path: Path) -> None:
    w1, w2 = tmp_path / "w1.log", tmp_path / "w2.log"
    w1.write_text(
        "2026-12-01 02:18:56,123 INFO system.worker: bulletproof: worker ready name=w1\n"
        "2026-12-01 02:18:57,250 INFO system.tasks: Job 7: Fetching joke (attempt 1/5)\n"
        "2026-12-01 02:18:59,000 INFO system.tasks: Job 8: Fetching joke (attempt 1/5)\n"
    )
    w2.write_text("Job 7: Fetching joke (attempt 2/5)\n")  # no time stamp: the file's time
    obs = collect_run_workers({"w1": w1, "w2": w2, "gone": tmp_path / "missing.log"})
    values = sorted((o.value["job_id"], o.value["run"], o.value["worker"]) for o in obs)
    assert values == [(7, 1, "w1"), (7, 2, "w2"), (8, 1, "w1")]
    assert all(o.name == "run_worker" for o in obs)
    stamped = next(o for o in obs if o.value == {"job_id": 7, "run": 1, "worker": "w1"})
    assert abs(stamped.t - next(o for o in obs if o.value["job_id"] == 8).t + 1.75) < 1e-6

    history = History(obs)
    history.add(JobEvent(id=1, job_id=7, type="started", at=1.0))
    history.add(JobEvent(id=2, job_id=7, type="deferred_for_retry", at=2.0))
    history.add(JobEvent(id=3, job_id=7, type="started", at=3.0))
    assert [r.worker for r in runs_by_job(history)[7]] == ["w1", "w2"]


def test_collect_run_workers_reads_the_runs_a_worker_aborted(tmp_path: Path) -> None:
    # Procrastinate's own lines: a run aborted by a lost session (or a shutdown past
    # WORKER_TIMEOUT) and re-queued, and a run that failed by itself
    log = tmp_path / "w3.log"
    log.write_text(
        "2026-12-02 17:35:05,268 INFO system.tasks: Job 81: Fetching joke (attempt 4/5)\n"
        "2026-12-02 17:35:05,281 WARNING system.tasks: Job 81: attempt 4 failed "
        "(ConnectError: All connection attempts failed), will retry\n"
        "2026-12-02 17:35:05,282 INFO procrastinate.worker: Job fetch_and_cache_joke[81]"
        "(category='career') ended with status: Error, to retry, lasted 0.014 s\n"
        "2026-12-02 17:35:10,437 INFO system.tasks: Job 81: Fetching joke (attempt 5/5)\n"
        "2026-12-02 17:35:11,930 INFO procrastinate.worker: Job fetch_and_cache_joke[81]"
        "(category='career') ended with status: Aborted, to retry, lasted 1.494 s\n"
        "2026-12-02 17:35:12,000 INFO procrastinate.worker: Job fetch_and_cache_joke[99]"
        "() ended with status: Aborted, to retry, lasted 1.0 s\n"  # never seen starting here
    )
    obs = collect_run_workers({"w3": log})
    aborted = [o.value for o in obs if o.name == "run_aborted"]
    assert aborted == [{"job_id": 81, "run": 5, "worker": "w3"}]
    [failed] = [o for o in obs if o.name == "run_failed"]
    assert failed.value == {"job_id": 81, "run": 4, "worker": "w3"}
    assert failed.t == dt.datetime(2026, 12, 2, 17, 35, 5, 281000).timestamp()  # the decision

    history = History(obs)
    events = ["started", "deferred_for_retry"] * 5 + ["started"]
    for i, kind in enumerate(events, 1):
        history.add(JobEvent(id=i, job_id=81, type=kind, at=float(i)))
    runs = runs_by_job(history)[81]
    assert [r.aborted for r in runs] == [False, False, False, False, True, False]
    assert runs[4].interrupted and not runs[4].scheduled_retry


def test_collect_run_workers_reads_when_a_runs_timeout_fired(tmp_path: Path) -> None:
    log = tmp_path / "w1.log"
    log.write_text(
        "2026-12-07 06:50:31,007 INFO system.tasks: Job 57: Fetching joke (attempt 2/5)\n"
        "2026-12-07 06:50:32,532 WARNING system.tasks: Job 57: API timeout on attempt 2, "
        "will retry\n"
        "2026-12-07 06:50:40,937 INFO system.tasks: Job 57: Fetching joke (attempt 5/5)\n"
        "2026-12-07 06:50:42,440 WARNING system.tasks: Job 57: API timeout on attempt 5, "
        "giving up\n"
    )
    obs = collect_run_workers({"w1": log})
    timed_out = [(o.value["run"], o.t) for o in obs if o.name == "run_timed_out"]
    assert timed_out == [
        (2, dt.datetime(2026, 12, 7, 6, 50, 32, 532000).timestamp()),
        (5, dt.datetime(2026, 12, 7, 6, 50, 42, 440000).timestamp()),
    ]


def test_collect_run_workers_reads_when_a_workers_watchdog_ended_its_session(
    tmp_path: Path,
) -> None:
    log = tmp_path / "w2.log"
    log.write_text(
        "2026-12-07 08:12:40,315 WARNING system.worker: worker session lost (heartbeat write "
        "failed: no answer within 4s): stopping it to start afresh\n"
        "2026-12-07 08:12:42,855 WARNING system.worker: database unavailable (heartbeat write "
        "failed: no answer within 4s): retrying in 0.1s\n"
    )
    (lost,) = [o for o in collect_run_workers({"w2": log}) if o.name == "session_lost"]
    assert lost.value == {"worker": "w2", "reason": "heartbeat write failed: no answer within 4s"}
    assert lost.t == dt.datetime(2026, 12, 7, 8, 12, 40, 315000).timestamp()


def test_collect_run_workers_reads_when_each_run_ended_whatever_its_status(tmp_path: Path) -> None:
    log = tmp_path / "w1.log"
    log.write_text(
        "2026-12-07 10:58:16,484 INFO system.tasks: Job 80: Fetching joke (attempt 2/5)\n"
        "2026-12-07 10:58:16,502 INFO procrastinate.worker: Job fetch_and_cache_joke[80]"
        "(category='animal') ended with status: Success, lasted 0.019 s - Result: sFy2\n"
        "2026-12-07 10:58:17,100 INFO procrastinate.worker: Job health_check_task[81]() "
        "ended with status: Success, lasted 0.005 s\n"
    )
    (ended,) = [o for o in collect_run_workers({"w1": log}) if o.name == "run_ended"]
    assert ended.value == {"job_id": 80, "run": 2, "worker": "w1", "status": "Success"}
    assert ended.t == dt.datetime(2026, 12, 7, 10, 58, 16, 502000).timestamp()


def test_collect_run_workers_reads_when_a_workers_event_loop_stood_still(tmp_path: Path) -> None:
    log = tmp_path / "w1.log"
    log.write_text(
        "2026-12-07 10:58:16,640 WARNING system.looplag: event loop stalled 0.085s: not seen "
        "running from 1796641096.555123 to 1796641096.640201\n"
    )
    (stall,) = [o for o in collect_run_workers({"w1": log}) if o.name == "loop_stall"]
    assert stall.value == {"worker": "w1", "start": 1796641096.555123, "end": 1796641096.640201}
    assert stall.t == 1796641096.640201


def test_collect_run_workers_reads_how_long_a_lost_sessions_teardown_took(tmp_path: Path) -> None:
    from system.worker import TEARDOWN_LINE

    log = tmp_path / "w1.log"
    log.write_text(
        "2026-12-07 20:10:35,445 INFO system.worker: "
        + TEARDOWN_LINE % (5.0, "5s")
        + "\n2026-12-07 20:10:43,876 WARNING system.worker: "
        + TEARDOWN_LINE % (6.254, "5s")
        + "\n2026-12-07 20:10:44,000 INFO system.worker: lost session ended in soon\n"
    )
    ended = [o for o in collect_run_workers({"w1": log}) if o.name == "session_ended"]
    assert [o.value for o in ended] == [
        {"worker": "w1", "took": 5.0},
        {"worker": "w1", "took": 6.25},
    ]
    assert ended[0].t == dt.datetime(2026, 12, 7, 20, 10, 35, 445000).timestamp()


def test_collect_run_workers_reads_when_a_fetch_that_found_a_job_was_slow(tmp_path: Path) -> None:
    from system.waker import SLOW_FETCH_LINE

    log = tmp_path / "w1.log"
    log.write_text(
        "2026-12-07 22:30:01,100 INFO system.waker: "
        + SLOW_FETCH_LINE % (14, 0.0421, 1796682601.057, 1796682601.0991)
        + "\n"
    )
    (fetch,) = [o for o in collect_run_workers({"w1": log}) if o.name == "slow_fetch"]
    assert fetch.value == {
        "worker": "w1",
        "job_id": 14,
        "start": 1796682601.057,
        "end": 1796682601.0991,
    }
    assert fetch.t == 1796682601.0991
