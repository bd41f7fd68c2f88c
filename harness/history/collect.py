"""Read the database, the fake API and the workers' logs after a scenario and turn them into
history records."""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from harness import http
from harness.history.records import (
    ApiRequest,
    Effect,
    Job,
    JobEffect,
    JobEvent,
    Observation,
    Record,
)
from harness.vocabulary import ObservationName
from system.db import JOKES_TABLE, RECOVERIES_TABLE

#: The system's job -> effect table (contract C2, ``system.db.JOB_EFFECTS_TABLE``).
#: TODO(merge): import it from system.db once the system branch defines it.
JOB_EFFECTS_TABLE = "bulletproof_job_effects"

#: Every query collection runs, by name (tables that may be missing are probed first).
QUERIES = {
    "jobs": "SELECT id, task_name, queue_name, status::text AS status, attempts, args, lock,"
    " queueing_lock, scheduled_at FROM procrastinate_jobs ORDER BY id",
    "events": "SELECT id, job_id, type::text AS type, at FROM procrastinate_events ORDER BY id",
    "table_exists": "SELECT to_regclass(%s) AS t",
    # the SUT's log of stalled-job recoveries: read as ``stalled_recovery`` observations, so
    # the checker can tell a recovery re-queue from a backoff retry
    "recoveries": f"SELECT job_id, worker_id, attempts, recovered_at FROM {RECOVERIES_TABLE}"
    " ORDER BY id",
    "jokes": f"SELECT * FROM {JOKES_TABLE}",
    "job_effects": f"SELECT job_id, joke_id, stored_at FROM {JOB_EFFECTS_TABLE} ORDER BY job_id",
}

#: The line each run of ``fetch_and_cache_joke`` logs first (the seed's pattern), with the
#: ``logging`` time stamp the system's log format puts in front of it.
FETCH_LOG = re.compile(
    r"^(?:(?P<asctime>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?)?"
    r"Job (?P<job_id>\d+): Fetching joke \(attempt (?P<run>\d+)/(?P<of>\d+)\)",
    re.MULTILINE,
)
#: The task's own line when a run fails and will be retried: written just before the retry
#: strategy decides, so its time stamp is the decision's (the write of the retry may come much
#: later on a loaded machine or a slow database).
FAILED_LOG = re.compile(
    r"^(?:(?P<asctime>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?)?"
    r"Job (?P<job_id>\d+): (?:attempt (?P<run>\d+) failed|API timeout on attempt (?P<trun>\d+))"
    r".*, will retry$",
    re.MULTILINE,
)
#: The task's own line when a run's timeout fired (``JOB_TIMEOUT`` or the HTTP client's),
#: retried or not: with the run's first line, the run's duration in its worker's own clock.
TIMEOUT_LOG = re.compile(
    r"^(?:(?P<asctime>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?)?"
    r"Job (?P<job_id>\d+): API timeout on attempt (?P<run>\d+)",
    re.MULTILINE,
)
#: Procrastinate's line for a run its worker aborted (shutdown past WORKER_TIMEOUT, or a lost
#: database session) and re-queued: ``Job <task>[<id>](...) ended with status: Aborted, to retry``.
ABORTED_LOG = re.compile(
    r"^(?:(?P<asctime>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?)?"
    r"Job [\w.]+\[(?P<job_id>\d+)\].* ended with status: Aborted, to retry",
    re.MULTILINE,
)

#: Procrastinate's line for every run that ended in its worker, whatever the status
#: (``Success``, ``Error``, ``Aborted``...): when the run was over in the worker's own clock,
#: even where the write of its outcome was lost with the database session.
ENDED_LOG = re.compile(
    r"^(?:(?P<asctime>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?)?"
    r"Job [\w.]+\[(?P<job_id>\d+)\].* ended with status: (?P<status>\w+)",
    re.MULTILINE,
)
#: The system's line when its heartbeat watchdog gives up on the worker's database session
#: (system/worker.py): the session's runs are aborted and re-queued.
SESSION_LOST_LOG = re.compile(
    r"^(?:(?P<asctime>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?)?"
    r"worker session lost \((?P<reason>.*)\): stopping it to start afresh$",
    re.MULTILINE,
)
#: The system's line when a lost session's teardown is over (system/worker.py): how long it
#: took from the loss, to be judged against the system's ``session_teardown_limit``.
SESSION_ENDED_LOG = re.compile(
    r"^(?:(?P<asctime>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?)?"
    r"lost session ended in (?P<took>[\d.]+)s \(limit [^)]*\)$",
    re.MULTILINE,
)

