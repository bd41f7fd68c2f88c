"""Load run: N job submissions at concurrency C through the real API, then the drain.

``python -m system api`` (with its in-process worker, production settings) and the fake joke
API run as real processes on loopback, on a private PostgreSQL. Every submission is a real
``POST /tasks/fetch-joke``; then the database is polled until every acknowledged job is
terminal. Prints acknowledged, rejected, lost, p50/p99 submission latency and drain time;
asserts that no acknowledged job is lost (the only assertion: timings are figures).

Environment: ``BENCH_LOAD_JOBS`` (default 2000), ``BENCH_LOAD_CONCURRENCY`` (default 50),
``BENCH_SEED`` (default 11: the categories submitted), ``BENCH_LOAD_DRAIN_TIMEOUT`` (600 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from harness.fakeapi.app import CATEGORIES
from harness.ports import free_port
from harness.postgres import LocalPostgres
from harness.processes import ManagedProcess, http_ok, log_line
from harness.wait import wait_for_async
from system.settings import load_settings

TERMINAL = ("succeeded", "failed", "cancelled", "aborted")
LISTENING = r"fakeapi: listening on (http://\S+)"


@dataclass
class Submission:
    status: int | None  # None: no answer (transport error)
    job_id: int | None
    latency: float
    error: str = ""


async def _submit(client: httpx.AsyncClient, body: dict[str, str]) -> Submission:
    started = time.perf_counter()
    try:
        response = await client.post("/tasks/fetch-joke", json=body)
    except httpx.HTTPError as exc:
        return Submission(None, None, time.perf_counter() - started, type(exc).__name__)
    latency = time.perf_counter() - started
    job_id = response.json().get("job_id") if response.status_code == 202 else None
    return Submission(response.status_code, job_id, latency, "" if job_id else response.text[:200])


async def _submit_all(url: str, jobs: int, concurrency: int, seed: int) -> list[Submission]:
    rng = random.Random(seed)
    bodies = [
        {"category": rng.choice(CATEGORIES)} if rng.random() < 0.5 else {} for _ in range(jobs)
    ]
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(body: dict[str, str]) -> Submission:
            async with gate:
                return await _submit(client, body)

        return await asyncio.gather(*(one(b) for b in bodies))


async def _drain(dsn: str, job_ids: list[int], timeout: float) -> dict[str, int]:
    """Poll until every job in ``job_ids`` is terminal (or ``timeout``); statuses counted."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:

        async def counts() -> dict[str, int]:
            cur = await conn.execute(
                "SELECT status::text, count(*) FROM procrastinate_jobs WHERE id = ANY(%s) "
                "GROUP BY 1",
                (job_ids,),
            )
            return {status: n for status, n in await cur.fetchall()}

        async def all_terminal() -> dict[str, int] | None:
            now = await counts()
            return now if sum(now.get(s, 0) for s in TERMINAL) == len(job_ids) else None

        with contextlib.suppress(TimeoutError):  # a timeout is reported as lost jobs
            await wait_for_async(
                all_terminal, timeout=timeout, what="every acknowledged job to end", interval=0.1
            )
        return await counts()


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0


def run(jobs: int, concurrency: int, seed: int, drain_timeout: float, tmp: Path) -> bool:
    """One load run; prints the figures, returns True when no acknowledged job is lost."""
    with LocalPostgres() as server:
        server.start()
        dsn = server.create_database("bench_load")
        fake = ManagedProcess(
            "fakeapi",
            [sys.executable, "-m", "harness.fakeapi", "--seed", str(seed)],
            log_path=tmp / "fakeapi.log",
            ready=log_line(LISTENING),
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {"PROCRASTINATE_DATABASE_URL": dsn, "BULLETPROOF_DEFECTS": ""}
        migrate = ManagedProcess(
            "migrate", [sys.executable, "-m", "system", "migrate"], log_path=tmp / "m.log", env=env
        )
        api: ManagedProcess | None = None
        try:
            fake.start(timeout=30)
            match = re.search(LISTENING, fake.output())
            assert match is not None
            migrate.start(timeout=30)
            assert migrate.wait_exit(timeout=60) == 0, migrate.tail(10)
            api = ManagedProcess(
                "api",
                [sys.executable, "-m", "system", "api", "--port", str(port), "--name", "load"],
                log_path=tmp / "api.log",
                env={**env, "API_BASE_URL": match.group(1)},
                ready=http_ok(f"{url}/health", statuses=(200,)),
            )
            api.start(timeout=60)

            started = time.monotonic()
            submissions = asyncio.run(_submit_all(url, jobs, concurrency, seed))
            submitted = time.monotonic()
            acked = [s.job_id for s in submissions if s.job_id is not None]
            statuses = asyncio.run(_drain(dsn, acked, drain_timeout))
            drained = time.monotonic()
            alive = api.is_running()
        finally:
            if api is not None:
                api.close()
            fake.close()
            migrate.close()

    latencies = [s.latency for s in submissions if s.job_id is not None]
    rejected = sum(1 for s in submissions if s.status is not None and s.job_id is None)
    no_answer = sum(1 for s in submissions if s.status is None)
    terminal = sum(statuses.get(s, 0) for s in TERMINAL)
    lost = len(acked) - terminal
    workers = load_settings({**os.environ, "PROCRASTINATE_DATABASE_URL": "-"}).worker_concurrency
    print(
        f"load: {jobs} submissions at concurrency {concurrency} through the API "
        f"(in-process worker, concurrency {workers}; fake joke API; loopback)",
        flush=True,
    )
    print(
        f"  acknowledged {len(acked)} | rejected {rejected} | no answer {no_answer} | "
        f"lost {lost} | succeeded {statuses.get('succeeded', 0)} | "
        f"failed {statuses.get('failed', 0)}",
        flush=True,
    )
    if latencies:
        print(
            f"  submission latency p50 {statistics.median(latencies) * 1000:.1f} ms | "
            f"p99 {_percentile(latencies, 99) * 1000:.1f} ms | "
            f"max {max(latencies) * 1000:.1f} ms | "
            f"{len(acked) / (submitted - started):.0f} submissions/s",
            flush=True,
        )
    print(
        f"  drain {drained - submitted:.1f} s after the last answer "
        f"(first submission to last job done {drained - started:.1f} s); API alive: {alive}",
        flush=True,
    )
    errors = sorted({s.error for s in submissions if s.error})[:3]
    if errors:
        print(f"  errors (first kinds): {errors}", flush=True)
    return lost == 0 and alive


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the finally blocks: every process is stopped


def main() -> None:
    """Run the load once with the environment's figures; fail if a job is lost."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    jobs = int(os.environ.get("BENCH_LOAD_JOBS", "2000"))
    concurrency = int(os.environ.get("BENCH_LOAD_CONCURRENCY", "50"))
    seed = int(os.environ.get("BENCH_SEED", "11"))
    drain_timeout = float(os.environ.get("BENCH_LOAD_DRAIN_TIMEOUT", "600"))
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        ok = run(jobs, concurrency, seed, drain_timeout, Path(tmp))
        if not ok:
            print(f"  API log tail: {(Path(tmp) / 'api.log').read_text()[-3000:]}", flush=True)
    assert ok, "acknowledged jobs were lost (or the API died): see the figures above"


if __name__ == "__main__":
    main()
