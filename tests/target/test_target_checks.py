"""The generic checks on hand-made histories: each fails on the bug it exists for."""

from __future__ import annotations

import pytest

from harness.checker import FAIL, PASS, UNKNOWN, check_retry_schedule
from harness.checker.effect_rows import check_effect_once, check_effect_per_job
from harness.history.builder import HistoryBuilder
from harness.target.checks import check_shutdown_within_grace

PLAN = (1.0, 1.0, 1.0, 1.0)  # Procrastinate's RetryStrategy(max_attempts=4, wait=1)


def _retried(lag: float) -> HistoryBuilder:
    """One job failing twice, each retry starting ``1.0 + lag`` after the failure."""
    b = HistoryBuilder()
    b.submit(1)
    t = 0.1
    for _ in range(2):
        b.run(1, t, t + 0.05, "retry", retry_in=1.0)
        t = t + 0.05 + 1.0 + lag
    b.run(1, t, t + 0.05, "succeeded")
    return b


def test_retry_schedule_by_plan_passes_on_time() -> None:
    v = check_retry_schedule(_retried(0.03).build(), plan=PLAN, tolerance=0.1)
    assert v.status == PASS, v.evidence
    assert [d["expected"] for d in v.figures["retry_delays"]] == [1.0, 1.0]


def test_retry_schedule_by_plan_fails_when_retries_wait_for_the_next_poll() -> None:
    # a worker woken only by its 5 s poll: each 1 s retry starts about 4 s late
    v = check_retry_schedule(_retried(3.9).build(), plan=PLAN, tolerance=0.1)
    assert v.status == FAIL
    assert "later than 1.000s + 0.100s" in v.evidence[0]


def test_retry_schedule_needs_a_formula_or_a_plan() -> None:
    with pytest.raises(ValueError, match="or a plan"):
        check_retry_schedule(_retried(0.0).build(), tolerance=0.1)


def _effects(rows: dict[int, int], statuses: dict[int, str]) -> HistoryBuilder:
    b = HistoryBuilder()
    t = 0.1
    for job_id, status in statuses.items():
        b.submit(job_id)
        b.run(job_id, t, t + 0.1, status)
        t += 0.2
    for job_id, n in rows.items():
        for k in range(n):
            b.job_effect(job_id, f"joke-{job_id}-{k}")
    return b


def test_effect_once_fails_when_a_rerun_writes_again() -> None:
    h = _effects({1: 1, 2: 2}, {1: "succeeded", 2: "succeeded"}).build()
    v = check_effect_once(h)
    assert v.status == FAIL and v.evidence == ["job 2 wrote its effect 2 times"]
    assert (
        check_effect_once(_effects({1: 1, 2: 1}, {1: "succeeded", 2: "succeeded"}).build()).status
        == PASS
    )


def test_effect_once_is_unknown_without_rows() -> None:
    assert check_effect_once(_effects({}, {1: "failed"}).build()).status == UNKNOWN


def test_effect_per_job_fails_on_a_success_without_its_row_and_a_failure_with_one() -> None:
    h = _effects({2: 1}, {1: "succeeded", 2: "failed"}).build()
    v = check_effect_per_job(h)
    assert v.status == FAIL
    assert v.evidence == [
        "job 1 succeeded but wrote no effect row",
        "job 2 ended failed but left an effect row",
    ]


def test_shutdown_within_grace_fails_when_the_worker_had_to_be_killed() -> None:
    b = HistoryBuilder()
    b.fault("sigterm", "worker:w1", 1.0, 4.0, exit_code=None, killed_after_timeout=3.0)
    v = check_shutdown_within_grace(b.build(), grace=3.0)
    assert v.status == FAIL and "had to be SIGKILLed" in v.summary
    ok = HistoryBuilder()
    ok.fault("sigterm", "worker:w1", 1.0, 2.2, exit_code=0)
    assert check_shutdown_within_grace(ok.build(), grace=3.0).status == PASS
    assert check_shutdown_within_grace(HistoryBuilder().build(), grace=3.0).status == UNKNOWN
