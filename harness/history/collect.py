"""Read the database and the fake API after a scenario and turn them into history records."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from harness.history.records import ApiRequest, Effect, Job, JobEvent, Observation, Record

JOKES_TABLE = "chuck_norris_jokes"
#: The SUT's log of stalled-job recoveries (system/db.py): read as ``stalled_recovery``
#: observations, so the checker can tell a recovery re-queue from a backoff retry.
RECOVERIES_TABLE = "bulletproof_stalled_recoveries"


def _epoch(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


def collect_database(dsn: str, *, connect_timeout: float = 5.0) -> list[Record]:
    """Jobs, job events, effects (rows of ``chuck_norris_jokes``) and the SUT's stalled-job
    recoveries (``stalled_recovery`` observations) as history records."""
    records: list[Record] = []
    with psycopg.connect(dsn, connect_timeout=int(max(1, connect_timeout))) as conn:
        cur = conn.cursor(row_factory=dict_row)
        cur.execute(
            "SELECT id, task_name, queue_name, status::text AS status, attempts, args, lock,"
            " queueing_lock, scheduled_at FROM procrastinate_jobs ORDER BY id"
        )
        for row in cur.fetchall():
            records.append(
                Job(
                    id=row["id"],
                    task_name=row["task_name"],
                    queue=row["queue_name"],
                    status=row["status"],
                    attempts=row["attempts"],
                    args=row["args"] or {},
                    lock=row["lock"],
                    queueing_lock=row["queueing_lock"],
                    scheduled_at=_epoch(row["scheduled_at"]),
                )
            )
        cur.execute(
            "SELECT id, job_id, type::text AS type, at FROM procrastinate_events ORDER BY id"
        )
        for row in cur.fetchall():
            records.append(
                JobEvent(
                    id=row["id"],
                    job_id=row["job_id"],
                    type=row["type"],
                    at=_epoch(row["at"]) or 0.0,
                )
            )
        cur.execute("SELECT to_regclass(%s) AS t", (RECOVERIES_TABLE,))
        found = cur.fetchone()
        if found and found["t"] is not None:
            cur.execute(
                f"SELECT job_id, worker_id, attempts, recovered_at FROM {RECOVERIES_TABLE}"
                " ORDER BY id"
            )
            for row in cur.fetchall():
                records.append(
                    Observation(
                        name="stalled_recovery",
                        value={
                            "job_id": row["job_id"],
                            "attempts": row["attempts"],
                            "worker_id": row["worker_id"],
                        },
                        t=_epoch(row["recovered_at"]) or 0.0,
                    )
                )
        cur.execute("SELECT to_regclass(%s) AS t", (JOKES_TABLE,))
        found = cur.fetchone()
        if found and found["t"] is not None:
            cur.execute(f"SELECT * FROM {JOKES_TABLE}")
            for row in cur.fetchall():
                records.append(
                    Effect(
                        joke_id=str(row["joke_id"]),
                        created_at=_epoch(row.get("created_at")),
                        updated_at=_epoch(row.get("updated_at")),
                    )
                )
    return records


def _query(value: Any) -> dict[str, Any]:
    """The request's query as a dict, whether recorded as a mapping or a query string."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        return dict(urllib.parse.parse_qsl(value.lstrip("?")))
    return {}


def collect_api_requests(fakeapi_url: str, *, timeout: float = 5.0) -> list[Record]:
    """Every request the fake joke API recorded, from ``GET /_control/requests``."""
    response = httpx.get(f"{fakeapi_url.rstrip('/')}/_control/requests", timeout=timeout)
    response.raise_for_status()
    body = response.json()
    items = body.get("requests", []) if isinstance(body, dict) else body
    records: list[Record] = []
    for item in items:
        records.append(
            ApiRequest(
                t_start=float(item["t_start"]),
                t_end=None if item.get("t_end") is None else float(item["t_end"]),
                method=str(item.get("method", "GET")),
                path=str(item.get("path", "")),
                query=_query(item.get("query")),
                status=item.get("status"),
                outcome=str(item.get("outcome", "")),
                joke_id=item.get("joke_id"),
                fault=item.get("fault"),
            )
        )
    return records


def collect(dsn: str, fakeapi_url: str | None) -> list[Record]:
    """Everything the checker needs from outside the harness: database rows and API requests."""
    records = collect_database(dsn)
    if fakeapi_url is not None:
        records.extend(collect_api_requests(fakeapi_url))
    return records
