"""Start scheduled retries at their retry time instead of at the next poll.

Procrastinate's worker fetches when a ``job_inserted`` notification arrives on its LISTEN
channels, or every ``fetch_job_polling_interval`` (``WORKER_POLL_INTERVAL``, 5 s). A retry is
an UPDATE of the job row (``scheduled_at`` = the retry time), which notifies nobody: the retry
starts at the first poll after its time, up to 5 s late (observed: 5.0 s instead of 2 s).

:class:`RetryWaker` runs beside each worker session. It plans every future retry of our
queues and, when one is due, sends the very notification Procrastinate's insert trigger sends
(``pg_notify('procrastinate_queue_v1#<queue>', '{"type": "job_inserted", "job_id": N}')`` and
the same on ``procrastinate_any_queue_v1``). That goes through the database, so it wakes every
worker listening on the queue, in any process, through Procrastinate's public protocol.

It learns about retries two ways:

- at once from this process: :class:`RetryAwareJobManager` calls its listeners after each
  ``retry_job`` has been stored (so the notification can never arrive before the row);
- every ``scan_interval`` from the database: retries scheduled by other processes (a worker
  that stopped or died before their time).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, cast

import psycopg
import psycopg_pool
from procrastinate import App, manager
from procrastinate.connector import BaseConnector
from procrastinate.exceptions import ConnectorException
from procrastinate.jobs import Job, Notification, Status
from procrastinate.testing import InMemoryConnector

from system import db

logger = logging.getLogger("system.waker")

#: ``(job_id, queue, retry_at)`` of a retry that has just been stored.
RetryListener = Callable[[int, str, datetime.datetime], None]

_WAKER_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.Error,
    *db.DB_ERRORS,
    OSError,
    TimeoutError,
)

#: A failed heartbeat before a fetch: no fetch, and the watchdog decides about the session.
_FETCH_BEAT_ERRORS: tuple[type[BaseException], ...] = (*_WAKER_ERRORS, ConnectorException)

#: A wake-up can be used up by a fetch that began just before the retry was due (Procrastinate
#: clears its wake-up flag after every fetch): the job would then wait for the next poll. So a
#: job still ``todo`` this long after its wake-up is woken again, at most FOLLOW_UPS times.
FOLLOW_UP = 0.02
FOLLOW_UPS = 3

#: Key of the probe's token in a ``job_inserted`` payload (Procrastinate ignores other keys).
_PROBE_KEY = "bulletproof_probe"

_STILL_WAITING_SQL = "SELECT id FROM procrastinate_jobs WHERE id = ANY(%s) AND status = 'todo'"

_SCAN_SQL = """
SELECT id, queue_name, EXTRACT(EPOCH FROM scheduled_at - clock_timestamp())::float8
  FROM procrastinate_jobs
 WHERE status = 'todo' AND scheduled_at > now()
   AND (%(all_queues)s OR queue_name = ANY(%(queues)s))
 ORDER BY scheduled_at
 LIMIT %(limit)s
