"""Watching a running scenario: job states, which worker runs what, /health, faults held open.

:class:`Watch` is what a scenario polls while its faults run (through :mod:`harness.probe`
for the database and :mod:`harness.logs` for the workers' logs); every wait has a deadline
and returns the measured time. :class:`harness.scenario.ScenarioRun` is a ``Watch``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import psycopg

from harness import budgets, probe
from harness.history.store import HistoryWriter
from harness.logs import latest_run_worker
from harness.nemesis import Nemesis
from harness.profiles import Profile
from harness.stack import Stack
from harness.vocabulary import JobStatus, ObservationName, worker_target
from harness.wait import WaitTimeout, wait_for


class Watch:
    """Polls one stack and its history (``stack``, ``profile``, ``writer``)."""

    stack: Stack
    profile: Profile
    writer: HistoryWriter
    nemesis: Nemesis

    @property
    def worker_logs(self) -> dict[str, Path]:
        """Worker name -> its log file (workers without one are left out)."""
        return {w.name: w.log_path for w in self.stack.workers if w.log_path is not None}

    def acknowledged(self) -> list[int]:
        """Job ids the SUT acknowledged so far."""
        return [s.job_id for s in self.writer.history.submits if s.job_id is not None]

    def statuses(self, ids: Iterable[int] | None = None) -> dict[int, str]:
        """Current status of jobs (default: the acknowledged ones), read directly."""
        return probe.job_statuses(self.stack.db_dsn, self.acknowledged() if ids is None else ids)

    def jobs(self, ids: Iterable[int] | None = None) -> dict[int, tuple[str, int]]:
        """Current ``(status, attempts)`` of jobs (default: the acknowledged ones)."""
        return probe.job_states(self.stack.db_dsn, self.acknowledged() if ids is None else ids)

    def no_worker_left(self) -> bool:
        """Whether no job can run any more: every worker process has exited and no fault
        window is open on any of them (none is about to be started again). The API runs no
        jobs (``--no-worker``). Waiting for progress past this point proves nothing, so the
        waits below end here; the checker judges what is left (``processes_alive``,
        ``queue_accounting``)."""
        workers = self.stack.workers
        return bool(workers) and all(
            not w.is_running() and not self.nemesis.holds(worker_target(w.name)) for w in workers
        )

    def running_on(self, ids: Iterable[int]) -> dict[int, str]:
        """Which worker started the latest run of each job, from the workers' own logs."""
        return latest_run_worker(self.worker_logs, ids)

    def hold_until(
        self, predicate: Callable[[], bool], *, timeout: float, what: str, strict: bool = True
    ) -> float:
        """Keep a fault open until ``predicate`` holds (database errors count as "not yet").
        With ``strict=False`` a timeout just ends the hold (the checker judges the outcome)."""
        try:
            return wait_for(
                lambda: predicate() or None,
                timeout=timeout,
                what=what,
                interval=0.02,
                ignore=(psycopg.Error,),
            ).elapsed
        except WaitTimeout:
            if strict:
                raise
            return timeout

    def wait_statuses(
        self,
        predicate: Callable[[dict[int, str]], bool],
        *,
        timeout: float,
        what: str,
        ids: Iterable[int] | None = None,
    ) -> float:
        """Poll job statuses until ``predicate`` holds; returns the seconds waited."""
        fixed = None if ids is None else list(ids)
        return wait_for(
            lambda: predicate(self.statuses(fixed)) or None,
            timeout=timeout,
            what=what,
            interval=0.02,
            ignore=(psycopg.Error,),
        ).elapsed

    def wait_in_flight(self, n: int = 1, *, timeout: float | None = None) -> float:
        """Wait until at least ``n`` acknowledged jobs are ``doing``."""
        return self.wait_statuses(
            lambda st: sum(1 for s in st.values() if s == JobStatus.DOING) >= n,
            timeout=timeout or budgets.pickup(self.profile),
            what=f"{n} job(s) running",
        )

    def wait_all_started(self, *, min_doing: int = 1, timeout: float | None = None) -> list[int]:
        """Wait until no acknowledged job is still queued and at least ``min_doing`` are
        running; return the running ones."""
        running: list[int] = []

        def ready(st: dict[int, str]) -> bool:
            running[:] = sorted(j for j, s in st.items() if s == JobStatus.DOING)
            return (
                len(st) == len(self.acknowledged())
                and JobStatus.TODO not in st.values()
                and len(running) >= min_doing
            )

        self.wait_statuses(
            ready, timeout=timeout or budgets.pickup(self.profile), what="every job started"
        )
        return running

    def wait_placed(self, ids: Sequence[int]) -> dict[int, str]:
        """Wait until each job's latest run is in a worker's log; return job -> worker."""
        self.hold_until(
            lambda: set(ids) <= set(self.running_on(ids)),
            timeout=self.profile.job_timeout,
            what="every running job in a worker's log",
        )
        return self.running_on(ids)

    def saw_health(self, since: float, *, healthy: bool) -> bool:
        """Whether ``/health`` answered 200 (``healthy``) or 503 since ``since`` (a request
        that got no answer is neither)."""
        for o in self.writer.history.observations(ObservationName.HEALTH_STATUS):
            if o.t >= since and o.value is not None and (o.value == 200) == healthy:
                return True
        return False

    def await_health(self, *, healthy: bool, timeout: float, since: float | None = None) -> float:
        """Wait (at most ``timeout``, never failing: the checker judges) until ``/health``
        answered 200 (``healthy``) or 503 since ``since`` (default: now); returns the wait.
        A wait for 200 also ends when :meth:`no_worker_left`."""
        start = time.time() if since is None else since
        return self.hold_until(
            lambda: self.saw_health(start, healthy=healthy) or (healthy and self.no_worker_left()),
            timeout=timeout,
            what=f"/health to say {'200' if healthy else '503'}",
            strict=False,
        )

    def sample_recovery_window(self, recover: float) -> float:
        """Keep ``/health`` sampled (the scenario's monitor runs meanwhile) until ``recover``
        seconds have passed and a 200 came since now; at most twice that, or until
        :meth:`no_worker_left` (the checker judges what it saw)."""
        start = time.time()
        return self.hold_until(
            lambda: (
                (time.time() >= start + recover and self.saw_health(start, healthy=True))
                or self.no_worker_left()
            ),
            timeout=2 * recover,
            what="/health sampled to the end of the recovery window",
            strict=False,
        )
