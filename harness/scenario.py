"""Run a chaos scenario: history, client, nemesis, waiting, collection, checking, results.

A pytest plugin (listed in the root conftest's ``pytest_plugins``) providing the ``scenario``
fixture::

    def test_worker_crash(scenario):
        with scenario("worker_crash", title="Worker crash", workers=1) as sc:
            sc.client.submit_many(4)
            sc.wait_in_flight(1)
            sc.nemesis.kill_worker("w1")
            sc.finish(lambda h: [check_queue_accounting(h), ...])

``finish`` waits until every acknowledged job is terminal (deadline computed from the
configuration), collects the database and the fake API into the history
(``<reports-dir>/histories/<name>.jsonl``), runs the checks, writes
``<reports-dir>/results/<name>.json`` and fails the test with a message naming each failed
invariant and its evidence. A mutation scenario (``expect="fail"``, name
``<scenario>__defect_<defect>``) runs the SUT with a deliberate defect and passes only when the
checker catches it.
"""

from __future__ import annotations

import contextlib
import json
import platform
import random
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
import pytest

from harness.checker import (
    Verdict,
    expected_delay,
    merge,
    scheduling_slack,
    stall_recovery_budget,
)
from harness.client import Client
from harness.history.collect import collect_api_requests, collect_database
from harness.history.records import End, History, Meta, Observation
from harness.history.store import HistoryWriter
from harness.nemesis import Nemesis
from harness.profiles import Profile
from harness.stack import Stack
from harness.wait import WaitTimeout, wait_for

TERMINAL = ("succeeded", "failed", "cancelled", "aborted")
DEFECT_MARK = "__defect_"
#: Scheduling slack never assumed smaller than this (seconds): a Python process on a loaded
#: 2-core machine may be descheduled this long. The measured slack is used when larger.
SLACK_FLOOR = 0.25
#: Extra seconds allowed for process starts (a Python SUT process boots in about 1-2 s).
PROCESS_START_MARGIN = 10.0
#: Seconds allowed for a process to exit once its worker stopped (closing pools, interpreter
#: teardown, being reaped): the seed bounds the wait for jobs, not the exit itself.
PROCESS_EXIT_MARGIN = 1.5

Checks = Callable[[History], Sequence[Verdict]]
#: The ``scenario`` fixture's type, for scenario signatures.
ScenarioFactory = Callable[..., "ScenarioContext"]
_FETCH_LOG = re.compile(r"Job (\d+): Fetching joke \(attempt (\d+)/")


def backoff_total(p: Profile) -> float:
    """Sum of every backoff wait a job can go through (``max_retries`` runs)."""
    return sum(
        expected_delay(k, p.retry_base_delay, p.retry_max_delay) for k in range(1, p.max_retries)
    )


def settle_budget(p: Profile) -> float:
    """How long any acknowledged job may take to become terminal, from the configuration:
    every backoff wait, every run at its timeout plus a poll, one stalled-job recovery, and
    process starts. Jobs that are not terminal by then are lost."""
    recovery = stall_recovery_budget(
        heartbeat_interval=p.worker_heartbeat_interval,
        stall_threshold=p.stalled_job_threshold,
        check_interval=p.stalled_job_check_interval,
        poll_interval=p.worker_poll_interval,
        slack=SLACK_FLOOR,
    )
    runs = p.max_retries * (p.job_timeout + p.worker_poll_interval)
    return backoff_total(p) + runs + recovery + p.db_reconnect_max_delay + PROCESS_START_MARGIN