#: The system's line when a fetch that found a job was slow (``system.waker.SLOW_FETCH_LINE``):
#: from and to in wall-clock seconds.
SLOW_FETCH_LOG = re.compile(
    r"fetch of job (?P<job_id>\d+) took [\d.]+s: from (?P<start>[\d.]+) to (?P<end>[\d.]+)$",
    re.MULTILINE,
)

#: The system's line when its event loop was not seen running for a while
#: (``system.looplag.STALL_LINE``): from and to in wall-clock seconds.
STALL_LOG = re.compile(
    r"event loop stalled [\d.]+s: not seen running from (?P<start>[\d.]+) to (?P<end>[\d.]+)$",
    re.MULTILINE,
)


def _epoch(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


def collect_database(dsn: str, *, connect_timeout: float = 5.0) -> list[Record]:
    """Jobs, job events, effects (rows of ``chuck_norris_jokes``), the job -> effect rows
    (``job_effect``) and the SUT's stalled-job recoveries (``stalled_recovery`` observations)
    as history records. A table that does not exist gives no record."""
    records: list[Record] = []
    with psycopg.connect(dsn, connect_timeout=int(max(1, connect_timeout))) as conn:
        cur = conn.cursor(row_factory=dict_row)

        def exists(table: str) -> bool:
            cur.execute(QUERIES["table_exists"], (table,))
            found = cur.fetchone()
            return found is not None and found["t"] is not None

        cur.execute(QUERIES["jobs"])
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
        cur.execute(QUERIES["events"])
        for row in cur.fetchall():
            records.append(
                JobEvent(
                    id=row["id"],
                    job_id=row["job_id"],
                    type=row["type"],
                    at=_epoch(row["at"]) or 0.0,
                )
            )
        if exists(RECOVERIES_TABLE):
            cur.execute(QUERIES["recoveries"])
            for row in cur.fetchall():
                records.append(
                    Observation(
                        name=ObservationName.STALLED_RECOVERY,
                        value={
                            "job_id": row["job_id"],
                            "attempts": row["attempts"],
                            "worker_id": row["worker_id"],
                        },
                        t=_epoch(row["recovered_at"]) or 0.0,
                    )
                )
        if exists(JOKES_TABLE):
            cur.execute(QUERIES["jokes"])
            for row in cur.fetchall():
                records.append(
                    Effect(
                        joke_id=str(row["joke_id"]),
                        created_at=_epoch(row.get("created_at")),
                        updated_at=_epoch(row.get("updated_at")),
                    )
                )
        if exists(JOB_EFFECTS_TABLE):
            cur.execute(QUERIES["job_effects"])
            for row in cur.fetchall():
                records.append(
                    JobEffect(
                        job_id=int(row["job_id"]),
                        joke_id=str(row["joke_id"]),
                        stored_at=_epoch(row["stored_at"]) or 0.0,
                    )
                )
    return records


def collect_run_workers(logs: Mapping[str, Path]) -> list[Observation]:
    """Which worker ran which run, and which runs it aborted, from each worker's log (worker
    name -> log path): one ``run_worker`` observation ``{"job_id": N, "run": k, "worker":
    name}`` per line ``Job N: Fetching joke (attempt k/m)`` (k is the run's ordinal among the
    job's ``started`` events), one ``run_aborted`` observation (same value) per Procrastinate
    line saying that job's run ended ``Aborted, to retry`` (the run is that job's last one
    started in the same log), one ``run_failed`` per task line saying a run failed and
    will be retried (its time is the retry decision's), and one ``run_timed_out`` per task
    line saying a run's timeout fired, one ``run_ended`` (with its ``status``) per
    Procrastinate line saying a run ended, whatever the status, and one ``session_lost``
    ``{"worker": name, "reason": ...}`` per line saying the worker's watchdog ended its
    database session, one ``session_ended`` ``{"worker": name, "took": seconds}`` per line
    saying how long that session's teardown took, and one ``loop_stall``
    ``{"worker": name, "start": s, "end": e}`` per line saying its event loop was not seen
    running from s to e (``system.looplag``), and one ``slow_fetch``
    ``{"worker": name, "job_id": n, "start": s, "end": e}`` per line saying a fetch that found
    job n took from s to e (``system.waker``). ``t``
    is the line's time stamp (the log's local time), or the file's modification time when the
    line has none.
    A missing log gives nothing."""
    found: list[Observation] = []
    for name, path in logs.items():
        path = Path(path)
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        fallback = path.stat().st_mtime
        matches = [(m.start(), ObservationName.RUN_WORKER, m) for m in FETCH_LOG.finditer(text)]
        matches += [(m.start(), ObservationName.RUN_ABORTED, m) for m in ABORTED_LOG.finditer(text)]
        matches += [(m.start(), ObservationName.RUN_FAILED, m) for m in FAILED_LOG.finditer(text)]
        matches += [
            (m.start(), ObservationName.RUN_TIMED_OUT, m) for m in TIMEOUT_LOG.finditer(text)
        ]
        matches += [(m.start(), ObservationName.RUN_ENDED, m) for m in ENDED_LOG.finditer(text)]
        for m in STALL_LOG.finditer(text):
            start, end = float(m.group("start")), float(m.group("end"))
            stall = {"worker": name, "start": start, "end": end}
            found.append(Observation(name=ObservationName.LOOP_STALL, value=stall, t=end))
        for m in SLOW_FETCH_LOG.finditer(text):
            start, end = float(m.group("start")), float(m.group("end"))
            fetch = {"worker": name, "job_id": int(m.group("job_id")), "start": start, "end": end}
            found.append(Observation(name=ObservationName.SLOW_FETCH, value=fetch, t=end))
        for m in SESSION_LOST_LOG.finditer(text):
            lost = {"worker": name, "reason": m.group("reason")}
            t = _stamp(m, fallback)
            found.append(Observation(name=ObservationName.SESSION_LOST, value=lost, t=t))
        for m in SESSION_ENDED_LOG.finditer(text):
            ended = {"worker": name, "took": float(m.group("took"))}
            t = _stamp(m, fallback)
            found.append(Observation(name=ObservationName.SESSION_ENDED, value=ended, t=t))
        last_run: dict[int, int] = {}
        for _pos, kind, match in sorted(matches, key=lambda x: x[0]):
            t = _stamp(match, fallback)
            job_id = int(match.group("job_id"))
            if kind == ObservationName.RUN_WORKER:
                last_run[job_id] = int(match.group("run"))
            elif job_id not in last_run:
                continue  # a run this log never showed starting
            value: dict[str, Any] = {"job_id": job_id, "run": last_run[job_id], "worker": name}
            if kind == ObservationName.RUN_ENDED:
                value["status"] = match.group("status")
            found.append(Observation(name=kind, value=value, t=t))
    return sorted(found, key=lambda o: o.t)


def _stamp(match: re.Match[str], fallback: float) -> float:
    """The ``logging`` time stamp in front of a matched line (local time), or ``fallback``."""
    stamp = match.group("asctime")
    if not stamp:
        return fallback
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _query(value: Any) -> dict[str, Any]:
    """The request's query as a dict, whether recorded as a mapping or a query string."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        return dict(urllib.parse.parse_qsl(value.lstrip("?")))
    return {}


def collect_api_requests(fakeapi_url: str, *, timeout: float = 5.0) -> list[Record]:
    """Every request the fake joke API recorded, from ``GET /_control/requests``."""
    response = http.get(f"{fakeapi_url.rstrip('/')}/_control/requests", timeout=timeout)
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
