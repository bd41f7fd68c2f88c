"""A Procrastinate worker that keeps working: supervision, heartbeat watchdog, schedules.

Procrastinate 3.10 stops its worker when the database goes away and never starts it again
(see docs and ``shared/notes/procrastinate-3.10.md``). :class:`Supervisor` runs the worker
in *sessions*: each session opens a fresh connection pool and app, runs Procrastinate's
``Worker`` and, beside it,

- a **watchdog** that writes the worker's heartbeat every ``WORKER_HEARTBEAT_INTERVAL``
  (Procrastinate's own heartbeat task dies silently on its first database error, and is
  cancelled *before* in-flight jobs are awaited on shutdown) and ends the session when a
  write fails or the LISTEN connection is gone;
- **schedules** that defer ``retry_stalled_jobs``, ``health_check_task`` and
  ``scheduled_fetch_random_joke`` every interval with their queueing locks.

When a session ends for any reason but a stop request, the supervisor waits (capped
exponential backoff, ``DB_RECONNECT_MAX_DELAY``) until the database answers and starts a new
one. The first SIGTERM/SIGINT stops taking jobs, waits up to ``WORKER_TIMEOUT`` for running
jobs, re-queues the rest (the retry strategy re-queues ``CancelledError``) and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import psycopg
import psycopg_pool
from procrastinate import App, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException
from procrastinate.job_context import AbortReason
from procrastinate.worker import Worker

from system import db
from system.awaiting import describe_waiting, other_tasks
from system.defects import Defect
from system.durations import format_duration
from system.joblogs import quiet_abort_tracebacks
from system.jokes import HTTP_TIMEOUT
from system.looplag import watch_loop
from system.promises import (
    SESSION_TEARDOWN_MARGIN,
    heartbeat_freshness_limit,
    heartbeat_write_budget,
    session_teardown_limit,
)
from system.settings import Settings
from system.tasks import (
    HEALTH_TASK,
    HTTP_CLIENT_KEY,
    QUEUES,
    SCHEDULED_FETCH_TASK,
    SETTINGS_KEY,
    STALLED_TASK,
    build_app,
)
from system.waker import RetryAwareJobManager, RetryWaker, bind_connector

logger = logging.getLogger("system.worker")

AppFactory = Callable[[Settings, PsycopgConnector], App]

#: ``(task name, interval in seconds)`` pairs that a session defers on a fixed rate.
SchedulePlan = Sequence[tuple[str, float]]

#: Failures that end a session and make the supervisor wait for the database.
SESSION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectorException,
    psycopg.Error,
    psycopg_pool.PoolTimeout,
    psycopg_pool.PoolClosed,
    OSError,
    TimeoutError,
)

_FIRST_RECONNECT_DELAY = 0.1
#: A lost session's teardown ending this much past its limit is a warning (event-loop lag).
_TEARDOWN_SLACK = 0.25
#: Seconds a lost session's worker gets to remove its row (then it is pruned as stalled).
UNREGISTER_WHEN_LOST = 0.5
#: The line ending a lost session's teardown: seconds it took, the limit (the harness reads it).
TEARDOWN_LINE = "lost session ended in %.2fs (limit %s)"

#: Recovery and health checks jump the queue: with every slot busy they run at the next free
#: one instead of behind the backlog (Procrastinate fetches by priority, then id).
MAINTENANCE_PRIORITY = 10
#: The tasks deferred with :data:`MAINTENANCE_PRIORITY` by a schedule.
MAINTENANCE_TASKS = frozenset({STALLED_TASK, HEALTH_TASK})

# Scheduling note: Procrastinate's periodic tasks (cron) tick once per second at best, and
# a failing periodic deferrer stops the whole worker. Compressed-time runs need sub-second
# intervals, so each session runs one small loop per periodic task instead. Every worker
# process defers; the tasks' queueing locks (AlreadyEnqueued) keep one queued copy at most.
# A copy already running holds the next one back only for one interval from its start: its
# worker may have died with it, and its heartbeat looks fresh for STALLED_JOB_THRESHOLD more.
# A 4-worker soak killed the worker running ``retry_stalled_jobs`` 30 ms into its run; with
# no such bound the next recovery waited for that heartbeat to age (2 s in the fast profile)
# and a job stalled by an earlier kill ran again 4.4 s after it instead of about 2.4 s.
# Two recoveries at once are safe: each re-checks every job under a row lock.
_PENDING_SQL = """
SELECT EXISTS (
    SELECT 1 FROM procrastinate_jobs j
      LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
     WHERE j.task_name = %(task)s
       AND (j.status = 'todo'
            OR (j.status = 'doing'
                AND w.last_heartbeat >= now() - make_interval(secs => %(threshold)s)
                AND (SELECT max(e.at) FROM procrastinate_events e
                      WHERE e.job_id = j.id AND e.type = 'started')
                    >= now() - make_interval(secs => %(interval)s))))