class ScenarioRun:
    """One scenario: a started stack, its history writer, client and nemesis."""

    def __init__(
        self,
        *,
        name: str,
        title: str,
        seed: int,
        stack: Stack,
        reports_dir: Path,
        backend: str,
        claims: Sequence[str] = (),
        expect: str = "pass",
        expect_failing: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.title = title
        self.seed = seed
        self.stack = stack
        self.profile: Profile = stack.settings
        self.reports_dir = reports_dir
        self.backend = backend
        self.claims = list(claims)
        self.expect = expect
        self.expect_failing = list(expect_failing)
        self.rng = random.Random(f"{seed}:{name}")
        self.history_path = reports_dir / "histories" / f"{name}.jsonl"
        self.result_path = reports_dir / "results" / f"{name}.json"
        self.writer = HistoryWriter(self.history_path)
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self.writer.write(
            Meta(
                scenario=name,
                seed=seed,
                profile=self.profile.name,
                backend=backend,
                settings={**self.profile.as_dict(), "defects": list(stack.defects)},
                started_at=self.started_at,
                toxiproxy=stack.toxiproxy.flavour if stack.toxiproxy else "none",
            )
        )
        self.observe("stack_start", {k: round(v, 3) for k, v in stack.timings.items()})
        health_timeout = min(self.profile.db_pool_timeout, 5.0) + 1.0
        self.client = Client(stack.api_url, self.writer, health_timeout=health_timeout)
        self.nemesis = Nemesis(stack, self.writer)
        self.result: dict[str, Any] | None = None
        self._settled: float | None = None

    # -- observing the database ---------------------------------------------------------------

    def acknowledged(self) -> list[int]:
        """Job ids the SUT acknowledged so far."""
        return [s.job_id for s in self.writer.history.submits if s.job_id is not None]

    def statuses(self, ids: Iterable[int] | None = None) -> dict[int, str]:
        """Current status of jobs (default: the acknowledged ones), read directly."""
        wanted = list(self.acknowledged() if ids is None else ids)
        with psycopg.connect(self.stack.db_dsn, connect_timeout=2, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT id, status::text FROM procrastinate_jobs WHERE id = ANY(%s)", (wanted,)
            ).fetchall()
        return {int(i): str(s) for i, s in rows}

    def jobs(self, ids: Iterable[int] | None = None) -> dict[int, tuple[str, int]]:
        """Current ``(status, attempts)`` of jobs (default: the acknowledged ones)."""
        wanted = list(self.acknowledged() if ids is None else ids)
        with psycopg.connect(self.stack.db_dsn, connect_timeout=2, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT id, status::text, attempts FROM procrastinate_jobs WHERE id = ANY(%s)",
                (wanted,),
            ).fetchall()
        return {int(i): (str(s), int(a)) for i, s, a in rows}

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

    def running_on(self, ids: Iterable[int]) -> dict[int, str]:
        """Which worker started the latest run of each job, from the workers' own logs
        (``Job N: Fetching joke (attempt k/m)``, the seed's log pattern)."""
        wanted = set(ids)
        found: dict[int, tuple[int, str]] = {}
        for worker in self.stack.workers:
            path = worker.log_path
            if path is None or not path.exists():
                continue
            for match in _FETCH_LOG.finditer(path.read_text(errors="replace")):
                job_id, attempt = int(match.group(1)), int(match.group(2))
                if job_id in wanted and attempt >= found.get(job_id, (0, ""))[0]:
                    found[job_id] = (attempt, worker.name)
        return {job_id: name for job_id, (_, name) in found.items()}

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
        waited = wait_for(
            lambda: predicate(self.statuses(fixed)) or None,
            timeout=timeout,
            what=what,
            interval=0.02,
            ignore=(psycopg.Error,),
        )
        return waited.elapsed

    def wait_in_flight(self, n: int = 1, *, timeout: float | None = None) -> float:
        """Wait until at least ``n`` acknowledged jobs are ``doing``."""
        return self.wait_statuses(
            lambda st: sum(1 for s in st.values() if s == "doing") >= n,
            timeout=timeout or self.pickup_budget(),
            what=f"{n} job(s) running",
        )

    def wait_all_started(self, *, min_doing: int = 1, timeout: float | None = None) -> list[int]:
        """Wait until no acknowledged job is still queued and at least ``min_doing`` are
        running; return the running ones."""
        running: list[int] = []

        def ready(st: dict[int, str]) -> bool:
            running[:] = sorted(j for j, s in st.items() if s == "doing")
            return (
                len(st) == len(self.acknowledged())
                and "todo" not in st.values()
                and (len(running) >= min_doing)
            )

        self.wait_statuses(ready, timeout=timeout or self.pickup_budget(), what="every job started")
        return running

    def pickup_budget(self) -> float:
        """How long a queued job may wait for an idle worker: a poll, plus slack and a start."""
        return self.profile.worker_poll_interval + SLACK_FLOOR + PROCESS_START_MARGIN

    def wait_worker_ready(self, name: str, *, timeout: float | None = None) -> float:
        """Wait until worker ``name`` has a fresh heartbeat in the database."""
        limit = 3 * self.profile.worker_heartbeat_interval

        def fresh() -> bool:
            with psycopg.connect(self.stack.db_dsn, connect_timeout=2, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT EXTRACT(EPOCH FROM now() - max(last_heartbeat)) "
                    "FROM procrastinate_workers"
                ).fetchone()
            return row is not None and row[0] is not None and float(row[0]) <= limit

        return wait_for(
            fresh,
            timeout=timeout or PROCESS_START_MARGIN,
            what=f"a fresh worker heartbeat ({name})",
            ignore=(psycopg.Error,),
        ).elapsed

    def observe(self, name: str, value: Any) -> None:
        """Record an observation now."""
        self.writer.write(Observation(name=name, value=value, t=time.time()))

    # -- budgets from the configuration -----------------------------------------------------

    def tolerance(self, history: History) -> float:
        """Retry/timeout tolerance: the polling interval plus the measured scheduling slack."""
        return self.profile.worker_poll_interval + scheduling_slack(history, floor=SLACK_FLOOR)

    def shutdown_tolerance(self, history: History) -> float:
        """Allowed time beyond ``WORKER_TIMEOUT`` for a SIGTERMed worker to exit."""
        return self.tolerance(history) + PROCESS_EXIT_MARGIN

    def stall_budget(self, history: History) -> float:
        """Worker death (or fault end) to the job running again, from the configuration."""
        p = self.profile
        return stall_recovery_budget(
            heartbeat_interval=p.worker_heartbeat_interval,
            stall_threshold=p.stalled_job_threshold,
            check_interval=p.stalled_job_check_interval,
            poll_interval=p.worker_poll_interval,
            slack=scheduling_slack(history, floor=SLACK_FLOOR),
        )

    def reconnect_budget(self, history: History) -> float:
        """Database back to jobs running again: the worker notices (connect timeout), waits
        its capped reconnect backoff, opens a session, and polls."""
        p = self.profile
        return (
            p.db_connect_timeout
            + p.db_reconnect_max_delay
            + p.worker_heartbeat_interval
            + p.worker_poll_interval
            + scheduling_slack(history, floor=SLACK_FLOOR)
        )

    def health_interval(self) -> float:
        """How often to sample ``/health``: often enough to see a heartbeat go stale."""
        return min(0.1, self.profile.worker_heartbeat_interval / 2)

    def health_budgets(self, history: History) -> tuple[dict[str, float], float]:
        """(detect budgets per fault kind, recover budget) for ``/health``, from the
        configuration: 503 once the freshest heartbeat is older than the SUT's freshness limit
        (worker faults) or the database stops answering (bounded by the API's database
        timeout); 200 again once the worker is back and has written a heartbeat."""
        from system.api import HEARTBEAT_FRESHNESS  # the SUT's rule; imported late: FastAPI

        p = self.profile
        sample = self.health_interval() + scheduling_slack(history, floor=SLACK_FLOOR)
        worker = HEARTBEAT_FRESHNESS * p.worker_heartbeat_interval + sample
        database = min(p.db_pool_timeout, 5.0) + sample
        detect = {
            "kill": worker,
            "sigterm": worker,
            "pg_kill": database,
            "pg_restart": database,
            "proxy_down": database,
            "*": max(worker, database),
        }
        recover = self.reconnect_budget(history) + p.worker_heartbeat_interval + sample
        return detect, recover

    def saw_health(self, since: float, *, healthy: bool) -> bool:
        """Whether ``/health`` answered 200 (``healthy``) or anything else since ``since``."""
        return any(
            (o.value == 200) == healthy
            for o in self.writer.history.observations("health_status")
            if o.t >= since
        )

    # -- the end ----------------------------------------------------------------------------

    def settle(self, timeout: float | None = None) -> float:
        """Wait until every acknowledged job is terminal, at most ``timeout`` (default:
        :func:`settle_budget`), and record the ``end``. Never raises: what is left is for the
        checker to judge. Only the first call waits."""
        if self._settled is not None:
            return self._settled
        budget = settle_budget(self.profile) if timeout is None else timeout
        deadline = time.time() + budget
        ids = self.acknowledged()
        with contextlib.suppress(WaitTimeout):
            self.wait_statuses(
                lambda st: len(st) == len(ids) and all(s in TERMINAL for s in st.values()),
                timeout=budget,
                what="every acknowledged job terminal",
                ids=ids,
            )
        self.writer.write(End(finished_at=time.time(), deadline=deadline))
        self._settled = budget
        return budget

    def finish(self, checks: Checks, *, settle_timeout: float | None = None) -> dict[str, Any]:
        """Settle, collect, check, write the result; fail the test on a wrong verdict."""
        self.settle(settle_timeout)
        for record in collect_database(self.stack.db_dsn):
            self.writer.write(record)
        for record in collect_api_requests(f"{self.stack.fakeapi.url}"):
            self.writer.write(record)
        history = self.writer.history
        verdicts = list(checks(history))
        self.result = self._write_result(verdicts)
        self._judge(verdicts)
        return self.result

    def _scenario_entry(self, verdicts: Sequence[Verdict], error: str | None) -> dict[str, Any]:
        by_name = {v.name: v for v in verdicts}
        acc = by_name.get("queue_accounting")
        retry = by_name.get("retry_schedule")
        rec = by_name.get("recovery_latency")
        verdict = merge(verdicts) if verdicts else "unknown"
        if error and verdict == "pass":
            verdict = "unknown"
        return {
            "scenario": self.name,
            "title": self.title,
            "seed": self.seed,
            "verdict": verdict,
            "expected_verdict": self.expect,
            "defect": self.name.split(DEFECT_MARK, 1)[1] if DEFECT_MARK in self.name else None,
            "error": error,
            "duration": round(time.monotonic() - self._t0, 3),
            "history": f"histories/{self.name}.jsonl",
            "replay": replay_command(self.name, self.seed, self.backend, self.profile.name),
            "invariants": [v.to_dict() for v in verdicts],
            "accounting": dict(acc.figures) if acc else {},
            "retry_delays": list(retry.figures.get("retry_delays", [])) if retry else [],
            "recoveries": list(rec.figures.get("recoveries", [])) if rec else [],
            "claims": self.claims,
        }

    def _write_result(
        self, verdicts: Sequence[Verdict], error: str | None = None
    ) -> dict[str, Any]:
        entry = self._scenario_entry(verdicts, error)
        document = {
            "schema_version": 1,
            "run": self._run_block(),
            "verdict": entry["verdict"],
            "scenarios": [entry],
        }
        self.result_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.result_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(document, indent=1, default=str), encoding="utf-8")
        tmp.replace(self.result_path)
        return entry

    def _run_block(self) -> dict[str, Any]:
        try:
            pg_version: str | None = self.stack.postgres.server_version()
        except Exception:  # the run block must be written even when PostgreSQL is gone
            pg_version = None
        return {
            "seed": self.seed,
            "backend": self.backend,
            "profile": self.profile.name,
            "started_at": self.started_at,
            "finished_at": time.time(),
            "git_commit": _git_commit(),
            "versions": {
                "python": platform.python_version(),
                "procrastinate": _version("procrastinate"),
                "postgresql": pg_version,
                "toxiproxy": self.stack.toxiproxy.flavour if self.stack.toxiproxy else None,
            },
            "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        }

    def _judge(self, verdicts: Sequence[Verdict]) -> None:
        verdict = merge(verdicts)
        header = (
            f"scenario {self.name}: verdict {verdict.upper()} (seed {self.seed}; replay: "
            f"{replay_command(self.name, self.seed, self.backend, self.profile.name)}; "
            f"history: {self.history_path})"
        )
        lines = [header]
        for v in verdicts:
            lines.append(f"  {v.status.upper():7} {v.name}: {v.summary}")
            if v.status != "pass":
                lines.extend(f"           - {e}" for e in v.evidence[:8])
                if len(v.evidence) > 8:
                    lines.append(f"           ... {len(v.evidence) - 8} more")
        report = "\n".join(lines)
        print(report)
        if self.expect == "fail":
            failing = {v.name for v in verdicts if v.status == "fail"}
            missed = [n for n in self.expect_failing if n not in failing]
            if verdict != "fail" or (
                self.expect_failing and len(missed) == len(self.expect_failing)
            ):
                pytest.fail(
                    f"the checker MISSED the defect: expected a failed verdict on "
                    f"{', '.join(self.expect_failing) or 'any invariant'}\n{report}",
                    pytrace=False,
                )
            return
        if verdict != "pass":
            pytest.fail(report, pytrace=False)

    def close(self, error: BaseException | None) -> None:
        """Write an error result if the scenario broke before checking; close the writer."""
        if self.result is None:
            text = "interrupted" if error is None else f"{type(error).__name__}: {error}"
            with contextlib.suppress(Exception):
                self.result = self._write_result([], error=text.splitlines()[0][:300])
        self.client.close()
        self.writer.close()


def write_start_failure(path: Path, entry: dict[str, Any], run: dict[str, Any], error: str) -> None:
    """A result for a scenario whose stack never started: verdict unknown, with the error."""
    entry = {
        **entry,
        "verdict": "unknown",
        "error": error.splitlines()[0][:300],
        "invariants": [],
        "accounting": {},
        "retry_delays": [],
        "recoveries": [],
    }
    document = {"schema_version": 1, "run": run, "verdict": "unknown", "scenarios": [entry]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, default=str), encoding="utf-8")