"""


class WorkerGone(RuntimeError):
    """This worker's row is gone (pruned as stalled by another worker): its session must end
    before it fetches another job, or that job would look stalled while it runs."""


#: A run's outcome is written only while the job is still in that run: ``doing`` and at the
#: attempt count the run was fetched with (every run ends by adding 1 or by a final status).
#: The row is locked in a CTE of its own: locked in the same query level as the function that
#: updates it, the row would count as modified by this very statement and be skipped.
_STILL_THIS_RUN = """
WITH run AS (
    SELECT id FROM procrastinate_jobs
     WHERE id = %(job_id)s AND status = 'doing' AND attempts = %(attempts)s
       FOR UPDATE
)
"""
_FENCED_RETRY = (
    _STILL_THIS_RUN + "SELECT procrastinate_retry_job_v2(id, %(retry_at)s, %(new_priority)s, "
    "%(new_queue_name)s, %(new_lock)s) IS NULL AS done FROM run"
)
_FENCED_FINISH = (
    _STILL_THIS_RUN
    + "SELECT procrastinate_finish_job_v1(id, %(status)s, %(delete_job)s) IS NULL AS done FROM run"
)
#: A fetch that found a job and took longer than this (seconds, from the worker asking to the
#: job in hand: pool checkout, the heartbeat before it, the query) is logged with
#: :data:`SLOW_FETCH_LINE`. Below the pickup tolerances the harness calibrates (tens of ms), so
#: a retry started late because the database answered slowly (a loaded machine) can be told
#: from one started late by its schedule.
SLOW_FETCH = 0.02
#: The line, parsed by the harness (``harness.history.collect``): keep them in step.
SLOW_FETCH_LINE = "fetch of job %d took %.3fs: from %.6f to %.6f"
#: An outcome write that failed on the database is tried again after these waits (doubling,
#: capped): a run that ended while its session's connection was reset must not be left
#: ``doing`` under a worker that lives on and beats, which no stalled recovery would ever take.
OUTCOME_RETRY_FIRST = 0.05
OUTCOME_RETRY_MAX = 0.5

#: What a lost or reset connection raises (Procrastinate wraps it in a ConnectorException). A
#: closed pool is not among them: its session is ending, and the stalled recovery takes over.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (*db.DB_ERRORS, OSError, TimeoutError)


def _connection_lost(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, ConnectorException) else exc
    return isinstance(cause, _CONNECTION_LOST) and not isinstance(cause, psycopg_pool.PoolClosed)


_BEAT_SQL = """
WITH beat AS (
    UPDATE procrastinate_workers SET last_heartbeat = now() WHERE id = %(worker_id)s RETURNING id
)
SELECT count(*) AS found FROM beat
"""


class RetryAwareJobManager(manager.JobManager):
    """Procrastinate's job manager, telling ``retry_listeners`` about each stored retry, with
    two guards Procrastinate lacks:

    - **Fenced outcomes.** A run's retry or final status is written only if the job is still
      in that run. Procrastinate's own ``retry_job`` also accepts a ``failed`` job: a worker
      whose write was held up (its session lost, then back) re-queued a job that a stalled
      recovery had meanwhile given to another worker, which had failed it for good, and the
      job ran again. A stale outcome is logged and dropped.
    - **Heartbeat before fetch** (:attr:`beat_on_fetch`). When the database comes back after
      an outage longer than the stall threshold, every heartbeat is stale: a job fetched before
      this worker's next beat had its worker row pruned under it by another worker, looked
      stalled while it ran, and ran twice. The fetch beats first, and a worker whose row is
      gone raises :class:`WorkerGone` instead of fetching (a heartbeat too). Off for the
      ``no-watchdog`` defect, which keeps Procrastinate's heartbeat as it is.

    It also tells when its LISTEN connection works (:attr:`listening`, see :meth:`probe`):
    Procrastinate starts listening beside its first fetch and says nothing when it is done, so
    a job that becomes due in between waits for the next poll.
    """

    def __init__(self, connector: BaseConnector) -> None:
        super().__init__(connector)
        self.beat_on_fetch = True
        #: how long a failed outcome write is tried again before the session is given up
        #: (the supervisor sets WORKER_TIMEOUT: a stopping worker waits no longer than that)
        self.outcome_retry_for = 5.0
        #: set when an outcome could not be written in time: the job is left ``doing`` under
        #: this session's worker row, so the session must end (its watchdog reads this) for the
        #: stalled recovery to take the job
        self.outcome_lost: str | None = None
        #: set by the supervisor when it stops this session: a failing outcome write gives up
        #: at once instead of holding the stop up (the stalled recovery takes the job)
        self.give_up = asyncio.Event()
        #: set by the supervisor when the session is lost: Procrastinate's last call, removing
        #: the worker row, gets this many seconds, not the pool timeout (see unregister_worker)
        self.unregister_within: float | None = None
        self.retry_listeners: list[RetryListener] = []
        #: set once this manager's LISTEN connection has received its own probe
        self.listening = asyncio.Event()
        self._probe_token = f"{os.getpid()}:{id(self)}"

    async def listen_for_jobs(
        self,
        *,
        on_notification: manager.NotificationCallback,
        queues: Iterable[str] | None = None,
    ) -> None:
        """Procrastinate's listener, noting the arrival of this manager's own probe."""

        async def relay(*, channel: str, notification: Notification) -> None:
            if cast("dict[str, Any]", notification).get(_PROBE_KEY) == self._probe_token:
                self.listening.set()
            await on_notification(channel=channel, notification=notification)

        self.listening.clear()
        await super().listen_for_jobs(on_notification=relay, queues=queues)

    def probe(self, queues: Iterable[str] | None) -> tuple[str, str]:
        """``(channel, payload)`` of a probe: a ``job_inserted`` without a job.

        Every worker listening on the channel fetches once on it (a fetch that finds nothing
        costs one query); the one that sent it learns that its LISTEN works, and its fetch
        takes any job that became due before it did.
        """
        [channel, *_] = manager.get_channel_for_queues(None if queues is None else list(queues))
        payload = {"type": "job_inserted", "job_id": None, _PROBE_KEY: self._probe_token}
        return channel, json.dumps(payload)

    @property
    def _guarded(self) -> bool:
        # Procrastinate's in-memory connector (unit tests) knows its own queries only
        return not isinstance(self.connector, InMemoryConnector)

    async def fetch_job(self, queues: Iterable[str] | None, worker_id: int) -> Job | None:
        asked = time.time()
        job = await self._fetch_job(queues, worker_id)
        if job is not None and job.id is not None:
            took = time.time() - asked
            if took > SLOW_FETCH:
                logger.info(SLOW_FETCH_LINE, job.id, took, asked, asked + took)
        return job

    async def _fetch_job(self, queues: Iterable[str] | None, worker_id: int) -> Job | None:
        if self.beat_on_fetch and self._guarded:
            try:
                await self.update_heartbeat(worker_id)
            except WorkerGone:
                raise
            except _FETCH_BEAT_ERRORS as exc:
                # no fetch on a stale heartbeat; whether the session is lost is the watchdog's
                # call (its own beat fails the same way)
                logger.warning("no fetch: the heartbeat before it failed (%s)", exc)
                return None
        return await super().fetch_job(queues, worker_id)

    async def unregister_worker(self, worker_id: int) -> None:
        """Remove the worker row; in a lost session, give up after :attr:`unregister_within`.

        Procrastinate unregisters as the last step of its shutdown, through the pool: during a
        database outage that waited out the pool timeout after everything else had stopped
        (seen: the worker loop left at ``unregister_worker`` for the 2 s the teardown had
        left, every long outage). A row left behind has a stale heartbeat: it counts for
        nothing (``/health`` wants a fresh one, its jobs are stalled by the same age) and the
        next session's start prunes it as a stalled worker.
        """
        if self.unregister_within is None:
            await super().unregister_worker(worker_id)
            return
        try:
            async with asyncio.timeout(self.unregister_within):
                await super().unregister_worker(worker_id)
        except _FETCH_BEAT_ERRORS as exc:  # TimeoutError among them
            logger.warning(
                "worker row %d not removed in a lost session (%s): pruned later as stalled",
                worker_id,
                _first_line(exc) if str(exc) else f"no answer within {self.unregister_within:g}s",
            )

    async def update_heartbeat(self, worker_id: int) -> None:
        if not self._guarded:
            await super().update_heartbeat(worker_id)
            return
        row = await self.connector.execute_query_one_async(query=_BEAT_SQL, worker_id=worker_id)
        if not row["found"] and self.beat_on_fetch:  # (without it: Procrastinate's silence)
            raise WorkerGone(f"worker row {worker_id} is gone (pruned as stalled)")

    async def retry_job(
        self,
        job: Job,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        at = retry_at or datetime.datetime.now(datetime.UTC)
        assert job.id is not None
        if not self._guarded:
            await super().retry_job(job, retry_at=at, priority=priority, queue=queue, lock=lock)
            rows: list[dict[str, Any]] = [{"done": True}]
        else:
            rows = await self._write_outcome(
                job,
                "retry",
                query=_FENCED_RETRY,
                job_id=job.id,
                attempts=job.attempts,
                retry_at=at,
                new_priority=priority,
                new_queue_name=queue,
                new_lock=lock,
            )
        if not rows:
            _dropped(job, "retry")
            return
        for listener in list(self.retry_listeners):
            listener(job.id, queue or job.queue, at)

    async def finish_job(self, job: Job, status: Status, delete_job: bool) -> None:
        assert job.id is not None
        if not self._guarded:
            await super().finish_job(job, status, delete_job)
            return
        rows = await self._write_outcome(
            job,
            status.value,
            query=_FENCED_FINISH,
            job_id=job.id,
            attempts=job.attempts,
            status=status.value,
            delete_job=delete_job,
        )
        if not rows:
            _dropped(job, status.value)

    async def _write_outcome(self, job: Job, outcome: str, **query: Any) -> list[dict[str, Any]]:
        """Run a fenced outcome query until the database takes it, for at most
        :attr:`outcome_retry_for` seconds while the connection is what fails (safe to repeat:
        the fence drops it once the job has moved on). Past that, or on any other error,
        :attr:`outcome_lost` says so and the watchdog ends the session: its
        worker row stops beating and the stalled recovery takes the job. Procrastinate tries
        once and gives up, and the job stayed ``doing`` for ever under a worker that lived on
        (random schedule seed 20261207: a database link reset just as a run ended)."""
        wait = OUTCOME_RETRY_FIRST
        deadline = asyncio.get_running_loop().time() + self.outcome_retry_for
        while True:
            try:
                return await self.connector.execute_query_all_async(**query)
            except Exception as exc:
                lost = _connection_lost(exc)
                late = self.give_up.is_set() or (
                    asyncio.get_running_loop().time() + wait > deadline
                )
                if not lost or late:  # the job is left `doing` under this session's row
                    when = ""
                    if lost:
                        when = (
                            " before the session stopped"
                            if self.give_up.is_set()
                            else f" within {self.outcome_retry_for:g}s"
                        )
                    self.outcome_lost = (
                        f"job {job.id}: the outcome ({outcome}) of its run could not be written"
                        f"{when}: {_first_line(exc)}"
                    )
                    raise
                logger.warning(
                    "Job %s: writing the outcome (%s) of its run failed (%s); trying again in "
                    "%.2fs",
                    job.id,
                    outcome,
                    _first_line(exc),
                    wait,
                )
                # a backoff between attempts, cut short when the session stops
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.give_up.wait(), timeout=wait)
                wait = min(wait * 2, OUTCOME_RETRY_MAX)


def _first_line(exc: BaseException) -> str:
    """The database's own words (Procrastinate's wrapper says only "Database error.")."""
    text = str(exc.__cause__ or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _dropped(job: Job, outcome: str) -> None:
    logger.warning(
        "Job %s: the outcome (%s) of its run %d was not written: the job moved on without it "
        "(a stalled recovery re-queued it, and another run took over)",
        job.id,
        outcome,
        job.attempts + 1,
    )


def bind_connector(app: App, connector: BaseConnector) -> App:
    """Point ``app`` at ``connector``, with a :class:`RetryAwareJobManager` over it.

    The same App object is kept: Procrastinate's tasks look ``app.job_manager`` up when they
    defer, so they use the new connector too (as ``App.replace_connector`` does, for good).
    """
    app.connector = connector
    app.job_manager = RetryAwareJobManager(connector)
    return app


def notifications(job_id: int, queue: str) -> list[tuple[str, str]]:
    """``(channel, payload)`` pairs that Procrastinate's insert trigger sends for a job."""
    payload = json.dumps({"type": "job_inserted", "job_id": job_id})
    channels = [*manager.get_channel_for_queues([queue]), *manager.get_channel_for_queues(None)]
    return [(channel, payload) for channel in channels]


