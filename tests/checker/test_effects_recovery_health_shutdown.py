"""Duplicate effects, recovery latency, health transitions and graceful shutdown (pass, fail)."""

from __future__ import annotations

from harness.checker import (
    FAIL,
    PASS,
    UNKNOWN,
    check_graceful_shutdown,
    check_health_transitions,
    check_no_duplicate_effects,
    check_queue_accounting,
    check_recovery_latency,
    stall_recovery_budget,
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


def test_stall_recovery_budget_adds_up_the_configuration() -> None:
    budget = stall_recovery_budget(
        heartbeat_interval=0.5,
        stall_threshold=2.0,
        check_interval=0.5,
        poll_interval=0.2,
        slack=0.3,
    )
    assert abs(budget - 3.5) < 1e-9


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
    assert v.figures["recoveries"] == [
        {"what": "kill worker:w1", "job_id": 2, "latency": 2.5, "budget": 3.0}
    ]


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


def _shutdown(
    *, exit_code: int = 0, exit_at: float = 1.5, second_run: bool = False
) -> HistoryBuilder:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.5, 1.2)  # finishes during the shutdown
    b.submit(2)
    b.run(2, 0.6, 1.4, "retry", retry_in=0.1)  # aborted and re-queued at shutdown
    b.run(2, 2.0, 2.1)
    if second_run:
        b.run(1, 3.0, 3.1)  # heartbeat stopped, recovery re-ran a finished job
    b.fault("sigterm", "worker:w1", 1.0, exit_at, exit_code=exit_code)
    return b


def test_graceful_shutdown_passes() -> None:
    v = check_graceful_shutdown(_shutdown().build(), worker_timeout=1.0, tolerance=0.2)
    assert v.status == PASS, v.evidence
    assert v.figures["shutdowns"][0]["in_flight"] == 2


def test_graceful_shutdown_fails_on_exit_code_duration_leftovers_and_reruns() -> None:
    def check(b: HistoryBuilder) -> list[str]:
        v = check_graceful_shutdown(b.build(), worker_timeout=1.0, tolerance=0.2)
        assert v.status == FAIL
        return v.evidence

    assert "exit code 1" in check(_shutdown(exit_code=1))[0]
    assert "beyond WORKER_TIMEOUT" in check(_shutdown(exit_at=3.0))[0]
    assert "ran again" in check(_shutdown(second_run=True))[0]
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.5)  # left doing
    b.fault("sigterm", "worker:w1", 1.0, 1.5, exit_code=0)
    assert "still doing" in check(b)[0]


def test_graceful_shutdown_fails_on_two_runs_at_once() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.5)  # the first run is still going...
    b.run(1, 1.1, 1.3)  # ...when recovery starts a second one
    b.fault("sigterm", "worker:w1", 1.0, 1.5, exit_code=0)
    v = check_graceful_shutdown(b.build(), worker_timeout=1.0, tolerance=0.2)
    assert v.status == FAIL and any("started again" in e for e in v.evidence)


def test_graceful_shutdown_unknown_with_nothing_in_flight() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.1)
    b.fault("sigterm", "worker:w1", 1.0, 1.5, exit_code=0)
    assert check_graceful_shutdown(b.build(), worker_timeout=1.0, tolerance=0.2).status == UNKNOWN


def test_graceful_shutdown_only_judges_the_signalled_workers_jobs() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.5, 1.2)  # on the signalled worker: finished in time
    b.submit(2)
    b.run(2, 0.5, 3.0)  # on the other worker: runs on past the exit, which is fine
    b.fault("sigterm", "worker:w1", 1.0, 1.5, exit_code=0, jobs=[1])
    v = check_graceful_shutdown(b.build(), worker_timeout=1.0, tolerance=0.2)
    assert v.status == PASS and v.figures["shutdowns"][0]["in_flight"] == 1
    b.fault("sigterm", "worker:w2", 1.0, 1.5, exit_code=0)  # without a job list: all count
    assert check_graceful_shutdown(b.history, worker_timeout=1.0, tolerance=0.2).status == FAIL


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


def test_recovery_latency_progress_mode_pass_and_fail() -> None:
    ok = check_recovery_latency(
        _outage(2.5).build(),
        budget=1.0,
        fault_kinds=("proxy_down",),
        target_prefix="dblink",
        progress=True,
    )
    assert ok.status == PASS, ok.evidence
    latencies = {r["job_id"]: r["latency"] for r in ok.figures["recoveries"]}
    assert latencies == {2: 0.1, 3: 0.5}  # job 2 counted from its retry time, not the fault
    late = check_recovery_latency(
        _outage(3.5).build(),
        budget=1.0,
        fault_kinds=("proxy_down",),
        target_prefix="dblink",
        progress=True,
    )
    assert late.status == FAIL and "job 3 progressed 1.500s" in late.evidence[0]
    never = check_recovery_latency(
        _outage(None).build(),
        budget=1.0,
        fault_kinds=("proxy_down",),
        target_prefix="dblink",
        progress=True,
    )
    assert never.status == FAIL and "never progressed" in never.evidence[0]


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
