"""One generic scenario against a target: defer through the app, inject faults, judge.

:class:`TargetRun` is a :class:`~harness.scenario.ScenarioRun` (same phases, settle, result
file, verdict printing) whose jobs are deferred through the user's own Procrastinate app
(:class:`AppClient`, no HTTP API needed) and whose history is collected from Procrastinate's
tables plus the target's ``effect_sql``. Its calibration measures how late a *fresh* job
starts on the idle stack (deferred -> started): the machine and stack as they are, never the
target's retry path, which is what the scenarios judge.
"""

from __future__ import annotations

import functools
import itertools
import random
import shlex
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import psycopg
from procrastinate import SyncPsycopgConnector

from harness.backends.local import REPO_ROOT
from harness.budgets import MAX_TOLERANCE_FRACTION, Calibration
from harness.calibration import calibrate_rounds
from harness.history.collect import collect_api_requests, collect_database
from harness.history.records import JobEffect, Meta, Submit
from harness.history.store import HistoryWriter
from harness.nemesis import Nemesis
from harness.scenario import ScenarioRun
from harness.sentinel import StallSentinel
from harness.target.expect import RetryPlan, retry_plan_as_worker
from harness.target.spec import Target, load_app, task_of
from harness.target.stack import TargetStack
from harness.vocabulary import TERMINAL_STATUSES, ObservationName
from harness.wait import wait_for

#: Calibration samples: fresh jobs deferred one at a time on the idle stack.
SAMPLES = 5

_FIRST_START = """
SELECT j.id, EXTRACT(EPOCH FROM min(e.at) FILTER (WHERE e.type = 'deferred'))::float8,
       EXTRACT(EPOCH FROM min(e.at) FILTER (WHERE e.type = 'started'))::float8
  FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id
 WHERE j.id = ANY(%s) GROUP BY j.id
"""


