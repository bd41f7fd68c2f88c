"""``python -m bulletproof worker|migrate --app module:app``: bulletproof for your own app.

Settings come from the environment, as for ``python -m system``. Exit codes: 0 done (or
stopped gracefully), 1 runtime failure, 2 bad app, settings or arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from procrastinate import App

from bulletproof.core import AppError, check_stalled_recovery, load_app, migrate_main, supervise
from system.__main__ import configure_logging
from system.settings import Settings, SettingsError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bulletproof",
        description="Run your Procrastinate app with the bulletproof worker (settings: "
        "environment, e.g. PROCRASTINATE_DATABASE_URL).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    app_help = "your procrastinate.App, as module:attribute (e.g. mypkg.tasks:app)"
    migrate_cmd = sub.add_parser(
        "migrate", help="apply Procrastinate's schema and the recoveries table (idempotent)"
    )
    migrate_cmd.add_argument("--app", required=True, help=app_help)
    worker = sub.add_parser("worker", help="run a supervised worker until SIGTERM/SIGINT")
    worker.add_argument("--app", required=True, help=app_help)
    worker.add_argument("--name", help="worker name (default: worker-<pid>)")
    worker.add_argument(
        "--queues", help="comma-separated queues to take jobs from (default: all queues)"
    )
    worker.add_argument(
        "--health-port",
        type=_port,
        default=os.environ.get(HEALTH_PORT_ENV) or None,
        help=f"serve GET /health on this port (env {HEALTH_PORT_ENV}; 0: any free port): "
        "200 while the worker takes jobs, 503 while it does not",
    )
    worker.add_argument(
        "--health-host", default="127.0.0.1", help="address /health listens on (default: loopback)"
    )
    return parser


HEALTH_PORT_ENV = "BULLETPROOF_HEALTH_PORT"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; use 0 to 65535")
    return port


def _queues(text: str | None) -> list[str] | None:
    if text is None:
        return None
    queues = [q.strip() for q in text.split(",") if q.strip()]
    return queues or None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    queues = _queues(getattr(args, "queues", None))
    try:
        app = load_app(args.app)
        if args.command == "migrate":
            return asyncio.run(migrate_main(app))
        check_stalled_recovery(app, queues)
        settings = load_settings()
    except (AppError, SettingsError) as exc:
        print(f"bulletproof: {exc}", file=sys.stderr)
        return 2
    configure_logging()
    try:
        return _run_worker(app, settings, args, queues)
    except AppError as exc:
        print(f"bulletproof: {exc}", file=sys.stderr)
        return 2


def _run_worker(
    app: App, settings: Settings, args: argparse.Namespace, queues: list[str] | None
) -> int:
    return asyncio.run(
        supervise(
            app,
            settings=settings,
            name=args.name,
            queues=queues,
            migrate_command=f"python -m bulletproof migrate --app {args.app}",
            health_port=args.health_port,
            health_host=args.health_host,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
