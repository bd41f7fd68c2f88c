"""Collection from a real PostgreSQL (Procrastinate's schema, a real worker) and the fake API."""

from __future__ import annotations

import httpx
import procrastinate
import psycopg
import pytest
import respx

from harness.checker import accounting, runs_by_job
from harness.history import History, Submit
from harness.history.collect import collect_api_requests, collect_database
from harness.history.records import ApiRequest, Effect, Job, JobEvent


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