"""


def _stop_worker(worker: Worker, *, abort_after: float | None) -> None:
    """Ask ``worker`` to stop; outcome writes still failing give up at once (see
    :meth:`system.waker.RetryAwareJobManager._write_outcome`). With ``abort_after``, the jobs
    it still runs that many seconds from now are aborted then (see :func:`_abort_running`)."""
    manager = worker.app.job_manager
    if isinstance(manager, RetryAwareJobManager):
        manager.give_up.set()
    worker.stop()
    if abort_after is not None:
        asyncio.get_running_loop().call_later(abort_after, _abort_running, worker)


def _abort_running(worker: Worker) -> None:
    """Abort (and so re-queue) the jobs ``worker`` still runs, as Procrastinate's shutdown does
    once its graceful timeout is over. Procrastinate 3.10 starts that timeout only after it
    has cancelled its side tasks, which waits up to a second per round for one that missed
    its cancellation (``utils.CANCEL_TIMEOUT``): SIGTERMed workers' jobs ran 0.56 to 1.16 s
    past the signal against a 0.5 s ``WORKER_TIMEOUT`` (4-worker soak, seed 20261216). So the
    deadline runs from the stop request here. Private API (``_running_jobs``, ``_abort_job``):
    Procrastinate has no public way to abort one worker's running jobs."""
    running = getattr(worker, "_running_jobs", None) or {}
    for task, context in list(running.items()):
        if not task.done():
            worker._abort_job(task, context, AbortReason.SHUTDOWN)


def default_worker_name() -> str:
    """``worker-<pid>``: unique among live processes on this machine."""
    return f"worker-{os.getpid()}"


def adopt_app(app: App) -> AppFactory:
    """An ``app_factory`` that runs a user's existing ``app`` under the :class:`Supervisor`.

    Each session points the same App object at the session's fresh connector, with a
    :class:`~system.waker.RetryAwareJobManager` (so the retry waker hears of its retries).
    The app keeps that connector afterwards; callers that need the old one restore it.
    """

    def factory(settings: Settings, connector: PsycopgConnector) -> App:
        return bind_connector(app, connector)

    return factory


