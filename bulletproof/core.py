"""Run a user's own Procrastinate app with the bulletproof parts (see :mod:`bulletproof`)."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from procrastinate import App

from system import db
from system.settings import Settings, SettingsError, load_settings
from system.tasks import STALLED_TASK
from system.worker import Supervisor, adopt_app, install_stop_signals
from system.worker_health import serve_health

logger = logging.getLogger("bulletproof")


class AppError(ValueError):
    """An app that cannot be used; ``str()`` is one line saying what is wrong and what to do."""


def import_attribute(path: str, *, what: str, example: str) -> Any:
    """The object at ``module:attribute`` (dots allowed in the attribute), or an
    :class:`AppError` naming ``what`` (e.g. ``--app``) and what to do."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise AppError(f"{what} {path!r} must be 'module:attribute', e.g. {example!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppError(
            f"{what} {path!r}: cannot import {module_name!r} ({exc}); is it installed or on "
            "PYTHONPATH (the current directory is)?"
        ) from None
    except Exception as exc:  # the user's module failed while importing: say how, in one line
        raise AppError(
            f"{what} {path!r}: importing {module_name!r} failed: {type(exc).__name__}: "
            f"{_first_line(exc)}"
        ) from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(
                f"{what} {path!r}: {module_name!r} has no attribute {attribute!r}"
            ) from None
    return obj


def load_app(path: str) -> App:
    """The ``procrastinate.App`` at ``module:attribute`` (or Procrastinate's ``module.attribute``).

    Raises :class:`AppError` when the module does not import or the object is not an App.
    """
    if ":" not in path:  # Procrastinate's own CLI form
        module_name, _, attribute = path.rpartition(".")
        path = f"{module_name}:{attribute}" if module_name and attribute else path
    obj = import_attribute(path, what="--app", example="mypkg.tasks:app")
    if not isinstance(obj, App):
        raise AppError(f"--app {path!r} is a {type(obj).__name__}, not a procrastinate.App")
    return obj


def check_stalled_recovery(app: App, queues: Sequence[str] | None) -> None:
    """Raise :class:`AppError` unless ``app`` has the recovery task on a queue in ``queues``."""
    task = app.tasks.get(STALLED_TASK)
    if task is None:
        raise AppError(
            f"the app has no {STALLED_TASK} task: call bulletproof.register_stalled_recovery(app) "
            "where the app is defined"
        )
    if queues is not None and task.queue not in queues:
        raise AppError(
            f"the {STALLED_TASK} task is on queue {task.queue!r}, which the worker's queues "
            f"({', '.join(queues)}) leave out: add it, or register the task on one of them"
        )


async def supervise(
    app: App,
    *,
    settings: Settings | None = None,
    name: str | None = None,
    queues: Sequence[str] | None = None,
    migrate_command: str = "python -m bulletproof migrate --app <module:app>",
    health_port: int | None = None,
    health_host: str = "127.0.0.1",
) -> int:
    """Run ``app``'s jobs in a supervised worker until SIGTERM/SIGINT; return the exit code.

    The worker survives database outages (a fresh pool and Procrastinate worker per session,
    with capped backoff in between), writes its heartbeat from a watchdog, wakes retries at
    their time, and defers ``retry_stalled_jobs`` every ``STALLED_JOB_CHECK_INTERVAL`` (the
    app must have it: :func:`register_stalled_recovery`). ``settings`` default to the
    environment (:func:`load_settings`); ``queues`` None takes jobs from every queue. The
    first SIGTERM/SIGINT stops gracefully (0). The app's connector is restored afterwards.
    With ``health_port`` (0: any free port), ``GET http://health_host:port/health`` answers
    200 while the worker takes jobs and 503 while it does not (:mod:`system.worker_health`).
    """
    settings = settings if settings is not None else load_settings()
    check_stalled_recovery(app, queues)
    supervisor = Supervisor(
        settings,
        name,
        app_factory=adopt_app(app),
        schedules=[(STALLED_TASK, settings.stalled_job_check_interval)],
        queues=queues,
        migrate_command=migrate_command,
    )
    connector, job_manager = app.connector, app.job_manager
    health = None
    try:
        if health_port is not None:
            try:
                health = await serve_health(supervisor.health, host=health_host, port=health_port)
            except OSError as exc:
                raise AppError(
                    f"health: cannot listen on {health_host}:{health_port} ({exc.strerror}); "
                    "choose another port, or 0 for any free one"
                ) from None
            bound = health.sockets[0].getsockname()
            logger.info("health: GET http://%s:%s/health", bound[0], bound[1])
        install_stop_signals(supervisor.request_stop)
        return await supervisor.run()
    finally:
        if health is not None:
            health.close()
        app.connector, app.job_manager = connector, job_manager


async def migrate(
    app: App,
    settings: Settings | None = None,
    *,
    extra_sql: Sequence[str] = (),
    tables: Sequence[str] = (),
) -> list[str]:
    """Make the database ready for ``app`` under bulletproof; safe to run again, concurrently.

    Applies Procrastinate's schema if it is missing, the table stalled-job recovery writes
    to, then your own idempotent ``extra_sql`` (``CREATE TABLE IF NOT EXISTS ...``; ``tables``
    names what it creates, for the log), all under one advisory lock. Connects to
    ``settings.procrastinate_database_url`` (default: the environment). Returns what was done.
    """
    settings = settings if settings is not None else load_settings()
    return await db.migrate_recovery(settings, app, extra_sql, tables=tables)


async def migrate_main(
    app: App, *, extra_sql: Sequence[str] = (), tables: Sequence[str] = ()
) -> int:
    """The body of a migrate command: :func:`migrate` with settings from the environment,
    what was done logged, failures as one line on stderr. Returns the exit code (0, 1, or 2
    for bad settings)."""
    from system.__main__ import configure_logging, report_migration

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"bulletproof: {exc}", file=sys.stderr)
        return 2
    configure_logging()
    return await report_migration(migrate(app, settings, extra_sql=extra_sql, tables=tables))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
