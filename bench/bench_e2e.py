"""End to end: ``fetch_and_cache_joke`` jobs per second, our worker versus the bare limit.

Both sides are real processes on one private PostgreSQL, fetching from the fake joke API
(``python -m harness.fakeapi``) on loopback:

- **ours**: ``python -m system worker`` (supervisor, watchdog, schedules, retry waker,
  production settings and logging);
- **bare**: the limit, ``python -m bench.bench_e2e bare-worker``: a plain Procrastinate
  worker whose ``fetch_and_cache_joke`` does the same HTTP call (``system.jokes.fetch_joke``)
  and upsert (``system.db.store_joke``) through one shared ``httpx.AsyncClient`` and the
  app's own pool, with no timeout, retry, supervisor, watchdog or waker.

Rounds are paired (ours and bare back to back, in alternating order, each on a fresh
database) and run in two variants: **queued** (once the worker is ready, jobs are deferred
in one batch and drained) and **api** (``python -m system api --no-worker`` serving: the
same batch is deferred once
both processes are ready and, from that moment, as many jobs are submitted through
``POST /tasks/fetch-joke`` at concurrency 50 while the worker drains the batch). Throughput
is the batch's jobs / (last ``succeeded`` - first ``started``) from the database's event
times, so start-up does not count, nor the submission rate (printed beside it). Prints each
round, the per-round ratio ours/bare, the median ratio and the load average before and
after; in the queued variant also the worker process's CPU time per job (user + system, from
``/proc``: less sensitive to other work on the machine than wall time). Asserts nothing
about speed.

Environment: ``BENCH_E2E_JOBS`` (jobs per round, default 500), ``BENCH_E2E_ROUNDS``
(default 5), ``BENCH_E2E_VARIANTS`` (default ``queued,api``), ``BENCH_SEED`` (default 11).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from procrastinate import App, JobContext, PsycopgConnector
from procrastinate.types import JSONDict

from harness.fakeapi.app import CATEGORIES
from harness.ports import free_port
from harness.postgres import LocalPostgres
from harness.processes import ManagedProcess, http_ok, log_line
from harness.wait import wait_for_async
from system import db
from system.jokes import HTTP_TIMEOUT, fetch_joke
from system.settings import Settings, load_settings
from system.tasks import FETCH_TASK, QUEUES, build_app

CONCURRENCY = 10
SUBMIT_CONCURRENCY = 50
TERMINAL = ("succeeded", "failed", "cancelled", "aborted")
LISTENING = r"fakeapi: listening on (http://\S+)"
BARE_READY = "bench-e2e: bare worker ready"
SIDES = ("bare", "ours")


@dataclass
class Drained:
    """A side's round: the measured jobs' throughput and final statuses."""

    rate: float
    statuses: dict[str, int]
    submissions_per_s: float | None = None
    cpu_ms_per_job: float | None = None


# -- the bare limit (runs in its own process) ----------------------------------------------
def bare_app(settings: Settings, client: httpx.AsyncClient) -> App:
    """Procrastinate with only ``fetch_and_cache_joke``: fetch + upsert, one shared client."""
    app = App(
        connector=PsycopgConnector(
            conninfo=settings.procrastinate_database_url, max_size=settings.db_pool_size
        )
    )

    @app.task(name=FETCH_TASK, queue="api_calls", pass_context=True)
    async def fetch_and_cache_joke(context: JobContext, category: str | None = None) -> str:
        row = await fetch_joke(client, settings.api_base_url, category)
        row["job_id"] = context.job.id
        await db.store_joke(db.pool_of(context.app), row)
        return str(row["joke_id"])

    return app


async def _run_bare_worker(settings: Settings) -> None:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        app = bare_app(settings, client)
        async with app.open_async():
            print(BARE_READY, file=sys.stderr, flush=True)
            await app.run_worker_async(
                queues=list(QUEUES),
                name="bare",
                concurrency=settings.worker_concurrency,
                wait=True,
                listen_notify=True,
                delete_jobs="never",
                fetch_job_polling_interval=settings.worker_poll_interval,
                update_heartbeat_interval=settings.worker_heartbeat_interval,
                install_signal_handlers=True,  # SIGTERM: Procrastinate's graceful stop
            )


# -- one round ------------------------------------------------------------------------------
def _bodies(jobs: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"category": rng.choice(CATEGORIES)} if rng.random() < 0.5 else {} for _ in range(jobs)]


async def _defer(settings: Settings, bodies: list[dict[str, str]]) -> list[int]:
    app = build_app(settings)
    async with app.open_async():
        payloads: list[JSONDict] = [dict(b) for b in bodies]
        return await app.configure_task(FETCH_TASK).batch_defer_async(*payloads)


async def _submit(url: str, bodies: list[dict[str, str]]) -> tuple[int, float]:
    """POST every body at concurrency 50; (how many were acknowledged with 202, seconds)."""
    gate = asyncio.Semaphore(SUBMIT_CONCURRENCY)
    limits = httpx.Limits(
        max_connections=SUBMIT_CONCURRENCY, max_keepalive_connections=SUBMIT_CONCURRENCY
    )
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(body: dict[str, str]) -> bool:
            async with gate:
                with contextlib.suppress(httpx.HTTPError):
                    return (await client.post("/tasks/fetch-joke", json=body)).status_code == 202
                return False

        acked = sum(await asyncio.gather(*(one(b) for b in bodies)))
    return acked, time.monotonic() - started


async def _drained(dsn: str, ids: list[int], timeout: float = 600.0) -> Drained:
    """Wait until the jobs ``ids`` are terminal; their jobs/s and statuses."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:

        async def counts() -> dict[str, int]:
            cur = await conn.execute(
                "SELECT status::text, count(*) FROM procrastinate_jobs WHERE id = ANY(%s) "
                "GROUP BY 1",
                (ids,),
            )
            return {status: n for status, n in await cur.fetchall()}

        async def all_terminal() -> dict[str, int] | None:
            now = await counts()
            return now if sum(now.get(s, 0) for s in TERMINAL) == len(ids) else None

        statuses = (
            await wait_for_async(
                all_terminal, timeout=timeout, what=f"{len(ids)} jobs to end", interval=0.05
            )
        ).value
        cur = await conn.execute(
            "SELECT EXTRACT(EPOCH FROM max(e.at) FILTER (WHERE e.type = 'succeeded') "
            "  - min(e.at) FILTER (WHERE e.type = 'started'))::float8 "
            "FROM procrastinate_events e WHERE e.job_id = ANY(%s)",
            (ids,),
        )
        row = await cur.fetchone()
    assert row is not None and row[0], f"no job succeeded: {statuses}"
    return Drained(len(ids) / float(row[0]), statuses)