def replay_command(name: str, seed: int, backend: str, profile: str) -> str:
    """The command that replays one scenario (or one mutation test) with the same seed."""
    base = name.split(DEFECT_MARK)[0]
    parts = ["pytest", f"scenarios/test_{base}.py"]
    if DEFECT_MARK in name:
        parts += ["-k", name]
    parts += ["--seed", str(seed)]
    if backend != "local":
        parts += ["--backend", backend]
    if profile != "fast":
        parts += ["--profile", profile]
    return shlex.join(parts)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


class ScenarioContext:
    """``with`` block of one scenario: builds the :class:`ScenarioRun`, closes it after."""

    def __init__(self, make: Callable[[], ScenarioRun]) -> None:
        self._make = make
        self.run: ScenarioRun | None = None

    def __enter__(self) -> ScenarioRun:
        self.run = self._make()
        return self.run

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.run is not None:
            self.run.close(exc)


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest, seed: int, stack_factory: Callable[..., Stack]
) -> Iterator[Callable[..., ScenarioContext]]:
    """``scenario(name, title=..., workers=1, defects=(), settings={}, claims=(),
    expect="pass", expect_failing=())`` -> a context manager yielding a :class:`ScenarioRun`
    on a started stack; the stack is closed at teardown (logs attached on failure)."""
    reports_dir = Path(request.config.getoption("--reports-dir"))
    backend = str(request.config.getoption("--backend"))

    def make(
        name: str,
        *,
        title: str,
        workers: int = 1,
        defects: Sequence[str] = (),
        settings: dict[str, Any] | None = None,
        claims: Sequence[str] = (),
        expect: str = "pass",
        expect_failing: Sequence[str] = (),
    ) -> ScenarioContext:
        def build() -> ScenarioRun:
            profile = str(request.config.getoption("--profile"))
            replay = replay_command(name, seed, backend, profile)
            print(f"scenario {name}: seed={seed} (replay: {replay})")
            request.node.user_properties.extend([("seed", seed), ("replay", replay)])
            try:
                stack = stack_factory(
                    workers=workers, defects=list(defects), settings=settings or {}
                )
            except Exception as exc:
                write_start_failure(
                    reports_dir / "results" / f"{name}.json",
                    {
                        "scenario": name,
                        "title": title,
                        "seed": seed,
                        "replay": replay,
                        "expected_verdict": expect,
                        "history": f"histories/{name}.jsonl",
                    },
                    {"seed": seed, "backend": backend, "profile": profile},
                    f"the stack did not start: {type(exc).__name__}: {exc}",
                )
                raise
            return ScenarioRun(
                name=name,
                title=title,
                seed=seed,
                stack=stack,
                reports_dir=reports_dir,
                backend=backend,
                claims=claims,
                expect=expect,
                expect_failing=expect_failing,
            )

        return ScenarioContext(build)

    yield make
