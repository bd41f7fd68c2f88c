"""``python -m system migrate | worker [--name N] | api [--host H] [--port P] [--no-worker]``.

Exit codes: 0 done (or stopped gracefully), 1 runtime failure, 2 bad settings or arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable

from system.settings import Settings, SettingsError, load_settings

logger = logging.getLogger("system")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m system",
        description="A bulletproof Procrastinate worker and its API (settings: environment).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply Procrastinate's schema and the jokes table (idempotent)")
    worker = sub.add_parser("worker", help="run a worker on queues api_calls and default")
    worker.add_argument("--name", help="worker name (default: worker-<pid>)")
    api = sub.add_parser("api", help="serve the HTTP API (with an in-process worker)")
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any)")
    api.add_argument("--no-worker", action="store_true", help="serve the API only")
    api.add_argument("--name", help="name of the in-process worker (default: worker-<pid>)")
    return parser


def configure_logging() -> None:
    """INFO and up to stderr, with time, level and logger name (shared with bulletproof)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("procrastinate.blueprints").setLevel(logging.WARNING)


async def _migrate(settings: Settings) -> int:
    from system import db
    from system.tasks import build_app

    return await report_migration(db.migrate(settings, build_app(settings)))


async def report_migration(migration: Awaitable[list[str]]) -> int:
    """Await a migration and log what it did: 0, or 1 with a one-line error (shared with
    bulletproof)."""
    import psycopg

    try:
        done = await migration
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"bulletproof: migrate failed: {first}", file=sys.stderr)
        return 1
    for line in done:
        logger.info("migrate: %s", line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"bulletproof: {exc}", file=sys.stderr)
        return 2
    configure_logging()
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "worker":
        from system.worker import run_worker

        return asyncio.run(run_worker(settings, args.name))
    from system.api import run_api

    return asyncio.run(
        run_api(
            settings,
            host=args.host,
            port=args.port,
            with_worker=not args.no_worker,
            worker_name=args.name,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