class AppClient:
    """Defers the target's task through its own app (a direct connection) and records each
    deferral as a ``submit`` operation: ``ok`` with the job id, ``error`` when the defer raised
    (Procrastinate commits the job in the same statement that returns its id)."""

    def __init__(self, target: Target, dsn: str, history: HistoryWriter, *, seed: int) -> None:
        self.target = target
        self.history = history
        self.app = load_app(target)
        self.task = task_of(target, self.app)
        self._ops = itertools.count(1)
        self._index = itertools.count()
        self._rng = random.Random(seed)
        self._swap = self.app.replace_connector(SyncPsycopgConnector(conninfo=dsn))
        self._swap.__enter__()
        self.app.open()

    def submit(self) -> Submit:
        """Defer one job (arguments from ``target.args``) and record it."""
        op_id, index = next(self._ops), next(self._index)
        args = dict(self.target.args(index))
        t_invoke = time.time()
        try:
            job_id: int | None = int(self.task.defer(**args))
            outcome, error = "ok", None
        except Exception as exc:  # any failure to defer is recorded, never raised
            job_id, outcome, error = None, "error", f"{type(exc).__name__}: {exc}"
        record = Submit(
            op_id=op_id,
            t_invoke=t_invoke,
            t_complete=time.time(),
            outcome=outcome,
            job_id=job_id,
            args=args,
            error=error,
        )
        self.history.write(record)
        return record

    def submit_many(self, n: int) -> list[Submit]:
        """Defer ``n`` jobs one after the other."""
        return [self.submit() for _ in range(n)]

    def close(self) -> None:
        try:
            self.app.close()
        finally:
            self._swap.__exit__(None, None, None)

    def __enter__(self) -> AppClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def pickup_lateness(dsn: str, ids: Sequence[int]) -> list[float]:
    """Seconds from each job's ``deferred`` event to its first ``started`` event."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
        rows = conn.execute(_FIRST_START, (list(ids),)).fetchall()
    return sorted(max(0.0, s - d) for _, d, s in rows if d is not None and s is not None)


def _rounds(cal: Calibration) -> tuple[float, ...]:
    return cal.rounds or (cal.pickup_max,)


class TargetRun(ScenarioRun):
    """A generic scenario's run against ``stack.target`` (see the module docstring)."""

    client: AppClient  # type: ignore[assignment]
    stack: TargetStack

    def __init__(
        self,
        *,
        name: str,
        title: str,
        seed: int,
        stack: TargetStack,
        reports_dir: Path,
        target_path: str,
    ) -> None:
        # Not ScenarioRun.__init__: no HTTP client, no system calibration. Same attributes.
        self.target = stack.target
        self.target_path = target_path
        self.scenario = name
        self.name = f"{self.target.name}__{name}"
        self.title = f"{title} ({self.target.name})"
        self.seed = seed
        self.stack = stack
        self.profile = stack.profile
        self.reports_dir = reports_dir
        self.backend = stack.backend.name
        self.claims: list[str] = []
        self.defect = None
        self.expect_failing = list(self.target.known_failures.get(name, ()))
        self.rng = random.Random(f"{seed}:{self.name}")
        self.history_path = reports_dir / "histories" / f"{self.name}.jsonl"
        self.result_path = reports_dir / "results" / f"{self.name}.json"
        self.writer = HistoryWriter(self.history_path)
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self.phases = {"stack_start": round(stack.timings.get("total", 0.0), 3)}
        self.result = None
        self._settled = None
        self.writer.write(
            Meta(
                scenario=self.name,
                seed=seed,
                profile="target",
                backend=self.backend,
                settings={"target": self.target.name, "target_path": target_path},
                started_at=self.started_at,
                toxiproxy=stack.toxiproxy.flavour if stack.toxiproxy else "none",
            )
        )
        self.observe("stack_start", {k: round(v, 3) for k, v in stack.timings.items()})
        self.client = AppClient(self.target, stack.db_dsn, self.writer, seed=seed)
        self.nemesis = Nemesis(stack, self.writer)
        with self.phase("calibration"):
            self.calibration = calibrate_rounds(self._calibrate, precise_enough=self._precise())
        self.observe(ObservationName.CALIBRATION, self.calibration.to_dict())
        self.sentinel = StallSentinel(self.writer).start()
        self._faults_started = time.monotonic()

    @functools.cached_property
    def retry_plan(self) -> RetryPlan:
        """The task's retry plan as the workers see it (read once, recorded)."""
        plan = retry_plan_as_worker(
            self.target.app, self.target.task, env=self.stack.worker_env, cwd=str(REPO_ROOT)
        )
        self.observe("retry_plan", plan.to_dict())
        return plan

    def recalibrate(self) -> Calibration:
        """Measure again after the faults and keep the worse of the two: the tolerance then
        brackets the scenario (a machine that got busier meanwhile widens it; one that got
        quieter does not narrow it). Both rounds are recorded; the judged runs never are."""
        with self.phase("calibration"):
            after = calibrate_rounds(self._calibrate, precise_enough=self._precise())
        before = self.calibration
        self.calibration = replace(
            max(before, after, key=lambda c: c.pickup_max),
            samples=before.samples + after.samples,
            job_ids=before.job_ids + after.job_ids,
            rounds=(
                *(before.rounds or (before.pickup_max,)),
                *(after.rounds or (after.pickup_max,)),
            ),
        )
        self.observe(ObservationName.CALIBRATION, self.calibration.to_dict())
        return self.calibration

    def _precise(self) -> float:
        """A calibration round this precise is enough (a coarser one, spoilt by a passing
        hiccup, is measured again): half the smallest delay the task's plan judges, else half
        the recovery budget."""
        delays = [d for d in self.retry_plan.delays if d > 0]
        smallest = min(delays) if delays else self.target.recovery_budget
        return MAX_TOLERANCE_FRACTION * smallest

    def _calibrate(self) -> Calibration:
        # One job at a time: jobs deferred together would measure their wait for a free slot
        # (one, by Procrastinate's default) or a wake-up lost to a fetch in progress
        # (Procrastinate clears its wake-up flag after each fetch), not the stack's pickup.
        # The timing scenarios judge one job's retries for the same reason.
        ids: list[int] = []
        for _ in range(SAMPLES):
            job_id = self.client.submit().job_id
            if job_id is None:
                raise RuntimeError("calibration: the app could not defer a job")
            ids.append(job_id)
            self.wait_terminal([job_id], timeout=30.0 + self.target.job_seconds)
        late = pickup_lateness(self.stack.db_dsn, ids)
        if not late:
            raise RuntimeError("calibration: no calibration job started")
        return Calibration(
            samples=len(late),
            pickup_p50=round(statistics.median(late), 4),
            pickup_max=round(late[-1], 4),
            job_ids=tuple(ids),
        )

    def wait_terminal(self, ids: Sequence[int], *, timeout: float) -> float:
        """Wait until every job of ``ids`` is terminal; return the seconds waited."""

        def done() -> bool:
            statuses = self.statuses(ids)
            return len(statuses) == len(ids) and all(
                s in TERMINAL_STATUSES for s in statuses.values()
            )

        return wait_for(
            done, timeout=timeout, what=f"{len(ids)} jobs terminal", ignore=(psycopg.Error,)
        ).elapsed

    def _collect(self) -> None:
        for record in collect_database(self.stack.db_dsn):
            self.writer.write(record)
        if self.stack.fakeapi_service is not None:
            for record in collect_api_requests(f"{self.stack.fakeapi.url}"):
                self.writer.write(record)
        sql = self.target.effect_sql
        if sql is not None:
            with psycopg.connect(self.stack.db_dsn, autocommit=True) as conn:
                rows = conn.execute(sql).fetchall()
            for row in rows:
                self.writer.write(JobEffect(job_id=int(row[0]), joke_id=str(row[1]), stored_at=0.0))

    def replay(self) -> str:
        module = f"harness/target/scenarios/test_{self.scenario}.py"
        return shlex.join(
            ["pytest", module, "--target", self.target_path, "--seed", str(self.seed)]
        )
