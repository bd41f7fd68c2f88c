"""Duplicate effects, recovery latency, health transitions and graceful shutdown (pass, fail)."""

from __future__ import annotations

import pytest

from harness.checker import (
    FAIL,
    PASS,
    UNKNOWN,
    Verdict,
    check_graceful_shutdown,
    check_health_transitions,
    check_no_duplicate_effects,
    check_queue_accounting,
    check_queue_resumes,
    check_recovery_latency,
)
from harness.history.builder import HistoryBuilder


def test_no_duplicate_effects_passes_with_one_row_per_joke_and_counts_refetches() -> None:
    b = HistoryBuilder()
    for j in (1, 2, 3):
        b.submit(j)
        b.run(j, 0.1, 0.2)
        b.fetch("same", 0.15)
    b.effect("same")
    h = b.build()
    v = check_no_duplicate_effects(h)
    assert v.status == PASS
    assert v.figures["repeated_fetches"] == 2 and v.figures["rows"] == 1
    acc = check_queue_accounting(h).figures
    assert acc["repeated_writes"] == 2 and acc["duplicate_effects"] == 0


def test_no_duplicate_effects_fails_on_two_rows_for_one_joke() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2)
    b.effect("abc")
    b.effect("abc")
    b.effect("def")
    v = check_no_duplicate_effects(b.build())
    assert v.status == FAIL and v.evidence == ["joke abc stored 2 times"]


def test_no_duplicate_effects_fails_when_success_left_no_row() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2)
    assert check_no_duplicate_effects(b.build()).status == FAIL


def _crash(rerun_at: float | None) -> HistoryBuilder:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.5)  # finished before the crash: not affected
    b.submit(2)
    if rerun_at is None:
        b.run(2, 0.5)  # stays doing forever
    else:
        b.run(2, 0.5, rerun_at - 0.05, "retry")  # re-queued by stall recovery
        b.run(2, rerun_at, rerun_at + 0.1)
    b.fault("kill", "worker:w1", 1.0, 1.5)
    return b


def test_recovery_latency_passes_within_budget() -> None:
    v = check_recovery_latency(_crash(4.0).build(), budget=3.0)
    assert v.status == PASS
    (row,) = v.figures["recoveries"]
    assert (row["what"], row["job_id"], row["latency"], row["budget"], row["ok"]) == (
        "kill worker:w1",
        2,
        2.5,
        3.0,
        True,
    )


def test_recovery_latency_fails_when_late_or_never() -> None:
    late = check_recovery_latency(_crash(6.0).build(), budget=3.0)
    assert late.status == FAIL and "4.500s after kill worker:w1" in late.evidence[0]
    never = check_recovery_latency(_crash(None).build(), budget=3.0)
    assert never.status == FAIL and "never ran again" in never.evidence[0]


def test_recovery_latency_from_the_fault_start_and_unknown_when_nothing_was_hit() -> None:
    assert check_recovery_latency(_crash(4.0).build(), budget=2.9).status == PASS  # 2.5 s
    v = check_recovery_latency(_crash(4.0).build(), budget=2.9, measure_from="start")
    assert v.status == FAIL  # 3.0 s after the kill itself
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.5)
    b.fault("kill", "worker:w1", 1.0, 1.5)
    assert check_recovery_latency(b.build(), budget=3.0).status == UNKNOWN


def _health(samples: list[tuple[float, int | None]], fault: tuple[float, float]) -> HistoryBuilder:
    b = HistoryBuilder()
    b.fault("pg_kill", "postgres", *fault)
    for t, status in samples:
        b.observe("health_status", status, t)
    return b


