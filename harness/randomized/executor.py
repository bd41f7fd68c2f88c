"""Run a :class:`Schedule` on a started scenario: the client's workload and the nemesis'
fault timeline, concurrently, then the quiet period.

Each fault runs in its own thread: it waits for its start time (a timer on the schedule, not
a synchronisation), opens its window through :class:`harness.nemesis.Nemesis` (so the history
records exactly when it began and healed), holds it for its duration and heals it. Faults on
different targets overlap as the schedule says. Submissions go through the API at the
workload's rate from one thread, whatever the faults do to the API (Jepsen's client: a refused
or unanswered submission is recorded as ``error`` or ``unknown``).
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from harness import budgets
from harness.backends.base import Service, ServiceError
from harness.client import HealthMonitor
from harness.fakeapi.app import FAILING_CATEGORY, STUCK_CATEGORY
from harness.processes import ManagedProcess
from harness.randomized.schedule import ALL_WORKERS, FaultStep, Schedule, hit
from harness.scenario import ScenarioRun
from harness.vocabulary import worker_target

#: A category the fake API does not know: the job must end ``failed`` (404, not retried).
NOT_FOUND = "nosuchcategory"
CATEGORIES = ("animal", "career", "dev", "food", "science")
PROXY_OF = {"dblink": "postgres", "jokeapi": "jokeapi"}
TOXIC_ATTRIBUTES = {
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "latency": {"latency": 500},
}
BURST_SIZE = 5
#: A process stopped by a fault is started again until this long after the last fault healed.
RESTART_GRACE = 60.0


@dataclass
class Execution:
    """What happened while the schedule ran (the history has the details)."""

    started: float = 0.0
    faults_done: int = 0
    errors: list[str] = field(default_factory=list)
    not_found_ids: list[int] = field(default_factory=list)
    failing_ids: list[int] = field(default_factory=list)


class Executor:
    """Runs ``schedule`` on ``sc`` (a started :class:`ScenarioRun` with the schedule's workers)."""

    def __init__(self, sc: ScenarioRun, schedule: Schedule) -> None:
        self.sc = sc
        self.schedule = schedule
        self.rng = random.Random(f"workload:{schedule.seed}")
        self._stop = threading.Event()
        self._calm = threading.Event()  # never set: the quiet period's timer
        # one per part of the stack, made before any thread starts (a defaultdict filled
        # from threads could race); a fault on ``workers`` takes every worker's, in order
        self._locks = {
            part: threading.Lock()
            for step in schedule.faults
            for part in hit(step.target, schedule.workers)
        }
        self.execution = Execution()

    def run(self) -> Execution:
        """Workload and faults until the last fault healed, then the quiet period."""
        sc, schedule = self.sc, self.schedule
        sc.observe("schedule", schedule.to_dict())
        self.execution.started = time.monotonic()
        threads = [threading.Thread(target=self._workload, name="workload", daemon=True)]
        threads += [
            threading.Thread(target=self._fault, args=(step,), name=f"fault {i}", daemon=True)
            for i, step in enumerate(schedule.faults)
        ]
        # /health sampled all along (a monitor's view of the outages; health_amid_faults)
        with HealthMonitor(sc.client, interval=budgets.health_interval(sc.profile)):
            for thread in threads:
                thread.start()
            deadline = self.execution.started + schedule.horizon + 120.0
            try:
                for thread in threads:
                    thread.join(timeout=max(0.0, deadline - time.monotonic()))
            finally:
                self._stop.set()
                for thread in threads:
                    thread.join(timeout=60.0)
            if any(t.is_alive() for t in threads):
                self.execution.errors.append("a fault or the workload did not finish in time")
            self._quiet(schedule.horizon + schedule.quiet)  # the quiet period: nothing happens
        return self.execution

    # -- timing ---------------------------------------------------------------------------

    def _at(self, offset: float) -> None:
        """Wait until ``offset`` seconds after the start (or until stopped)."""
        self._stop.wait(max(0.0, self.execution.started + offset - time.monotonic()))

    def _quiet(self, offset: float) -> None:
        """Hold, with nothing happening, until ``offset`` seconds after the start (a period of
        the schedule, not a synchronisation; ``_at`` cannot: ``_stop`` is set by then)."""
        self._calm.wait(max(0.0, self.execution.started + offset - time.monotonic()))

    def _hold(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _start_again(self, service: Service) -> float:
        """Start ``service`` again like a process supervisor would: while another fault keeps
        it from becoming ready (the database still down), try again, until the schedule's
        deadline; returns the seconds it took."""
        began = time.monotonic()
        deadline = self.execution.started + self.schedule.horizon + RESTART_GRACE
        while True:
            try:
                service.start(timeout=min(30.0, max(1.0, deadline - time.monotonic())))
                return time.monotonic() - began
            except ServiceError:
                if time.monotonic() >= deadline:
                    raise

    # -- the client ---------------------------------------------------------------------------

    def _workload(self) -> None:
        sc, load = self.sc, self.schedule.workload
        sc.stack.fakeapi.set_pool(load.joke_pool)
        hangs = round(load.hangs * load.jobs)
        if hangs:
            # calls that outlast JOB_TIMEOUT: timed out, retried, then answered
            sc.nemesis.arm_api_fault("slow", delay=sc.profile.job_timeout * 1.5, count=hangs)
        bursts = {round(load.jobs * (k + 1) / (load.bursts + 1)) for k in range(load.bursts)}
        for i in range(load.jobs):
            if self._stop.is_set():
                return
            self._at(i / load.rate)
            if i in bursts:
                status = 503 if i % 2 else 429
                sc.nemesis.arm_api_fault("status", status=status, count=BURST_SIZE)
            roll = self.rng.random()
            if roll < load.not_found:
                done = sc.client.submit(NOT_FOUND)
                if done.job_id is not None:
                    self.execution.not_found_ids.append(done.job_id)
                continue
            if roll < load.not_found + load.failing + load.stuck:
                failing = roll < load.not_found + load.failing  # else stuck
                done = sc.client.submit(FAILING_CATEGORY if failing else STUCK_CATEGORY)
                if done.job_id is not None:
                    self.execution.failing_ids.append(done.job_id)
                continue
            category = self.rng.choice((None, *CATEGORIES))
            sc.client.submit(category)
            if roll < load.not_found + load.failing + load.stuck + load.duplicates:
                sc.client.submit(category)  # the same request again at once

    # -- the nemesis --------------------------------------------------------------------------

    def _fault(self, step: FaultStep) -> None:
        self._at(step.start)
        if self._stop.is_set():
            return
        try:
            # one fault at a time per target: a window may outlast its plan (a restart takes
            # a moment), and the next fault on that target must not act on a half-started process
            with contextlib.ExitStack() as held:
                for part in sorted(hit(step.target, self.schedule.workers)):
                    held.enter_context(self._locks[part])
                held.enter_context(self._window(step))
                self._hold(step.duration)
            self.execution.faults_done += 1
        except Exception as exc:  # recorded: the checker must not judge a fault that never was
            self.execution.errors.append(f"{step.fault} {step.target}: {type(exc).__name__}: {exc}")

    @contextlib.contextmanager
    def _window(self, step: FaultStep) -> Iterator[None]:
        nemesis = self.sc.nemesis
        fault, target = step.fault, step.target
        if fault in ("kill", "sigterm", "pause"):
            # every worker at once: one window per worker, all opened at the start, healed
            # one after the other at the end (each restart waits for its worker to be ready)
            with contextlib.ExitStack() as windows:
                for part in hit(target, self.schedule.workers):
                    windows.enter_context(self._process_window(fault, part))
                yield
        elif fault in ("pg_restart", "pg_kill"):
            with nemesis.pg_down(kill=fault == "pg_kill"):
                yield
        elif fault == "proxy_down":
            with nemesis.proxy_down(PROXY_OF[target]):
                yield
        else:
            with nemesis.toxic(PROXY_OF[target], fault, dict(TOXIC_ATTRIBUTES[fault])):
                yield

    @contextlib.contextmanager
    def _process_window(self, fault: str, target: str) -> Iterator[None]:
        """``fault`` (kill, sigterm or pause) on one process: a worker or the API."""
        assert target != ALL_WORKERS
        nemesis, stack = self.sc.nemesis, self.sc.stack
        process = stack.api if target == "api" else stack.worker(target)
        assert process is not None
        name = "api" if target == "api" else worker_target(target)
        if fault == "pause":
            if not isinstance(process, ManagedProcess):
                raise TypeError("pause needs a local process (the local backend)")
            with nemesis.window("pause", name):
                process.signal(signal.SIGSTOP, group=True)
                try:
                    yield
                finally:
                    process.signal(signal.SIGCONT, group=True)
            return
        with nemesis.window(fault, name, restart=True) as window:
            if fault == "kill":
                process.kill()
            else:
                process.terminate()
            try:
                yield
            finally:
                if fault == "sigterm" and process.is_running():
                    process.kill()  # still stopping when the window ends
                    window.detail["killed"] = True
                window.detail["ready_after"] = round(self._start_again(process), 4)
