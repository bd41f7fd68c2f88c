"""Throughput of our supervised worker versus a bare Procrastinate worker, side by side.

Both run a trivial task with the same concurrency, queues and options against a private
PostgreSQL (``harness.postgres.LocalPostgres``), alternating rounds on fresh databases.
Throughput is measured from the database's own event times: jobs / (last ``succeeded`` -
first ``started``), so start-up and shutdown do not count. Prints figures; asserts nothing.

Environment: ``BENCH_JOBS`` (jobs per round, default 1000), ``BENCH_ROUNDS`` (default 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
import sys
from collections.abc import Awaitable, Callable

import psycopg
from procrastinate import App, PsycopgConnector
from procrastinate.types import JSONDict

from harness.postgres import LocalPostgres
from harness.wait import wait_for_async
from system import db
from system.retry import ExponentialBackoffStrategy
from system.settings import Settings, load_settings
from system.tasks import QUEUES, build_app
from system.worker import Supervisor

TASK = "bench_noop"
CONCURRENCY = 10


def _register_noop(app: App, strategy: ExponentialBackoffStrategy | None) -> None:
    async def bench_noop(i: int) -> int:
        return i

    app.task(name=TASK, queue="default", retry=strategy or False)(bench_noop)


def _our_app(settings: Settings, connector: PsycopgConnector) -> App:
    app = build_app(settings, connector)
    _register_noop(app, ExponentialBackoffStrategy(5, 2.0, 300.0))
    return app


async def _defer(dsn: str, jobs: int) -> None:
    app = App(connector=PsycopgConnector(conninfo=dsn))
    _register_noop(app, None)
    async with app.open_async():
        payloads: list[JSONDict] = [{"i": i} for i in range(jobs)]
        await app.configure_task(TASK).batch_defer_async(*payloads)


async def _throughput(dsn: str, jobs: int, run: Callable[[], Awaitable[None]]) -> float:
    """Defer ``jobs`` no-op jobs, let ``run`` process them, return jobs per second."""
    await _defer(dsn, jobs)
    await run()
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT EXTRACT(EPOCH FROM max(e.at) FILTER (WHERE e.type = 'succeeded') "
            "  - min(e.at) FILTER (WHERE e.type = 'started'))::float8 "
            "FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id "
            "WHERE j.task_name = %s",
            (TASK,),
        )
        row = await cur.fetchone()
    assert row is not None and row[0]
    return jobs / float(row[0])


async def _wait_all_done(dsn: str, jobs: int, timeout: float = 300.0) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:

        async def all_done() -> bool:
            cur = await conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s "
                "AND status = 'succeeded'",
                (TASK,),
            )
            row = await cur.fetchone()
            return bool(row and row[0] >= jobs)

        await wait_for_async(
            all_done, timeout=timeout, what=f"{jobs} jobs to succeed", interval=0.05
        )


async def _bare_round(dsn: str, settings: Settings, jobs: int) -> float:
    app = App(connector=PsycopgConnector(conninfo=dsn, max_size=settings.db_pool_size))
    _register_noop(app, None)

    async def run() -> None:
        async with app.open_async():
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=list(QUEUES),
                    name="bare",
                    concurrency=CONCURRENCY,
                    wait=True,
                    listen_notify=True,
                    delete_jobs="never",
                    fetch_job_polling_interval=settings.worker_poll_interval,
                    shutdown_graceful_timeout=settings.worker_timeout,
                    update_heartbeat_interval=settings.worker_heartbeat_interval,
                    install_signal_handlers=False,
                )
            )
            try:
                await _wait_all_done(dsn, jobs)
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    return await _throughput(dsn, jobs, run)


async def _ours_round(dsn: str, settings: Settings, jobs: int) -> float:
    supervisor = Supervisor(settings, "ours", app_factory=_our_app)

    async def run() -> None:
        task = asyncio.create_task(supervisor.run())
        try:
            await _wait_all_done(dsn, jobs)
        finally:
            supervisor.request_stop("benchmark round done")
            await task

    return await _throughput(dsn, jobs, run)


def main() -> None:
    """Run the rounds and print jobs/second for both workers and their ratio."""
    jobs = int(os.environ.get("BENCH_JOBS", "1000"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    results: dict[str, list[float]] = {"bare": [], "ours": []}
    with LocalPostgres() as server:
        server.start()
        for n in range(rounds):
            # alternate the order so neither side always runs on a warmer server
            order = ("bare", "ours") if n % 2 == 0 else ("ours", "bare")
            for kind in order:
                name = f"bench_{kind}_{n}"
                dsn = server.create_database(name)
                settings = load_settings(
                    {
                        "PROCRASTINATE_DATABASE_URL": dsn,
                        "WORKER_CONCURRENCY": str(CONCURRENCY),
                    }
                )
                asyncio.run(db.migrate(settings, build_app(settings)))
                round_fn = _bare_round if kind == "bare" else _ours_round
                rate = asyncio.run(round_fn(dsn, settings, jobs))
                results[kind].append(rate)
                print(f"round {n + 1} {kind:>4}: {rate:8.1f} jobs/s", flush=True)
                server.drop_database(name)
    bare, ours = statistics.median(results["bare"]), statistics.median(results["ours"])
    # rounds run back to back in pairs: the paired ratio cancels most of the machine's load
    paired = statistics.median(o / b for o, b in zip(results["ours"], results["bare"], strict=True))
    print(
        f"worker throughput, {jobs} no-op jobs x {rounds} rounds, concurrency {CONCURRENCY} "
        f"(median): bare Procrastinate {bare:.1f} jobs/s | ours {ours:.1f} jobs/s | "
        f"ratio ours/bare {ours / bare:.2f}, paired per round {paired:.2f} (target >= 0.90)",
        flush=True,
    )


if __name__ == "__main__":
    main()