def test_health_transitions_pass() -> None:
    samples = [(0.0, 200), (1.0, 200), (2.2, 503), (3.0, 503), (4.3, 200), (5.0, 200)]
    v = check_health_transitions(
        _health(samples, (2.0, 4.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == PASS, v.evidence


def test_health_transitions_fail_when_outage_unnoticed() -> None:
    samples = [(0.0, 200), (2.5, 200), (3.5, 200), (4.3, 200)]
    v = check_health_transitions(
        _health(samples, (2.0, 4.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == FAIL and "never left 200" in v.evidence[0]


def test_health_transitions_fail_when_recovery_is_late_or_alarm_is_false() -> None:
    late = [(0.0, 200), (2.5, 503), (4.5, 503), (5.5, 200)]
    v = check_health_transitions(
        _health(late, (2.0, 4.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == FAIL and "after 1.500s" in v.evidence[0]
    false_alarm = [(0.0, 200), (1.0, 503), (2.5, 503), (4.2, 200), (6.0, 200)]
    v = check_health_transitions(
        _health(false_alarm, (2.0, 4.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == FAIL and "false alarm" in v.evidence[-1]
    stuck = [(0.0, 200), (2.5, 503), (4.2, 200), (6.0, None)]
    v = check_health_transitions(
        _health(stuck, (2.0, 4.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == FAIL and "ended at None" in v.evidence[-1]


def test_health_transitions_unknown_without_samples() -> None:
    v = check_health_transitions(
        _health([], (2.0, 4.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == UNKNOWN


WT, ABORT_TOL, EXIT_MARGIN = 1.0, 0.1, 0.3


def _shutdown_check(b: HistoryBuilder, **kw: bool) -> Verdict:
    return check_graceful_shutdown(
        b.build(), worker_timeout=WT, abort_tolerance=ABORT_TOL, exit_margin=EXIT_MARGIN, **kw
    )


def _shutdown(
    *,
    exit_code: int = 0,
    exit_at: float = 2.1,
    second_run: bool = False,
    abort_at: float = 2.02,
    aborted_outcome: str = "retry",
    rerun: str | None = "succeeded",
) -> HistoryBuilder:
    """SIGTERM at 1.0 on w1 (WORKER_TIMEOUT 1.0 s): job 1 finishes by itself at 1.2, job 2
    hangs and is aborted at ``abort_at`` (re-queued at once), then runs again on w2."""
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.5, 1.2, worker="w1")  # finishes during the shutdown
    b.submit(2)
    if aborted_outcome == "retry":
        b.run(2, 0.6, abort_at, "retry", retry_in=0.0, worker="w1")  # aborted, re-queued
    else:
        b.run(2, 0.6, abort_at, aborted_outcome, worker="w1")
    if rerun is not None:
        b.run(2, 2.5, 2.6, rerun, worker="w2")
    if second_run:
        b.run(1, 3.0, 3.1, worker="w2")  # heartbeat stopped, recovery re-ran a finished job
    b.fault("sigterm", "worker:w1", 1.0, exit_at, exit_code=exit_code)
    return b


def test_graceful_shutdown_passes_with_one_finish_and_one_abort() -> None:
    v = _shutdown_check(_shutdown(), require_abort=True)
    assert v.status == PASS, v.evidence
    assert v.figures["shutdowns"][0]["in_flight"] == 2
    assert v.figures["shutdowns"][0]["aborted"] == 1


def test_graceful_shutdown_fails_on_exit_code_duration_and_reruns() -> None:
    def evidence(b: HistoryBuilder) -> list[str]:
        v = _shutdown_check(b)
        assert v.status == FAIL
        return v.evidence

    assert "exit code 1" in evidence(_shutdown(exit_code=1))[0]
    # exit 1.5 s after the signal: beyond WORKER_TIMEOUT 1.0 s + 0.3 s
    assert "beyond WORKER_TIMEOUT" in evidence(_shutdown(exit_at=2.5))[0]
    assert "ran again" in evidence(_shutdown(second_run=True))[0]
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.5)  # left doing
    b.fault("sigterm", "worker:w1", 1.0, 1.5, exit_code=0)
    assert "still doing" in evidence(b)[0]


def test_a_run_not_aborted_at_worker_timeout_fails() -> None:
    # no-shutdown-abort: the hanging job runs on until its own timeout at 2.6 s, then retries
    late = _shutdown_check(_shutdown(abort_at=2.6, exit_at=2.7))
    assert late.status == FAIL
    assert any("neither succeeded by WORKER_TIMEOUT" in e for e in late.evidence)
    # or it finishes by itself long after WORKER_TIMEOUT
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.5, 2.5, worker="w1")
    b.fault("sigterm", "worker:w1", 1.0, 2.6, exit_code=0)
    v = _shutdown_check(b)
    assert v.status == FAIL and any("not aborted at WORKER_TIMEOUT" in e for e in v.evidence)


def test_an_abort_that_is_not_requeued_or_never_succeeds_fails() -> None:
    # cancelled-not-requeued: the aborted run ends failed
    v = _shutdown_check(_shutdown(aborted_outcome="failed", rerun=None))
    assert v.status == FAIL and "ended failed" in v.evidence[0]
    never = _shutdown_check(_shutdown(rerun=None))
    assert never.status == FAIL and "never ran again" in never.evidence[0]
    failed_after = _shutdown_check(_shutdown(rerun="failed"))
    assert failed_after.status == FAIL and "not succeeded" in failed_after.evidence[0]


def test_graceful_shutdown_fails_on_two_runs_at_once() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.5)  # the first run is still going...
    b.run(1, 1.1, 1.3)  # ...when recovery starts a second one
    b.fault("sigterm", "worker:w1", 1.0, 1.5, exit_code=0)
    v = _shutdown_check(b)
    assert v.status == FAIL and any("started again" in e for e in v.evidence)


def test_graceful_shutdown_unknown_with_nothing_in_flight_or_nothing_aborted() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.1)
    b.fault("sigterm", "worker:w1", 1.0, 1.5, exit_code=0)
    assert _shutdown_check(b).status == UNKNOWN
    b2 = HistoryBuilder()
    b2.submit(1)
    b2.run(1, 0.5, 1.2, worker="w1")
    b2.fault("sigterm", "worker:w1", 1.0, 1.3, exit_code=0)
    assert _shutdown_check(b2).status == PASS
    v = _shutdown_check(b2, require_abort=True)
    assert v.status == UNKNOWN and "abort was not exercised" in v.summary


def test_graceful_shutdown_only_judges_the_signalled_workers_jobs() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.5, 1.2)  # on the signalled worker: finished in time
    b.submit(2)
    b.run(2, 0.5, 3.0)  # on the other worker: runs on past the exit, which is fine
    b.fault("sigterm", "worker:w1", 1.0, 1.5, exit_code=0, jobs=[1])
    v = _shutdown_check(b)
    assert v.status == PASS and v.figures["shutdowns"][0]["in_flight"] == 1
    b.fault("sigterm", "worker:w2", 1.0, 1.5, exit_code=0)  # without a job list: all count
    assert (
        check_graceful_shutdown(
            b.history, worker_timeout=WT, abort_tolerance=ABORT_TOL, exit_margin=EXIT_MARGIN
        ).status
        == FAIL
    )
    # the runs' workers, from the logs, decide over the job list
    b2 = HistoryBuilder()
    b2.submit(1)
    b2.run(1, 0.5, 3.0, worker="w2")
    b2.fault("sigterm", "worker:w1", 1.0, 1.5, exit_code=0, jobs=[1])
    assert _shutdown_check(b2).status == UNKNOWN


def _outage(progress_at: float | None) -> HistoryBuilder:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.5)  # done before the outage: not pending
    b.submit(2, 1.0)
    b.run(2, 1.1, 1.2, "retry", retry_in=2.0)  # failed in the outage, retry due at 3.2
    b.submit(3, 1.5)  # queued during the outage
    if progress_at is not None:
        b.run(2, 3.3, 3.4)
        b.run(3, progress_at, progress_at + 0.1)
    b.fault("proxy_down", "dblink", 1.0, 2.0)
    return b


def test_queue_resumes_pass_and_fail() -> None:
    ok = check_queue_resumes(
        _outage(2.5).build(),
        budget=1.0,
        fault_kinds=("proxy_down",),
        target_prefix="dblink",
    )
    assert ok.status == PASS, ok.evidence
    latencies = {r["job_id"]: r["latency"] for r in ok.figures["recoveries"]}
    assert latencies == {2: 0.1, 3: 0.5}  # job 2 counted from its retry time, not the fault
    assert ok.name == "recovery_latency"
    late = check_queue_resumes(
        _outage(3.5).build(),
        budget=1.0,
        fault_kinds=("proxy_down",),
        target_prefix="dblink",
    )
    assert late.status == FAIL and "job 3 moved again 1.500s" in late.evidence[0]
    assert late.summary.startswith("job 3 moved again") and "1 of 2" in late.summary
    never = check_queue_resumes(
        _outage(None).build(),
        budget=1.0,
        fault_kinds=("proxy_down",),
        target_prefix="dblink",
    )
    assert never.status == FAIL and "never moved again" in never.evidence[0]


def _crash_amid_teardown(*, ended_after: float | None, lost_at: float = 1.1) -> HistoryBuilder:
    """PostgreSQL down 1.0-1.2 s; the worker's session lost at ``lost_at``; its teardown over
    ``ended_after`` seconds later (None: not seen); job 2, queued at 0.9 s, runs at 6.0 s."""
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.5)  # done before the crash: not pending
    b.submit(2, 0.9)
    b.run(2, 6.0, 6.1)
    b.fault("pg_kill", "postgres", 1.0, 1.2)
    b.observe("session_lost", {"worker": "w1", "reason": "the pool failed"}, lost_at)
    if ended_after is not None:
        b.observe("session_ended", {"worker": "w1", "took": ended_after}, lost_at + ended_after)
    return b


def _resumes(b: HistoryBuilder, teardown: float | None = 5.0) -> Verdict:
    return check_queue_resumes(
        b.build(),
        budget=1.0,
        fault_kinds=("pg_kill",),
        target_prefix="postgres",
        session_teardown=teardown,
    )


def test_queue_resumes_waits_out_a_session_teardown_the_fault_started() -> None:
    # the teardown ran to 5.1 s: job 2 at 6.0 s is 0.9 s after it, within the 1 s budget
    ok = _resumes(_crash_amid_teardown(ended_after=4.0))
    assert ok.status == PASS, ok.evidence
    (row,) = ok.figures["recoveries"]
    assert row["teardown"] == 3.9 and row["budget"] == 4.9
    # without the teardown rule the same history fails: the rule is what lets it pass
    assert _resumes(_crash_amid_teardown(ended_after=4.0), teardown=None).status == FAIL


def test_queue_resumes_counts_a_teardown_no_longer_than_the_systems_limit() -> None:
    # the teardown took 4.8 s but the limit is 3 s: only 1.1 + 3 - 1.2 = 2.9 s are allowed
    late = _resumes(_crash_amid_teardown(ended_after=4.8), teardown=3.0)
    assert late.status == FAIL
    assert "job 2 moved again 4.800s after pg_kill postgres, budget 3.900s" in late.evidence[0]
    assert (
        "w1's lost-session teardown (ended 4.80s after the loss; limit 3.000s)"
        in (late.evidence[0])
    )


def test_queue_resumes_allows_the_limit_when_the_teardown_was_not_seen_ending() -> None:
    assert _resumes(_crash_amid_teardown(ended_after=None)).status == PASS
    assert _resumes(_crash_amid_teardown(ended_after=None), teardown=3.0).status == FAIL


def test_queue_resumes_weighs_every_session_lost_in_the_window() -> None:
    # w2's session, lost at 1.05 s, ended before the crash did; w1's, lost at 1.15 s, ran to
    # 5.1 s: the later loss is still looked at, and its teardown is the one allowed
    b = _crash_amid_teardown(ended_after=3.95, lost_at=1.15)
    b.observe("session_lost", {"worker": "w2", "reason": "the pool failed"}, 1.05)
    b.observe("session_ended", {"worker": "w2", "took": 0.05}, 1.1)
    ok = _resumes(b)
    assert ok.status == PASS, ok.evidence
    assert ok.figures["recoveries"][0]["teardown"] == 3.9


def test_queue_resumes_ignores_a_session_lost_outside_the_fault() -> None:
    # lost long before the crash (another fault's doing): no allowance for this one
    early = _resumes(_crash_amid_teardown(ended_after=4.0, lost_at=0.5))
    assert early.status == FAIL and "teardown" not in early.evidence[0]


def test_health_detection_budget_per_fault_kind() -> None:
    samples = [(0.0, 200), (2.5, 200), (3.9, 200), (4.3, 200)]
    budgets = {"pg_kill": 3.0, "*": 1.0}  # the 2 s window is shorter than the pg_kill budget
    v = check_health_transitions(
        _health(samples, (2.0, 4.0)).build(), detect_budget=budgets, recover_budget=1.0
    )
    assert v.status == PASS, v.evidence
    v = check_health_transitions(
        _health(samples, (2.0, 4.0)).build(), detect_budget={"*": 1.0}, recover_budget=1.0
    )
    assert v.status == FAIL and "detection budget 1.000s" in v.evidence[0]


def test_health_may_still_flap_inside_the_recovery_window() -> None:
    # back to 200, then 503 again while the worker reconnects late: within the budget, fine
    samples = [(0.0, 200), (2.5, 503), (4.1, 200), (4.6, 503)]
    v = check_health_transitions(
        _health(samples, (2.0, 4.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == PASS, v.evidence
    later = [*samples, (5.5, 503)]  # still 503 after the window: a failure
    v = check_health_transitions(
        _health(later, (2.0, 4.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == FAIL


def test_health_recovery_budget_per_fault_kind() -> None:
    # a 0.2 s PostgreSQL crash: the worker's lost session is torn down after the fault ended,
    # so /health goes stale 1.5 s later; the pg_kill budget (teardown + reconnect) covers it
    samples = [(0.0, 200), (2.1, 200), (2.4, 200), (3.7, 503), (5.0, 503), (6.0, 200)]
    budgets = {"pg_kill": 4.5, "*": 1.0}
    v = check_health_transitions(
        _health(samples, (2.0, 2.2)).build(), detect_budget=1.0, recover_budget=budgets
    )
    assert v.status == PASS, v.evidence
    assert v.figures["recover_budget"] == budgets
    # the same stretch after a fault kind without that allowance is a false alarm
    v = check_health_transitions(
        _health(samples, (2.0, 2.2)).build(), detect_budget=1.0, recover_budget={"*": 1.0}
    )
    assert v.status == FAIL and "3.700 with no fault open: false alarm" in v.evidence[0]
    # and 503 past the pg_kill budget is one too
    v = check_health_transitions(
        _health([*samples[:-1], (7.0, 503), (7.5, 200)], (2.0, 2.2)).build(),
        detect_budget=1.0,
        recover_budget=budgets,
    )
    assert v.status == FAIL and "7.000 with no fault open: false alarm" in v.evidence[0]


def _stalls(rerun_after: dict[int, float | None]) -> HistoryBuilder:
    """Jobs running on w1 when it is killed at 1.0 (window until 1.5); each runs again
    ``rerun_after[job]`` seconds after the window's end (None: never)."""
    b = HistoryBuilder()
    for job_id, after in rerun_after.items():
        b.submit(job_id)
        if after is None:
            b.run(job_id, 0.5, worker="w1")
        else:
            b.run(job_id, 0.5, 1.5 + after - 0.05, "retry", recovered=True, worker="w1")
            b.run(job_id, 1.5 + after, 1.6 + after, worker="w2")
    b.fault("kill", "worker:w1", 1.0, 1.5)
    return b


def test_a_slow_stall_recovery_fails_and_leads_the_figures() -> None:
    # slow-stall-recovery: twice the threshold, so twice the budget
    v = check_recovery_latency(_stalls({1: 2.0, 2: 2.1, 3: 6.0}).build(), budget=3.0)
    assert v.status == FAIL
    assert v.summary == (
        "job 3 ran again 6.000s after kill worker:w1, budget 3.000s (1 of 3 recoveries failed)"
    )
    assert [r["job_id"] for r in v.figures["recoveries"]] == [3, 1, 2]
    assert v.figures["recoveries"][0]["ok"] is False and v.figures["failed"] == 1


def test_a_job_that_never_recovers_leads_the_summary() -> None:
    v = check_recovery_latency(
        _stalls({1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 6: None}).build(), budget=3.0
    )
    assert v.status == FAIL
    assert v.summary.startswith("job 6 never ran again after kill worker:w1 (1 of 5")
    first = v.figures["recoveries"][0]
    assert first["job_id"] == 6 and first["latency"] is None


def test_recovery_shows_the_seed_bound_next_to_the_configuration_bound() -> None:
    v = check_recovery_latency(_stalls({1: 1.0, 2: 2.5}).build(), budget=3.0, seed_bound=2.0)
    assert v.status == PASS  # judged on the configuration's bound...
    assert "seed bound 2.000s: 1 of 2 beyond it" in v.summary  # ...the seed's is shown
    assert v.figures["seed_bound"] == 2.0 and v.figures["budget"] == 3.0
    within = {r["job_id"]: r["within_seed_bound"] for r in v.figures["recoveries"]}
    assert within == {1: True, 2: False}


def test_a_late_503_fails() -> None:
    # /health ignores heartbeats: the outage shows only once the database check times out
    samples = [(0.0, 200), (2.3, 200), (3.0, 200), (4.5, 503), (6.2, 200)]
    v = check_health_transitions(
        _health(samples, (2.0, 6.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == FAIL
    assert "first non-200 answer 2.500s after the fault started" in v.evidence[0]
    assert v.figures["transitions"][0]["outcome"] == "late"


def test_no_answer_is_not_a_detection() -> None:
    samples = [(0.0, 200), (2.3, None), (3.0, None), (5.0, None), (6.2, 200)]
    v = check_health_transitions(
        _health(samples, (2.0, 6.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == FAIL and "did not answer (3 samples)" in v.evidence[0]
    assert v.figures["transitions"][0]["outcome"] == "no answer"
    # a non-answer followed by a 503 in time is a detection by the 503
    samples = [(0.0, 200), (2.3, None), (2.8, 503), (6.2, 200)]
    v = check_health_transitions(
        _health(samples, (2.0, 6.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == PASS, v.evidence
    assert v.figures["transitions"][0]["to_unhealthy"] == 0.8


def test_health_always_ok_fails_and_a_missing_budget_is_an_error() -> None:
    samples = [(0.0, 200), (2.5, 200), (4.0, 200), (6.2, 200)]
    v = check_health_transitions(
        _health(samples, (2.0, 6.0)).build(), detect_budget=1.0, recover_budget=1.0
    )
    assert v.status == FAIL and v.figures["transitions"][0]["outcome"] == "missed"
    with pytest.raises(ValueError, match="no budget for fault kind 'pg_kill'"):
        check_health_transitions(
            _health(samples, (2.0, 6.0)).build(), detect_budget={"kill": 1.0}, recover_budget=1.0
        )


def test_recovery_counts_only_the_runs_of_the_killed_worker() -> None:
    b = _stalls({1: 1.0})
    b.submit(9)
    b.run(9, 0.5, 1.7, "retry", recovered=True, worker="w2")  # w2 was not killed
    b.run(9, 1.8, 1.9, worker="w2")
    v = check_recovery_latency(b.build(), budget=3.0)
    assert v.status == PASS and [r["job_id"] for r in v.figures["recoveries"]] == [1]