class Supervisor:
    """Runs Procrastinate's worker for as long as asked, across database outages.

    ``app_factory`` builds the app of each session (the system's by default; see
    :func:`adopt_app` for a user's own app). ``queues`` are the queues to take jobs from
    (None: all). ``schedules`` is True for the system's plan (stalled-job recovery, health
    check, scheduled fetch, at their configured intervals), False for none, or an explicit
    plan of ``(task name, interval)`` pairs. ``migrate_command`` is named when the schema
    is missing.
    """

    def __init__(
        self,
        settings: Settings,
        name: str | None = None,
        *,
        app_factory: AppFactory = build_app,
        schedules: bool | SchedulePlan = True,
        queues: Sequence[str] | None = QUEUES,
        migrate_command: str = "python -m system migrate",
    ) -> None:
        self.settings = settings
        self.name = name or default_worker_name()
        self.app_factory = app_factory
        self.schedules = schedules
        self.queues: tuple[str, ...] | None = None if queues is None else tuple(queues)
        self.migrate_command = migrate_command
        self.sessions = 0
        self._stop: asyncio.Event | None = None
        self._worker: Worker | None = None
        self._announced = False
        self._last_beat: float | None = None  # monotonic time of the last heartbeat written

    # -- control -------------------------------------------------------------------------
    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop taking jobs, finish or re-queue running ones, then make :meth:`run` return."""
        if self._stop is None or self._stop.is_set():
            return
        logger.info(
            "%s: stopping gracefully (running jobs get up to %s, then are re-queued)",
            reason,
            format_duration(self.settings.worker_timeout),
        )
        self._stop.set()
        if self._worker is not None:
            _stop_worker(self._worker, abort_after=self._abort_after)

    @property
    def _abort_after(self) -> float | None:
        """Seconds running jobs get once the worker is asked to stop (None: forever, the
        ``no-shutdown-abort`` defect)."""
        if Defect.NO_SHUTDOWN_ABORT in self.settings.defects:
            return None
        return self.settings.worker_timeout

    @property
    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether this worker takes jobs now, and why: its session is up, it is not stopping,
        and its last heartbeat write succeeded within the freshness limit that ``/health``
        applies to every worker (:func:`system.promises.heartbeat_freshness_limit`)."""
        limit = heartbeat_freshness_limit(self.settings.worker_heartbeat_interval)
        age = None if self._last_beat is None else time.monotonic() - self._last_beat
        healthy = (
            self._worker is not None and not self.stopping and age is not None and age <= limit
        )
        if Defect.HEALTH_ALWAYS_OK in self.settings.defects:
            healthy = True
        return healthy, {
            "worker": self.name,
            "session": self._worker is not None,
            "stopping": self.stopping,
            "heartbeat_age": None if age is None else round(age, 3),
            "freshness_limit": limit,
        }

    # -- main loop -----------------------------------------------------------------------
    async def run(self) -> int:
        """Run until stopped; return the process exit code (0 after a graceful stop)."""
        self._stop = stop = asyncio.Event()
        settings = self.settings
        quiet_abort_tracebacks()  # a shutdown's aborts are re-queued on time (system.joblogs)
        if settings.defects:
            logger.warning(
                "!!! DELIBERATE DEFECTS ENABLED: %s. This worker is broken on purpose "
                "(BULLETPROOF_DEFECTS); never run it for real. !!!",
                ", ".join(sorted(settings.defects)),
            )
        # the loop's stalls, logged: evidence for judging its timers (system.looplag)
        loop_watch = asyncio.create_task(watch_loop(), name="event loop stalls")
        try:
            return await self._supervise(stop)
        finally:
            loop_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_watch

    async def _supervise(self, stop: asyncio.Event) -> int:
        """The supervision loop: sessions, and backoff between them, until ``stop``."""
        settings = self.settings
        supervised = Defect.NO_DB_SUPERVISION not in settings.defects
        watched = supervised and Defect.NO_WATCHDOG not in settings.defects
        delay = _FIRST_RECONNECT_DELAY
        while not stop.is_set():
            sessions_before = self.sessions
            try:
                async with asyncio.timeout(settings.connect_timeout_arg + 1.0):
                    await db.probe(settings, self.application_name)
                reason = await self._session(watched)
            except SESSION_ERRORS as exc:
                reason = f"{type(exc).__name__}: {_first_line(exc)}"
            if reason is None or stop.is_set():
                break
            if not supervised:
                logger.error("worker stopped (%s); DEFECT no-db-supervision: exiting", reason)
                return 1
            if self.sessions > sessions_before:
                delay = _FIRST_RECONNECT_DELAY  # a session ran: start the backoff afresh
            elif self.sessions > 0 and Defect.SUPERVISOR_GIVES_UP in settings.defects:
                # the attempt after a lost session failed
                logger.error("reconnect failed (%s); DEFECT supervisor-gives-up: exiting", reason)
                return 1
            logger.warning(
                "database unavailable (%s): retrying in %s", reason, format_duration(delay)
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            delay = min(delay * 2, settings.db_reconnect_max_delay)
        logger.info("worker %s stopped", self.name)
        return 0

    @property
    def application_name(self) -> str:
        """PostgreSQL ``application_name`` of every connection this worker opens."""
        return db.worker_application_name(self.name)

    async def _session(self, watched: bool) -> str | None:
        """One pool + app + Procrastinate worker. Returns why it ended (None: stop request)."""
        settings = self.settings
        # set when the pool failed to connect twice in a row: the database is gone (db.py)
        connect_failed = asyncio.Event()
        pool = await db.open_worker_pool(
            settings, self.name, self.application_name, on_connect_failed=connect_failed.set
        )
        # one client per session: its connections to the joke API are reused across runs
        http = httpx.AsyncClient(timeout=HTTP_TIMEOUT)
        side_tasks: list[asyncio.Task[Any]] = []
        run_task: asyncio.Task[None] | None = None
        # set when the session is lost: the whole teardown (stopping the worker, cancelling
        # the rest, closing the pool and the HTTP client) ends by then (the system's promise)
        ends_by: float | None = None
        lost_at = 0.0
        teardown_limit = session_teardown_limit(settings.worker_timeout, settings.db_pool_timeout)
        try:
            app = self.app_factory(settings, PsycopgConnector())
            if isinstance(app.job_manager, RetryAwareJobManager):
                app.job_manager.beat_on_fetch = watched
                app.job_manager.outcome_retry_for = settings.worker_timeout
            await app.open_async(pool=pool)
            if not await app.check_connection_async():
                return f"Procrastinate's tables are missing: run `{self.migrate_command}`"
            worker = Worker(
                app,
                queues=None if self.queues is None else list(self.queues),
                name=self.name,
                concurrency=settings.worker_concurrency,
                wait=True,
                fetch_job_polling_interval=settings.worker_poll_interval,
                abort_job_polling_interval=max(settings.worker_poll_interval, 1.0),
                # None (Procrastinate's default) waits for running jobs forever
                shutdown_graceful_timeout=None
                if Defect.NO_SHUTDOWN_ABORT in settings.defects
                else settings.worker_timeout,
                listen_notify=True,
                delete_jobs="never",
                install_signal_handlers=False,
                update_heartbeat_interval=settings.worker_heartbeat_interval,
                # prune only workers whose jobs count as stalled anyway
                stalled_worker_timeout=settings.stalled_job_threshold,
                additional_context={HTTP_CLIENT_KEY: http, SETTINGS_KEY: settings},
            )
            if self._stop is None or self._stop.is_set():
                return None
            self._worker = worker
            run_task = asyncio.create_task(worker.run(), name=f"procrastinate worker {self.name}")
            await self._wait_registered(worker, run_task)
            self._last_beat = time.monotonic()  # the worker row was just written
            await self._wait_listening(app, pool, run_task)
            if self.stopping:
                # a stop that came before run() started was cleared by it
                _stop_worker(worker, abort_after=self._abort_after)
            self.sessions += 1
            self._announce()
            waited: set[asyncio.Task[Any]] = {run_task}
            watchdog: asyncio.Task[str] | None = None
            if watched:
                connect_failed.clear()  # failures during start-up ended it or did not matter
                watchdog = asyncio.create_task(
                    self._watchdog(app, worker, run_task, connect_failed),
                    name="bulletproof watchdog",
                )
                side_tasks.append(watchdog)
                waited.add(watchdog)
            side_tasks.extend(self._start_schedules(app))
            waker = self._waker_for(app, pool)
            side_tasks.append(asyncio.create_task(waker.run(), name="bulletproof retry waker"))
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            if run_task.done():
                exc = run_task.exception()
                if self.stopping:
                    # jobs aborted by the shutdown were just re-queued: wake the other workers
                    await waker.drain()
                    if exc is not None:
                        logger.error("graceful stop ended with an error: %s", _first_line(exc))
                    return None
                if exc is not None:
                    return f"worker failed: {type(exc).__name__}: {_first_line(exc)}"
                return "Procrastinate's worker stopped by itself (a side task failed)"
            assert watchdog is not None
            reason = watchdog.result()
            logger.warning("worker session lost (%s): stopping it to start afresh", reason)
            lost_at = time.monotonic()
            ends_by = lost_at + teardown_limit
            if isinstance(app.job_manager, RetryAwareJobManager):
                app.job_manager.unregister_within = min(
                    UNREGISTER_WHEN_LOST, settings.db_pool_timeout
                )
            await self._end_worker(worker, run_task, until=ends_by - SESSION_TEARDOWN_MARGIN)
            return reason
        finally:

            def within(cap: float) -> float:
                """``cap`` seconds, or what is left of the teardown limit if less."""
                if ends_by is None:
                    return cap
                return max(0.0, min(cap, ends_by - time.monotonic()))

            self._worker = None
            for task in side_tasks:
                task.cancel()
            if run_task is not None and not run_task.done():
                run_task.cancel()
            # Bounded waits, never an unbounded await of a cancellation: psycopg cancels a
            # query on a blackholed connection by trying the server for up to 10 s.
            leftovers = [*side_tasks, *([run_task] if run_task is not None else [])]
            for task in leftovers:
                task.add_done_callback(db.retrieve_outcome)
            if leftovers and (left := within(2.0)) > 0:
                _, stuck = await asyncio.wait(leftovers, timeout=left)
                if stuck:
                    logger.warning(
                        "session tasks not done after cancellation, left behind: %s",
                        describe_waiting(other_tasks()),
                    )
            await db.close_pool(pool, timeout=within(2.0))
            closing = asyncio.create_task(http.aclose(), name="close http client")
            closing.add_done_callback(db.retrieve_outcome)
            if (left := within(2.0)) > 0:
                await asyncio.wait({closing}, timeout=left)
            if ends_by is not None:
                took = time.monotonic() - lost_at
                logger.log(
                    logging.WARNING if took > teardown_limit + _TEARDOWN_SLACK else logging.INFO,
                    TEARDOWN_LINE,
                    took,
                    format_duration(teardown_limit),
                )

    async def _wait_registered(self, worker: Worker, run_task: asyncio.Task[None]) -> None:
        # Worker.run() registers the worker row first, then starts fetching: `worker_id`
        # is the only public sign of that, so poll it briefly.
        while worker.worker_id is None and not run_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if run_task.done():
            run_task.result()  # raises the start-up error
            raise ConnectorException("worker stopped during start-up")

    async def _wait_listening(
        self, app: App, pool: psycopg_pool.AsyncConnectionPool, run_task: asyncio.Task[None]
    ) -> None:
        """Announce nothing before the LISTEN connection works (RetryAwareJobManager.probe).

        Procrastinate opens it beside its first fetch: a job re-queued in between (by a worker
        stopping, say) would wait a full poll. Probes go out until one comes back; after
        ``db_pool_timeout`` the session goes on and polling finds jobs meanwhile.
        """
        manager = app.job_manager
        if not isinstance(manager, RetryAwareJobManager):
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.settings.db_pool_timeout
        channel, payload = manager.probe(self.queues)
        pause = 0.02
        while not manager.listening.is_set() and not run_task.done():
            if loop.time() >= deadline:
                logger.warning(
                    "LISTEN connection not confirmed within %s: new jobs are found by polling "
                    "until it is",
                    format_duration(self.settings.db_pool_timeout),
                )
                return
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    async with pool.connection() as conn:
                        await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
            except SESSION_ERRORS as exc:
                logger.debug("LISTEN probe not sent: %s", _first_line(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await manager.listening.wait()
            pause = min(pause * 2, 0.5)
        logger.debug("LISTEN confirmed after %.3f s", loop.time() - started)

    def _announce(self) -> None:
        if not self._announced:
            self._announced = True
            print(f"bulletproof: worker ready name={self.name}", file=sys.stderr, flush=True)
            logger.info(
                "worker %s taking jobs on queues %s (concurrency %d)",
                self.name,
                "(all)" if self.queues is None else ", ".join(self.queues),
                self.settings.worker_concurrency,
            )
        else:
            logger.warning("database back: worker resumed name=%s", self.name)

    async def _end_worker(
        self, worker: Worker, run_task: asyncio.Task[None], *, until: float
    ) -> None:
        """Stop a worker whose session is lost: its running jobs get ``WORKER_TIMEOUT``, its
        pending database calls the pool timeout; it is cancelled if still running at
        ``until`` (monotonic time), which leaves the rest of the teardown limit for closing."""
        _stop_worker(worker, abort_after=self._abort_after)
        budget = max(0.0, until - time.monotonic())
        done, _ = await asyncio.wait({run_task}, timeout=budget)
        if not done:
            logger.warning(
                "worker did not stop within %s: cancelling it (waiting: %s)",
                format_duration(budget),
                describe_waiting(other_tasks()),
            )
            run_task.cancel()

    async def _watchdog(
        self,
        app: App,
        worker: Worker,
        run_task: asyncio.Task[None],
        connect_failed: asyncio.Event,
    ) -> str:
        """Beat the heartbeat; return a reason when the session must be restarted.

        A pool that failed to connect twice in a row (``connect_failed``) ends the session at
        once, heartbeat or not: the supervisor then probes and starts afresh on its own backoff.
        """
        settings = self.settings
        budget = heartbeat_write_budget(settings.db_pool_timeout, settings.db_connect_timeout)
        lost = asyncio.create_task(connect_failed.wait(), name="pool connect failures")
        try:
            while True:
                if lost.done():  # while stopping: failures no longer end the session
                    await asyncio.sleep(settings.worker_heartbeat_interval)
                else:
                    await asyncio.wait({lost}, timeout=settings.worker_heartbeat_interval)
                if lost.done() and not self.stopping:
                    return "the pool failed to connect twice in a row"
                failure = await self._beat(app, worker, run_task, budget, lost)
                manager = app.job_manager
                if failure is None and isinstance(manager, RetryAwareJobManager):
                    failure = manager.outcome_lost  # a job left `doing` under this session
                if failure is not None:
                    if self.stopping:
                        continue
                    return failure
                if not self.stopping and not _listener_alive():
                    return "LISTEN connection lost"
        finally:
            lost.cancel()

    async def _beat(
        self,
        app: App,
        worker: Worker,
        run_task: asyncio.Task[None],
        budget: float,
        lost: asyncio.Task[Any],
    ) -> str | None:
        """One heartbeat write: why it failed, or None."""
        worker_id = worker.worker_id
        if worker_id is None or run_task.done():
            return None
        beat = asyncio.create_task(app.job_manager.update_heartbeat(worker_id))
        beat.add_done_callback(db.retrieve_outcome)
        watched = {beat} if lost.done() else {beat, lost}
        await asyncio.wait(watched, timeout=budget, return_when=asyncio.FIRST_COMPLETED)
        if not beat.done():
            beat.cancel()  # not awaited: see the note in _session's cleanup
            if lost.done():
                return "heartbeat write failed: the pool failed to connect twice in a row"
            return f"heartbeat write failed: no answer within {format_duration(budget)}"
        exc = beat.exception()
        if exc is None:
            self._last_beat = time.monotonic()
            return None
        return f"heartbeat write failed: {type(exc).__name__}: {_first_line(exc)}"

    def _waker_for(self, app: App, pool: psycopg_pool.AsyncConnectionPool) -> RetryWaker:
        """The retry waker (system/waker.py), fed with this app's stored retries."""
        settings = self.settings
        waker = RetryWaker(
            pool,
            self.queues,
            # jobs scheduled by other processes are found by this scan; polling covers the rest
            scan_interval=max(settings.worker_poll_interval, 1.0),
            timeout=settings.db_pool_timeout + 1.0,
        )
        if isinstance(app.job_manager, RetryAwareJobManager):
            app.job_manager.retry_listeners.append(waker.note)
        return waker

    def schedule_plan(self) -> list[tuple[str, float | None]]:
        """The ``(task, interval)`` pairs this supervisor defers (None: not scheduled)."""
        if isinstance(self.schedules, bool):
            if not self.schedules:
                return []
            settings = self.settings
            return [
                (STALLED_TASK, settings.stalled_job_check_interval),
                (HEALTH_TASK, settings.health_check_interval),
                (SCHEDULED_FETCH_TASK, settings.scheduled_fetch_interval),
            ]
        return list(self.schedules)

    def _start_schedules(self, app: App) -> list[asyncio.Task[None]]:
        plan = self.schedule_plan()
        return [
            asyncio.create_task(self._schedule(app, task, interval), name=f"schedule {task}")
            for task, interval in plan
            if interval is not None
        ]

    async def _schedule(self, app: App, task_name: str, interval: float) -> None:
        pool = db.pool_of(app)
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not self.stopping:
            try:
                async with asyncio.timeout(self.settings.db_pool_timeout + 1.0):
                    async with pool.connection() as conn:
                        cur = await conn.execute(
                            _PENDING_SQL,
                            {
                                "task": task_name,
                                "threshold": self.settings.stalled_job_threshold,
                                "interval": interval,
                            },
                        )
                        row = await cur.fetchone()
                    if not (row and row[0]):
                        priority = MAINTENANCE_PRIORITY if task_name in MAINTENANCE_TASKS else 0
                        await app.configure_task(task_name, priority=priority).defer_async()
            except AlreadyEnqueued:
                pass
            except SESSION_ERRORS as exc:
                logger.warning("could not defer %s: %s", task_name, _first_line(exc))
            # fixed rate: the time spent deferring does not stretch the interval
            due = max(due + interval, loop.time())
            await asyncio.sleep(due - loop.time())


def _listener_alive() -> bool:
    # Procrastinate names its LISTEN task "listener"; when it dies, jobs are only found by
    # polling and nobody notices. Looking it up by name is the only way from outside.
    return any(t.get_name() == "listener" and not t.done() for t in asyncio.all_tasks())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def install_stop_signals(on_stop: Callable[[str], None]) -> None:
    """First SIGTERM/SIGINT calls ``on_stop``; the defaults are restored for the next one."""
    loop = asyncio.get_running_loop()

    def handler(sig: signal.Signals) -> None:
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(s)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        on_stop(f"received {sig.name}")

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler, sig)


async def run_worker(settings: Settings, name: str | None = None) -> int:
    """``python -m system worker``: supervise until the first SIGTERM/SIGINT."""
    supervisor = Supervisor(settings, name)
    install_stop_signals(supervisor.request_stop)
    return await supervisor.run()