async def _drained_under_submissions(
    settings: Settings, url: str, bodies: list[dict[str, str]]
) -> Drained:
    ids = await _defer(settings, bodies)
    submitting = asyncio.create_task(_submit(url, bodies))
    try:
        drained = await _drained(settings.procrastinate_database_url, ids)
    finally:
        acked, seconds = await submitting
    assert acked == len(bodies), f"the API acknowledged {acked} of {len(bodies)} submissions"
    drained.submissions_per_s = acked / seconds
    return drained


def _worker(side: str, env: dict[str, str], tmp: Path) -> ManagedProcess:
    if side == "ours":
        argv = [sys.executable, "-m", "system", "worker", "--name", "e2e-ours"]
        ready = log_line("bulletproof: worker ready")
    else:
        argv = [sys.executable, "-m", "bench.bench_e2e", "bare-worker"]
        ready = log_line(BARE_READY)
    return ManagedProcess(side, argv, log_path=tmp / f"{side}.log", env=env, ready=ready)


@contextlib.contextmanager
def _started(proc: ManagedProcess, timeout: float = 60.0) -> Iterator[ManagedProcess]:
    try:
        proc.start(timeout=timeout)
        yield proc
        proc.stop(timeout=30.0)
    finally:
        proc.close()


def run_round(
    server: LocalPostgres, fake_url: str, side: str, variant: str, jobs: int, seed: int, tmp: Path
) -> Drained:
    """One side of one round on a fresh database."""
    name = f"bench_e2e_{side}"
    dsn = server.create_database(name)
    try:
        env = {
            "PROCRASTINATE_DATABASE_URL": dsn,
            "API_BASE_URL": fake_url,
            "WORKER_CONCURRENCY": str(CONCURRENCY),
            "BULLETPROOF_DEFECTS": "",
        }
        settings = load_settings(env)
        asyncio.run(db.migrate(settings, build_app(settings)))
        bodies = _bodies(jobs, seed)
        worker = _worker(side, env, tmp)
        if variant == "queued":
            with _started(worker):
                cpu = _cpu_seconds(worker)
                ids = asyncio.run(_defer(settings, bodies))
                drained = asyncio.run(_drained(dsn, ids))
                drained.cpu_ms_per_job = (_cpu_seconds(worker) - cpu) * 1000 / jobs
                return drained
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        api = ManagedProcess(
            "api",
            [sys.executable, "-m", "system", "api", "--no-worker", "--port", str(port)],
            log_path=tmp / "api.log",
            env=env,
            ready=http_ok(f"{url}/openapi.json", statuses=(200,)),
        )
        with _started(api), _started(worker):
            return asyncio.run(_drained_under_submissions(settings, url, bodies))
    finally:
        server.drop_database(name)


