"""Budgets and replay commands of harness/scenario.py, from the configuration alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.profiles import get_profile
from harness.scenario import (
    PROCESS_START_MARGIN,
    SLACK_FLOOR,
    backoff_total,
    replay_command,
    settle_budget,
    write_start_failure,
)


def test_backoff_total_sums_the_capped_schedule() -> None:
    production = get_profile("production")
    assert backoff_total(production) == 2 + 4 + 8 + 16  # 5 runs: 4 waits, under the 300 s cap
    capped = production.replace(retry_max_delay=5.0)
    assert backoff_total(capped) == 2 + 4 + 5 + 5


@pytest.mark.parametrize("name", ["fast", "production"])
def test_settle_budget_covers_every_wait_a_job_can_go_through(name: str) -> None:
    p = get_profile(name)
    expected = (
        backoff_total(p)  # every backoff wait
        + p.max_retries * (p.job_timeout + p.worker_poll_interval)  # every run at its timeout
        + p.worker_heartbeat_interval  # one stalled-job recovery ...
        + p.stalled_job_threshold
        + p.stalled_job_check_interval
        + p.worker_poll_interval
        + SLACK_FLOOR
        + p.db_reconnect_max_delay  # one reconnection
        + PROCESS_START_MARGIN
    )
    assert settle_budget(p) == pytest.approx(expected)


def test_replay_commands() -> None:
    assert replay_command("worker_crash", 7, "local", "fast") == (
        "pytest scenarios/test_worker_crash.py --seed 7"
    )
    assert replay_command("worker_crash__defect_no_stall_recovery", 7, "docker", "production") == (
        "pytest scenarios/test_worker_crash.py -k worker_crash__defect_no_stall_recovery "
        "--seed 7 --backend docker --profile production"
    )


def test_a_stack_that_never_started_still_leaves_a_result(tmp_path: Path) -> None:
    path = tmp_path / "results" / "worker_crash.json"
    write_start_failure(
        path,
        {"scenario": "worker_crash", "title": "t", "seed": 3},
        {"seed": 3, "backend": "local", "profile": "fast"},
        "the stack did not start: ServiceError: migrate failed\nsecond line",
    )
    doc = json.loads(path.read_text())
    (entry,) = doc["scenarios"]
    assert doc["verdict"] == entry["verdict"] == "unknown"
    assert entry["error"] == "the stack did not start: ServiceError: migrate failed"
