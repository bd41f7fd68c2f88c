"""The scenario lifecycle: start, calibrate, run faults, settle, collect, check, write results.

Used through the ``scenario`` fixture (:mod:`harness.fixtures`)::

    def test_worker_crash(scenario):
        with scenario("worker_crash", title="Worker crash", workers=1) as sc:
            sc.client.submit_many(4)
            sc.wait_in_flight(1)
            sc.nemesis.kill_worker("w1")
            sc.finish(lambda h: [check_queue_accounting(h), ...])

Before the scenario's own steps, :mod:`harness.calibration` measures how late the stack
starts a retry that has come due; every budget and tolerance comes from
:mod:`harness.budgets` (the profile and that calibration), never from the runs judged.
``finish`` waits until every acknowledged job is terminal, collects the database, the fake
API and the workers' logs into the history (``<reports-dir>/histories/<name>.jsonl``), runs
the checks, writes ``<reports-dir>/results/<name>.json`` (built by
:mod:`harness.report.results`) and fails the test naming each failed invariant and its
evidence. A mutation scenario (``defect=...``) runs the SUT with that deliberate defect and
passes only when the checker catches it on one of the invariants it names.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness import budgets, probe
from harness.budgets import Calibration
from harness.calibration import calibrate, calibrate_rounds
from harness.checker import Verdict, merge
from harness.checks import qualified
from harness.client import Client
from harness.history.collect import collect_api_requests, collect_database, collect_run_workers
from harness.history.records import End, History, Meta, Observation
from harness.history.store import HistoryWriter
from harness.nemesis import Nemesis
from harness.profiles import Profile
from harness.report.results import (
    replay_command,
    result_document,
    run_block,
    scenario_entry,
    write_result,
)
from harness.sentinel import StallSentinel
from harness.stack import Stack
from harness.vocabulary import (
    SUBMITTED_TASK,
    TERMINAL_STATUSES,
    ObservationName,
    SubmitOutcome,
)
from harness.wait import WaitTimeout, wait_for
from harness.watch import Watch
from system.defects import Defect

Checks = Callable[[History], Sequence[Verdict]]
#: The ``scenario`` fixture's type, for scenario signatures.
ScenarioFactory = Callable[..., contextlib.AbstractContextManager["ScenarioRun"]]


class ScenarioRun(Watch):
    """One scenario: a started and calibrated stack, its history, client and nemesis."""

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
        defect: Defect | None = None,
        expect_failing: Sequence[str] = (),
        calibrator: Callable[[ScenarioRun], Calibration] | None = None,
        replay: str | None = None,
    ) -> None:
        self.name = name
        self._replay = replay
        self.title = title
        self.seed = seed
        self.stack = stack
        self.profile: Profile = stack.profile
        self.reports_dir = reports_dir
        self.backend = backend
        self.claims = list(claims)
        self.defect = defect
        self.expect_failing = list(expect_failing)
        self.rng = random.Random(f"{seed}:{name}")
        self.history_path = reports_dir / "histories" / f"{name}.jsonl"
        self.result_path = reports_dir / "results" / f"{name}.json"
        self.writer = HistoryWriter(self.history_path)
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self.phases: dict[str, float] = {"stack_start": round(stack.timings.get("total", 0.0), 3)}
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
        health_timeout = budgets.health_detect(self.profile, _NO_CALIBRATION)["*"] + 1.0
        self.client = Client(stack.api_url, self.writer, health_timeout=health_timeout)
        self.nemesis = Nemesis(stack, self.writer)
        self.result: dict[str, Any] | None = None
        self._settled: float | None = None
        with self.phase("calibration"):
            self.calibration: Calibration = (calibrator or calibrate_stack)(self)
        self.observe(ObservationName.CALIBRATION, self.calibration.to_dict())
        self.sentinel = StallSentinel(self.writer).start()
        self._faults_started = time.monotonic()

    # -- bookkeeping --------------------------------------------------------------------------

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the block's wall time to phase ``name`` of the per-scenario breakdown."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.monotonic() - began, 3)

    def observe(self, name: str, value: Any) -> None:
        """Record an observation now."""
        self.writer.write(Observation(name=name, value=value, t=time.time()))

    # -- the end ------------------------------------------------------------------------------

    def settle(self, timeout: float | None = None) -> float:
        """Wait until every acknowledged job is terminal, and every job a submission whose
        answer was lost created (the checker judges those too), at most ``timeout`` (default:
        :func:`harness.budgets.settle`) or until :meth:`no_worker_left` (recorded), and record
        the ``end``. Never raises: what is left is for the checker to judge. Only the first
        call waits."""
        if self._settled is not None:
            return self._settled
        self.phases["faults"] = round(time.monotonic() - self._faults_started, 3)
        budget = budgets.settle(self.profile, self.calibration) if timeout is None else timeout
        deadline = time.time() + budget
        ids = self.acknowledged()
        unknown = any(s.outcome == SubmitOutcome.UNKNOWN for s in self.writer.history.submits)

        def all_terminal() -> bool:
            st = self.statuses(ids)
            if len(st) < len(ids) or any(s not in TERMINAL_STATUSES for s in st.values()):
                return False
            if unknown:
                created = probe.unacknowledged_statuses(self.stack.db_dsn, SUBMITTED_TASK, ids)
                return all(s in TERMINAL_STATUSES for s in created.values())
            return True

        with self.phase("settle"), contextlib.suppress(WaitTimeout):
            waited = wait_for(
                lambda: all_terminal() or ("gone" if self.no_worker_left() else None),
                timeout=budget,
                what="every acknowledged job terminal (or no worker left to run one)",
                ignore=(psycopg.Error,),
            )
            if waited.value == "gone":
                self.observe(
                    ObservationName.NO_WORKER_LEFT,
                    {w.name: w.exit_code for w in self.stack.workers},
                )
        self.sentinel.stop()
        self.writer.write(End(finished_at=time.time(), deadline=deadline))
        self._settled = budget
        return budget

    def finish(
        self, checks: Checks, *, settle_timeout: float | None = None, judge: bool = True
    ) -> dict[str, Any]:
        """Settle, collect, check, write the result; fail the test on a wrong verdict (unless
        ``judge`` is False: a shrinking trial only wants the verdicts, in ``result``)."""
        self.settle(settle_timeout)
        with self.phase("collect"):
            self._record_processes()
            self._collect()
        with self.phase("check"):
            history = self.writer.history
            verdicts = qualified(checks(history))
        self.result = self._write_result(verdicts)
        if judge:
            self._judge(verdicts)
        return self.result

    def _collect(self) -> None:
        """Turn the database, the fake API's requests and the workers' logs into records."""
        for record in collect_database(self.stack.db_dsn):
            self.writer.write(record)
        for record in collect_api_requests(f"{self.stack.fakeapi.url}"):
            self.writer.write(record)
        for record in collect_run_workers(self.worker_logs):
            self.writer.write(record)

    def replay(self) -> str:
        """The command that runs this scenario again with the same seed (or the one given)."""
        return self._replay or replay_command(self.name, self.seed, self.backend, self.profile.name)

    def _record_processes(self) -> None:
        """One ``process_status`` observation per SUT process: is it still running, and did
        the nemesis stop it on purpose?"""
        stopped = self.nemesis.stopped_for_good
        services = [*([self.stack.api] if self.stack.api else []), *self.stack.workers]
        for service in services:
            running = service.is_running()
            self.observe(
                ObservationName.PROCESS_STATUS,
                {
                    "process": service.name,
                    "running": running,
                    "exit_code": None if running else service.exit_code,
                    "stopped_by_nemesis": service.name in stopped,
                },
            )

    def _logs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for path in sorted(self.stack.logs_dir.glob("*.log")):
            try:
                out[path.stem] = str(path.relative_to(self.reports_dir))
            except ValueError:
                out[path.stem] = str(path)
        return out

    def _write_result(
        self, verdicts: Sequence[Verdict], error: str | None = None
    ) -> dict[str, Any]:
        entry = scenario_entry(
            name=self.name,
            title=self.title,
            seed=self.seed,
            verdicts=verdicts,
            expected_verdict="fail" if self.defect or self.expect_failing else "pass",
            defect=self.defect.value if self.defect else None,
            expected_failing=self.expect_failing,
            error=error,
            duration=round(time.monotonic() - self._t0, 3),
            backend=self.backend,
            profile=self.profile.name,
            claims=self.claims,
            phases=self.phases,
            calibration=self.calibration.to_dict() if hasattr(self, "calibration") else None,
            logs=self._logs(),
            replay=self.replay(),
        )
        try:
            pg_version: str | None = self.stack.postgres.server_version()
        except Exception:  # the run block must be written even when PostgreSQL is gone
            pg_version = None
        run = run_block(
            seed=self.seed,
            backend=self.backend,
            profile=self.profile.name,
            started_at=self.started_at,
            postgresql=pg_version,
            toxiproxy=self.stack.toxiproxy.flavour if self.stack.toxiproxy else None,
        )
        write_result(self.result_path, result_document(run, [entry]))
        return entry

    def _judge(self, verdicts: Sequence[Verdict]) -> None:
        verdict = merge(verdicts)
        replay = self.replay()
        lines = [
            f"scenario {self.name}: verdict {verdict.upper()} (seed {self.seed}; replay: "
            f"{replay}; history: {self.history_path})",
            "  phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.phases.items()),
        ]
        for v in verdicts:
            lines.append(f"  {v.status.upper():7} {v.name}: {v.summary}")
            if v.status != "pass":
                lines.extend(f"           - {e}" for e in v.evidence[:8])
                if len(v.evidence) > 8:
                    lines.append(f"           ... {len(v.evidence) - 8} more")
        report = "\n".join(lines)
        print(report)
        if self.expect_failing:
            failing = {v.name for v in verdicts if v.status == "fail"}
            if not failing & set(self.expect_failing):
                unjudged = {v.name for v in verdicts if v.status == "unknown"}
                how = (
                    "could NOT JUDGE"
                    if unjudged & set(self.expect_failing) or not verdicts
                    else "MISSED"
                )
                what = f"the defect {self.defect.value}" if self.defect else "a known failure"
                pytest.fail(
                    f"the checker {how} {what}: expected a failed "
                    f"verdict on {' or '.join(self.expect_failing)}\n{report}",
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
        if hasattr(self, "sentinel"):
            self.sentinel.stop()
        self.client.close()
        probe.close()
        self.writer.close()


def calibrate_stack(sc: ScenarioRun) -> Calibration:
    """Calibrate ``sc``'s stack through its own client and nemesis (recorded in the history),
    again (at most :data:`harness.calibration.ROUNDS` rounds) while a round is too coarse for
    the profile's smallest delay."""
    p = sc.profile

    def measure() -> Calibration:
        return calibrate(
            dsn=sc.stack.db_dsn,
            fail_next=lambda n: sc.nemesis.arm_api_fault("status", status=503, count=n),
            submit=lambda n: [s.job_id for s in sc.client.submit_many(n) if s.job_id is not None],
            timeout=budgets.pickup(p)
            + p.retry_base_delay
            + 2 * (p.job_timeout + p.worker_poll_interval),
        )

    smallest = min(p.retry_base_delay, p.worker_timeout)
    return calibrate_rounds(measure, precise_enough=budgets.MAX_TOLERANCE_FRACTION * smallest)


#: Used only to size the client's /health timeout before the calibration has run.
_NO_CALIBRATION = Calibration(samples=0, pickup_p50=0.0, pickup_max=0.0)
