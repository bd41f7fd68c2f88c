"""The nemesis: inject faults into a :class:`harness.stack.Stack` and record fault windows.

Every fault is a window in the history: written when it opens (``end`` null) and again when
it closes; the closing write happens in ``finally``, so a failing scenario still leaves a
closed window (and the fault healed) behind. Targets: ``worker:NAME``, ``api``, ``postgres``
(the server), ``dblink`` (the SUT -> PostgreSQL proxy), ``jokeapi`` (the SUT -> joke API
proxy, or the fake API itself for application faults).

    nemesis = Nemesis(stack, writer)
    nemesis.kill_worker("w1")                      # SIGKILL, then start it again
    with nemesis.proxy_down("jokeapi"):            # joke API unreachable inside the block
        ...
    with nemesis.toxic("postgres", "timeout", {"timeout": 0}):   # blackhole the database
        ...
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness import probe
from harness.history.records import Fault
from harness.history.store import HistoryWriter
from harness.vocabulary import FaultKind, Target, worker_target

if TYPE_CHECKING:
    from harness.stack import Stack

#: Which fault target a Toxiproxy proxy name stands for.
PROXY_TARGETS = {"jokeapi": "jokeapi", "postgres": "dblink"}
#: The SUT names each worker's database connections ``<prefix><worker name>``.
WORKER_APPLICATION_PREFIX = "bulletproof-worker-"
#: Duration (seconds) given to a fake-API fault that lasts until its block ends.
OPEN_ENDED = 24 * 3600.0


@dataclass
class FaultHandle:
    """An open fault window; put facts learnt while it is open into ``detail``."""

    fault_id: int
    kind: str
    target: str
    start: float
    detail: dict[str, Any] = field(default_factory=dict)
    end: float | None = None


class Nemesis:
    """Fault injection on one stack, recording every fault window in ``history``."""

    def __init__(self, stack: Stack, history: HistoryWriter) -> None:
        self.stack = stack
        self.history = history
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.stopped_for_good: set[str] = set()
        """Processes this nemesis stopped and did not start again (not a defect if down)."""
        self._open: collections.Counter[str] = collections.Counter()
        if stack.toxiproxy is not None:
            stack.toxiproxy.client()  # toxiproxy-python keeps its server in class attributes

    # -- the recording primitive ------------------------------------------------------------

    @contextlib.contextmanager
    def window(self, kind: str, target: str, **detail: Any) -> Iterator[FaultHandle]:
        """Record a fault window around the block: opened now, closed when the block ends."""
        with self._lock:
            fault_id = next(self._ids)
            self._open[target] += 1
        handle = FaultHandle(fault_id, kind, target, time.time(), dict(detail))
        try:
            self._write(handle)
            yield handle
        finally:
            handle.end = time.time()
            with self._lock:
                self._open[target] -= 1
            self._write(handle)

    def holds(self, target: str) -> bool:
        """Whether a fault window on ``target`` (e.g. ``worker:w1``) is open now: a process
        down inside one may still be started again."""
        with self._lock:
            return self._open[target] > 0

    def _write(self, h: FaultHandle) -> None:
        self.history.write(
            Fault(
                fault_id=h.fault_id,
                kind_=h.kind,
                target=h.target,
                start=h.start,
                end=h.end,
                detail=dict(h.detail),
            )
        )

    # -- processes ----------------------------------------------------------------------------

    def kill_worker(self, name: str, *, restart: bool = True, timeout: float = 30.0) -> float:
        """SIGKILL worker ``name``; with ``restart``, start it again. The window runs from the
        kill until the worker is ready again (or until it is gone). Returns the window's length."""
        worker = self.stack.worker(name)
        with self.window("kill", f"worker:{name}", restart=restart) as fault:
            worker.kill()
            fault.detail["dead_after"] = round(time.time() - fault.start, 4)
            if restart:
                fault.detail["ready_after"] = round(worker.start(timeout=timeout), 4)
            else:
                self.stopped_for_good.add(name)
        assert fault.end is not None
        return fault.end - fault.start

    @contextlib.contextmanager
    def worker_down(self, name: str, *, timeout: float = 30.0) -> Iterator[FaultHandle]:
        """Worker ``name`` SIGKILLed inside the block and started again after it; the window
        lasts until it is ready again."""
        worker = self.stack.worker(name)
        with self.window("kill", f"worker:{name}", restart=True) as fault:
            worker.kill()
            try:
                yield fault
            finally:
                fault.detail["ready_after"] = round(worker.start(timeout=timeout), 4)

    def sigterm_worker(
        self, name: str, *, timeout: float, jobs: list[int] | None = None
    ) -> int | None:
        """SIGTERM worker ``name`` and wait up to ``timeout`` for it to exit; the window runs from
        the signal to the exit, with ``detail.exit_code`` (None: it had to be SIGKILLed) and
        ``detail.jobs`` (the jobs known to run on it, when given)."""
        worker = self.stack.worker(name)
        code: int | None = None
        detail = {} if jobs is None else {"jobs": sorted(jobs)}
        with self.window("sigterm", f"worker:{name}", **detail) as fault:
            self.stopped_for_good.add(name)
            worker.terminate()
            try:
                code = worker.wait_exit(timeout=timeout)
            except TimeoutError:
                worker.kill()
                fault.detail["killed_after_timeout"] = timeout
            fault.detail["exit_code"] = code
        return code

    def restart_api(self, *, kill: bool = False, timeout: float = 30.0) -> float:
        """Restart the SUT's API process (SIGKILL when ``kill``); returns seconds to ready."""
        api = self.stack.api
        if api is None:
            raise ValueError("this stack has no API process")
        with self.window("kill" if kill else "restart", "api") as fault:
            took = api.restart(kill=kill, timeout=timeout)
            fault.detail["ready_after"] = round(took, 4)
        return took

    def restart_worker(self, name: str, *, kill: bool = False, timeout: float = 30.0) -> float:
        """Stop (gracefully, or SIGKILL) and start worker ``name``; returns seconds to ready."""
        worker = self.stack.worker(name)
        with self.window("kill" if kill else "restart", f"worker:{name}") as fault:
            took = worker.restart(kill=kill, timeout=timeout)
            fault.detail["ready_after"] = round(took, 4)
        return took

    # -- PostgreSQL ---------------------------------------------------------------------------

    def pg_kill(self, *, restart: bool = True, timeout: float = 30.0) -> float:
        """SIGKILL PostgreSQL (a crash), then start it on the same data; the window lasts until
        it accepts connections again. Returns the window's length."""
        pg = self.stack.postgres
        with self.window("pg_kill", "postgres", restart=restart) as fault:
            pg.kill()
            if restart:
                fault.detail["ready_after"] = round(pg.start(timeout=timeout), 4)
        assert fault.end is not None
        return fault.end - fault.start

    @contextlib.contextmanager
    def pg_down(self, *, kill: bool = False, timeout: float = 30.0) -> Iterator[FaultHandle]:
        """PostgreSQL stopped (fast) or killed inside the block, started again after it."""
        pg = self.stack.postgres
        with self.window("pg_kill" if kill else "pg_restart", "postgres") as fault:
            try:
                if kill:
                    pg.kill()
                else:
                    pg.stop(timeout=timeout)
                yield fault
            finally:
                fault.detail["ready_after"] = round(pg.start(timeout=timeout), 4)

    def pg_restart(self, *, timeout: float = 30.0) -> float:
        """Fast stop and start PostgreSQL; returns the window's length."""
        with self.pg_down(timeout=timeout) as fault:
            pass
        assert fault.end is not None
        return fault.end - fault.start

    def terminate_backends(self, name: str) -> int:
        """Terminate every PostgreSQL connection of worker ``name`` (its pool, heartbeat and
        LISTEN connections: ``application_name`` ``bulletproof-worker-<name>``) while the
        database and the network stay up: only that worker's sessions break. Returns how many
        connections were terminated (recorded in the window's detail)."""
        app_name = f"{WORKER_APPLICATION_PREFIX}{name}"
        with self.window(
            FaultKind.TERMINATE_BACKEND, worker_target(name), application_name=app_name
        ) as f:
            count = probe.terminate_backends(self.stack.db_dsn, app_name)
            f.detail["terminated"] = count
        return count

    @contextlib.contextmanager
    def heartbeats_rejected(self) -> Iterator[FaultHandle]:
        """Inside the block PostgreSQL rejects every heartbeat write (an error on the UPDATE of
        ``procrastinate_workers``, as a lock or statement timeout on that table would give)
        while fetching, running and finishing jobs keep working. Target ``heartbeat``."""
        dsn = self.stack.db_dsn
        with self.window(FaultKind.HEARTBEAT_REJECTED, Target.HEARTBEAT) as fault:
            probe.reject_heartbeats(dsn, on=True)
            try:
                yield fault
            finally:
                probe.reject_heartbeats(dsn, on=False)
                fault.detail["rejected"] = probe.heartbeat_rejections(dsn)

    # -- network (Toxiproxy) ------------------------------------------------------------------

    @contextlib.contextmanager
    def proxy_down(self, proxy: str) -> Iterator[FaultHandle]:
        """Disable a proxy (refuse new connections, drop open ones) inside the block."""
        p = self.stack.proxies[proxy]
        with self.window("proxy_down", PROXY_TARGETS.get(proxy, proxy), proxy=proxy) as fault:
            p.disable()
            try:
                yield fault
            finally:
                p.enable()

    @contextlib.contextmanager
    def toxic(
        self,
        proxy: str,
        type_: str,
        attributes: dict[str, int],
        *,
        stream: str = "downstream",
        kind: str | None = None,
    ) -> Iterator[FaultHandle]:
        """Add a toxic (``latency``, ``timeout``, ``reset_peer``, ...) inside the block.

        The window's kind is ``kind`` or the toxic's type."""
        p = self.stack.proxies[proxy]
        name = f"nemesis_{type_}_{stream}"
        target = PROXY_TARGETS.get(proxy, proxy)
        detail = {"proxy": proxy, "toxic": type_, "stream": stream, "attributes": attributes}
        with self.window(kind or type_, target, **detail) as fault:
            p.add_toxic(name=name, type=type_, stream=stream, attributes=attributes)
            try:
                yield fault
            finally:
                p.destroy_toxic(name)

    # -- the fake joke API --------------------------------------------------------------------

    @contextlib.contextmanager
    def api_fault(self, kind: str, **spec: Any) -> Iterator[FaultHandle]:
        """An application fault of the fake API (``status``, ``slow``, ``hang``, ``malformed``)
        inside the block; cleared after it. Without ``count`` or ``duration`` it lasts for the
        whole block. The window's kind is ``http_<kind>``."""
        fake = self.stack.fakeapi
        if spec.get("count") is None and spec.get("duration") is None:
            spec["duration"] = OPEN_ENDED  # lasts until the block ends and clears it
        with self.window(f"http_{kind}", "jokeapi", **spec) as fault:
            fake.add_fault(kind, **spec)
            try:
                yield fault
            finally:
                fake.clear_faults()

    def arm_api_fault(self, kind: str, **spec: Any) -> FaultHandle:
        """Arm a fake-API fault that ends by itself (``count`` requests or ``duration``
        seconds), e.g. ``arm_api_fault("slow", delay=1.0, count=3)``. Its window opens and
        closes now (kind ``http_<kind>``, the spec in ``detail``); which requests it hit is in
        the fake API's request record (``fault``)."""
        if spec.get("count") is None and spec.get("duration") is None:
            raise ValueError("an armed fault needs count or duration; use api_fault() for a block")
        with self.window(f"http_{kind}", "jokeapi", armed=True, **spec) as fault:
            self.stack.fakeapi.add_fault(kind, **spec)
        return fault