def _cpu_seconds(proc: ManagedProcess) -> float:
    """User + system CPU seconds the running process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the finally blocks: every process is stopped


def main() -> None:
    """Run the paired rounds of each variant and print jobs/s and ratios ours/bare."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    jobs = int(os.environ.get("BENCH_E2E_JOBS", "500"))
    rounds = int(os.environ.get("BENCH_E2E_ROUNDS", "5"))
    variants = os.environ.get("BENCH_E2E_VARIANTS", "queued,api").split(",")
    seed = int(os.environ.get("BENCH_SEED", "11"))
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    print(f"before: {_load()} ({os.cpu_count()} cores)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp_name, LocalPostgres() as server:
        tmp = Path(tmp_name)
        server.start()
        fake = ManagedProcess(
            "fakeapi",
            [sys.executable, "-m", "harness.fakeapi", "--seed", str(seed)],
            log_path=tmp / "fakeapi.log",
            ready=log_line(LISTENING),
        )
        with _started(fake, timeout=30):
            match = re.search(LISTENING, fake.output())
            assert match is not None
            for variant in variants:
                rates: dict[str, list[float]] = {s: [] for s in SIDES}
                for n in range(rounds):
                    # alternate the order so neither side always runs on a warmer server
                    for side in SIDES if n % 2 == 0 else SIDES[::-1]:
                        got = run_round(server, match.group(1), side, variant, jobs, seed + n, tmp)
                        rates[side].append(got.rate)
                        extra = "" if got.statuses == {"succeeded": jobs} else f" {got.statuses}"
                        if got.cpu_ms_per_job is not None:
                            extra += f", worker CPU {got.cpu_ms_per_job:.2f} ms/job"
                        if got.submissions_per_s is not None:
                            extra += f" (API took {got.submissions_per_s:.0f} submissions/s)"
                        print(f"{variant} round {n + 1} {side:>4}: {got.rate:7.1f} jobs/s{extra}")
                    ratio = rates["ours"][-1] / rates["bare"][-1]
                    print(f"{variant} round {n + 1} ratio ours/bare {ratio:.2f}", flush=True)
                ratios = [o / b for o, b in zip(rates["ours"], rates["bare"], strict=True)]
                bare, ours = statistics.median(rates["bare"]), statistics.median(rates["ours"])
                print(
                    f"e2e {variant}: {jobs} fetch_and_cache_joke jobs x {rounds} rounds, "
                    f"concurrency {CONCURRENCY} (median): bare {bare:.1f} jobs/s | "
                    f"ours {ours:.1f} jobs/s | ratios "
                    f"{' '.join(f'{r:.2f}' for r in ratios)} | median ratio "
                    f"{statistics.median(ratios):.2f} (target >= 0.80)",
                    flush=True,
                )
    print(f"after: {_load()}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["bare-worker"]:
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
        asyncio.run(_run_bare_worker(load_settings()))
    else:
        main()
