"""The vocabulary matches the installed Procrastinate, and every checker uses its names."""

from __future__ import annotations

import re
from importlib import resources

from procrastinate.jobs import Status

from harness import checker
from harness.history.builder import HistoryBuilder
from harness.randomized.checks import check_schedule_executed
from harness.vocabulary import (
    RUN_ENDINGS,
    TERMINAL_EVENTS,
    TERMINAL_STATUSES,
    EventType,
    Invariant,
    JobStatus,
    worker_of,
    worker_target,
)


def test_job_statuses_are_procrastinates() -> None:
    assert {s.value for s in Status} == {s.value for s in JobStatus} - {JobStatus.MISSING}
    assert {"succeeded", "failed", "cancelled", "aborted"} == TERMINAL_STATUSES


def test_event_types_are_procrastinates_sql_enum() -> None:
    schema = resources.files("procrastinate.sql").joinpath("schema.sql").read_text()
    block = re.search(r"CREATE TYPE procrastinate_job_event_type AS ENUM \((.*?)\);", schema, re.S)
    assert block is not None
    assert set(re.findall(r"'(\w+)'", block.group(1))) == {e.value for e in EventType}
    assert set(EventType) >= RUN_ENDINGS and RUN_ENDINGS | {"cancelled"} >= TERMINAL_EVENTS


def test_worker_targets_round_trip() -> None:
    assert worker_of(worker_target("w1")) == "w1" and worker_of("postgres") is None


def test_every_check_names_its_verdict_from_the_vocabulary() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2, worker="w1")
    h = b.build()
    verdicts = [
        checker.check_queue_accounting(h),
        checker.check_no_duplicate_effects(h),
        checker.check_job_effects(h),
        checker.check_justified_reruns(h),
        checker.check_retry_schedule(h, base_delay=0.1, max_delay=0.8, tolerance=0.02),
        checker.check_retry_decisions(h, base_delay=0.1, max_delay=0.8, tolerance=0.02),
        checker.check_attempt_count(h, max_attempts=5),
        checker.check_job_timeout(h, job_timeout=1.0, tolerance=0.1, max_attempts=5),
        checker.check_recovery_latency(h, budget=1.0),
        checker.check_health_transitions(h, detect_budget=1.0, recover_budget=1.0),
        checker.check_graceful_shutdown(
            h, worker_timeout=1.0, abort_tolerance=0.1, exit_margin=0.3
        ),
        checker.check_shutdown_aborts(h, worker_timeout=1.0, tolerance=0.1),
        checker.check_health_amid_faults(
            h, workers=["w1"], database_budget=1.0, workers_budget=1.0, shutdown_allowance=2.0
        ),
        checker.check_processes_alive(h),
        checker.check_calibration(h, smallest=1.0, what="a second"),
        check_schedule_executed([], faults_done=0, planned=0),
    ]
    assert {v.name for v in verdicts} == set(Invariant)
    assert all(isinstance(v.name, Invariant) for v in verdicts)