class RetryWaker:
    """Wakes the workers of ``queues`` (None: all) when a planned retry is due (module doc)."""

    def __init__(
        self,
        pool: psycopg_pool.AsyncConnectionPool,
        queues: Iterable[str] | None,
        *,
        scan_interval: float,
        timeout: float,
        scan_limit: int = 200,
    ) -> None:
        self.pool = pool
        self.queues = None if queues is None else tuple(queues)
        self.scan_interval = scan_interval
        self.timeout = timeout
        self.scan_limit = scan_limit
        #: job id -> (event loop time when due, queue)
        self._planned: dict[int, tuple[float, str]] = {}
        #: job id -> follow-up wake-ups left (planned again after a wake-up, see FOLLOW_UP)
        self._follow_ups: dict[int, int] = {}
        self._changed = asyncio.Event()
        self._flushing = asyncio.Lock()
        self.wakeups = 0

    def note(self, job_id: int, queue: str, retry_at: datetime.datetime) -> None:
        """Plan a wake-up for a retry just stored (a :data:`RetryListener`)."""
        if self.queues is not None and queue not in self.queues:
            return
        delay = (retry_at - datetime.datetime.now(datetime.UTC)).total_seconds()
        self._planned[job_id] = (asyncio.get_running_loop().time() + delay, queue)
        self._follow_ups.pop(job_id, None)
        self._changed.set()

    def planned(self) -> dict[int, float]:
        """Planned wake-ups: job id -> seconds from now."""
        now = asyncio.get_running_loop().time()
        return {job_id: at - now for job_id, (at, _) in self._planned.items()}

    async def run(self) -> None:
        """Plan and wake until cancelled; database errors are logged, never raised."""
        loop = asyncio.get_running_loop()
        next_scan = loop.time()
        while True:
            if loop.time() >= next_scan:
                await self._guarded(self._scan(), "scan the scheduled jobs")
                next_scan = loop.time() + self.scan_interval
            await self.flush()
            wake_at = min([next_scan, *(at for at, _ in self._planned.values())])
            self._changed.clear()
            try:
                async with asyncio.timeout(max(0.0, wake_at - loop.time())):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def flush(self) -> None:
        """Wake the workers for every planned retry that is due now.

        Serialised, and a retry leaves the plan only once its wake-up was sent (or failed):
        a final ``flush()`` at the end of a session waits for one in flight, so cancelling
        the waker afterwards cannot roll back a notification nobody else will send.
        """
        async with self._flushing:
            now = asyncio.get_running_loop().time()
            due = {job_id: plan for job_id, plan in self._planned.items() if plan[0] <= now}
            if not due:
                return
            await self._guarded(
                self._wake([(job_id, queue) for job_id, (_, queue) in due.items()]),
                "wake the workers",
            )
            later = asyncio.get_running_loop().time() + FOLLOW_UP
            for job_id, plan in due.items():
                if self._planned.get(job_id) is not plan:
                    continue  # re-planned meanwhile
                left = self._follow_ups.get(job_id, FOLLOW_UPS + 1) - 1
                if left > 0:
                    self._planned[job_id] = (later, plan[1])
                    self._follow_ups[job_id] = left
                else:
                    del self._planned[job_id]
                    self._follow_ups.pop(job_id, None)

    async def drain(self) -> None:
        """Send every wake-up due now, follow-ups included: the last act of a stopping worker.

        A single :meth:`flush` would send only the first wake-up of a job re-queued by the
        shutdown; its follow-ups (a worker whose fetch was under way when it came) would die
        with the process. Bounded: FOLLOW_UPS rounds of FOLLOW_UP seconds.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + FOLLOW_UP * (FOLLOW_UPS + 1)
        while True:
            await self.flush()
            pending = [at for at, _ in self._planned.values() if at <= end]
            if not pending:
                return
            # waiting for a planned time, not for a condition
            await asyncio.sleep(max(0.0, min(pending) - loop.time()))

    async def _guarded(self, step: Coroutine[Any, Any, None], what: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await step
        except _WAKER_ERRORS as exc:
            # the watchdog restarts a session whose database is gone; polling still works
            logger.warning("retry waker could not %s: %s", what, exc)

    async def _scan(self) -> None:
        loop = asyncio.get_running_loop()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _SCAN_SQL,
                {
                    "all_queues": self.queues is None,
                    "queues": list(self.queues or ()),
                    "limit": self.scan_limit,
                },
            )
            rows = await cur.fetchall()
        now = loop.time()
        for job_id, queue, seconds in rows:
            self._planned[job_id] = (now + seconds, queue)

    async def _wake(self, due: list[tuple[int, str]]) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            followed = [job_id for job_id, _ in due if job_id in self._follow_ups]
            if followed:  # a follow-up wakes only a job that is still waiting
                cur = await conn.execute(_STILL_WAITING_SQL, (followed,))
                waiting = {int(row[0]) for row in await cur.fetchall()}
                for job_id in followed:
                    if job_id not in waiting:
                        self._follow_ups[job_id] = 1  # started: this is its last round
                due = [(j, q) for j, q in due if j not in self._follow_ups or j in waiting]
            for job_id, queue in due:
                for channel, payload in notifications(job_id, queue):
                    await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
        self.wakeups += len(due)
        logger.debug("woke the workers for jobs %s", [job_id for job_id, _ in due])
