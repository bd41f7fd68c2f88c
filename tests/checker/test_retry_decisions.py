"""Retry decisions: the retry time asked for is judged amid faults that move the retry start."""

from __future__ import annotations

from harness.checker import FAIL, PASS, UNKNOWN, check_retry_decisions, expected_delay
from harness.history.builder import HistoryBuilder

BASE, CAP, TOL = 0.3, 1.2, 0.05


def _failing_job(
    b: HistoryBuilder, job_id: int, asked: list[float], *, commit_lag: float = 0.0
) -> None:
    """Job ``job_id`` fails ``len(asked)`` times asking for those waits (from the decision its
    worker logs), then fails for good; each failure commits ``commit_lag`` after the decision
    and each retry starts 0.4 s late (a dead worker, the database away: not judged here)."""
    b.submit(job_id)
    t = 0.0
    for run, wait in enumerate(asked, 1):
        decided = t + 0.01
        b.observe("run_failed", {"job_id": job_id, "run": run, "worker": "w1"}, decided)
        b.run(job_id, t, decided + commit_lag, "retry", retry_in=wait - commit_lag)
        t = decided + wait + 0.4
    b.run(job_id, t, t + 0.01, "failed")


def _capped_exponential(runs: int) -> list[float]:
    return [expected_delay(k, BASE, CAP) for k in range(1, runs)]


def test_a_capped_exponential_backoff_passes_though_every_retry_started_late() -> None:
    # and though each failure committed 70 ms after its decision (a loaded machine): the
    # wait is measured from the decision the worker logged
    b = HistoryBuilder()
    _failing_job(b, 1, _capped_exponential(5), commit_lag=0.07)
    v = check_retry_decisions(b.build(), base_delay=BASE, max_delay=CAP, tolerance=TOL)
    assert v.status == PASS, v.evidence
    assert v.figures["runs_judged"] == [1, 2, 3, 4]
    assert [d["expected"] for d in v.figures["decisions"]] == [0.3, 0.6, 1.2, 1.2]


def test_a_constant_backoff_fails() -> None:
    b = HistoryBuilder()
    _failing_job(b, 1, [0.3, 0.3, 0.3, 0.3])
    v = check_retry_decisions(b.build(), base_delay=BASE, max_delay=CAP, tolerance=TOL)
    assert v.status == FAIL
    assert "after run 2 a retry was asked for 0.300s after the decision" in v.evidence[0]
    assert "earlier than 0.600s" in v.evidence[0]


def test_a_linear_backoff_fails_on_its_third_delay() -> None:
    b = HistoryBuilder()
    _failing_job(b, 1, [0.3, 0.6, 0.9, 1.2])
    v = check_retry_decisions(b.build(), base_delay=BASE, max_delay=CAP, tolerance=TOL)
    assert v.status == FAIL and "after run 3" in v.evidence[0]


def test_an_ignored_cap_fails_as_a_later_decision() -> None:
    b = HistoryBuilder()
    _failing_job(b, 1, [0.3, 0.6, 1.2, 2.4])
    v = check_retry_decisions(b.build(), base_delay=BASE, max_delay=CAP, tolerance=TOL)
    assert v.status == FAIL
    assert "after run 4" in v.evidence[0] and "later than 1.200s + 0.050s" in v.evidence[0]


def test_a_decision_whose_commit_a_database_fault_could_delay_is_not_judged() -> None:
    # run 2's failure committed during a database outage: its retry time looks 0.3 s short
    b = HistoryBuilder()
    _failing_job(b, 1, [0.3, 0.3, 1.2, 1.2])
    b.fault("pg_restart", "postgres", 0.7, 1.0)
    v = check_retry_decisions(b.build(), base_delay=BASE, max_delay=CAP, tolerance=TOL)
    assert v.status == PASS, v.evidence
    assert v.figures["not_judged"] == 1 and v.figures["runs_judged"] == [1, 3, 4]


def test_a_freeze_of_another_worker_does_not_excuse_a_decision() -> None:
    b = HistoryBuilder()
    _failing_job(b, 1, [0.3, 0.3, 1.2, 1.2])
    b.observe("run_worker", {"job_id": 1, "run": 2, "worker": "w1"}, 0.71)
    b.fault("pause", "worker:w2", 0.6, 1.5)  # w2 frozen; run 2 was on w1
    v = check_retry_decisions(b.build(), base_delay=BASE, max_delay=CAP, tolerance=TOL)
    assert v.status == FAIL and "after run 2" in v.evidence[0]


def test_no_retry_to_judge_is_unknown_and_says_why() -> None:
    b = HistoryBuilder()
    _failing_job(b, 1, [0.3])
    b.fault("timeout", "dblink", 0.0, 0.5)
    v = check_retry_decisions(b.build(), base_delay=BASE, max_delay=CAP, tolerance=TOL)
    assert v.status == UNKNOWN and "1 met a fault" in v.summary


def test_a_tolerance_too_wide_to_tell_a_doubling_is_unknown() -> None:
    b = HistoryBuilder()
    _failing_job(b, 1, _capped_exponential(3))
    v = check_retry_decisions(b.build(), base_delay=BASE, max_delay=CAP, tolerance=0.2)
    assert v.status == UNKNOWN and "half the smallest delay" in v.summary


def test_a_retry_without_a_logged_decision_is_not_judged() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.01, "retry", retry_in=0.1)  # constant-looking, but no decision logged
    b.run(1, 0.5, 0.51, "failed")
    _failing_job(b, 2, _capped_exponential(3))
    v = check_retry_decisions(b.build(), base_delay=BASE, max_delay=CAP, tolerance=TOL)
    assert v.status == PASS and v.figures["no_logged_decision"] == 1
