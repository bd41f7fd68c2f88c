"""Retry schedule, attempt count and job timeout on synthetic histories (pass and fail)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.checker import (
    FAIL,
    PASS,
    UNKNOWN,
    check_attempt_count,
    check_job_timeout,
    check_retry_schedule,
    expected_delay,
)
from harness.history.builder import HistoryBuilder

BASE, CAP, TOL = 0.2, 1.0, 0.08


def _schedule(lags: list[float], *, runs: int, final: str = "failed") -> HistoryBuilder:
    """One job failing ``runs - 1`` times; run k+1 starts ``expected + lags[k]`` after run k."""
    b = HistoryBuilder()
    b.submit(1)
    t = 0.1
    for k in range(1, runs):
        b.run(1, t, t + 0.05, "retry", retry_in=expected_delay(k, BASE, CAP))
        t = t + 0.05 + expected_delay(k, BASE, CAP) + lags[k - 1]
    b.run(1, t, t + 0.05, final)
    return b


def test_expected_delay_is_capped_exponential() -> None:
    assert [expected_delay(k, 2.0, 300.0) for k in range(1, 6)] == [2, 4, 8, 16, 32]
    assert expected_delay(20, 2.0, 300.0) == 300.0


def test_retry_schedule_passes_within_tolerance() -> None:
    v = check_retry_schedule(
        _schedule([0.01, 0.05, 0.0, 0.07], runs=5).build(),
        base_delay=BASE,
        max_delay=CAP,
        tolerance=TOL,
    )
    assert v.status == PASS, v.evidence
    delays = v.figures["retry_delays"]
    assert [d["expected"] for d in delays] == [0.2, 0.4, 0.8, 1.0]
    assert {"job_id", "run", "observed", "expected", "tolerance"} <= set(delays[0])


def test_retry_schedule_fails_when_a_retry_is_late() -> None:
    v = check_retry_schedule(
        _schedule([0.01, 0.5, 0.0, 0.0], runs=5).build(),
        base_delay=BASE,
        max_delay=CAP,
        tolerance=TOL,
    )
    assert v.status == FAIL
    assert "after run 2" in v.evidence[0] and "later than" in v.evidence[0]


def test_retry_schedule_cannot_judge_a_retry_late_by_its_workers_stalled_loop() -> None:
    # chaos under pytest-xdist (-n 4 on 2 cores): a retry 0.064 s late against a 0.052 s
    # tolerance, while the machine ran four stacks at once
    def history(
        late: float, *stalls: tuple[str, float, float], asked: float = BASE
    ) -> HistoryBuilder:
        b = HistoryBuilder()
        b.submit(1)
        b.run(1, 0.1, 0.15, "retry", retry_in=asked, worker="w1")  # retry time 0.15 + asked
        b.run(1, 0.15 + BASE + late, 0.15 + BASE + late + 0.05, "failed", worker="w1")
        for worker, start, end in stalls:
            b.observe(
                "loop_stall", {"worker": worker, "start": b.t0 + start, "end": b.t0 + end}, end
            )
        return b

    judge = {"base_delay": BASE, "max_delay": CAP, "tolerance": TOL}
    # 0.12 s late: 0.04 s past the tolerance, and w1's loop stood still 0.06 s after 0.35
    v = check_retry_schedule(history(0.12, ("w1", 0.34, 0.41)).build(), **judge)
    assert v.status == UNKNOWN, v.summary
    assert "could not judge 1 runs" in v.summary and "held up 0.060s" in v.summary
    # a stall on another worker, or before the retry time, explains nothing
    assert check_retry_schedule(history(0.12, ("w2", 0.34, 0.41)).build(), **judge).status == FAIL
    assert check_retry_schedule(history(0.12, ("w1", 0.2, 0.34)).build(), **judge).status == FAIL
    # a retry at the next poll, 0.5 s late, is not explained by a 0.06 s stall
    v = check_retry_schedule(history(0.5, ("w1", 0.34, 0.41)).build(), **judge)
    assert v.status == FAIL and "later than" in v.evidence[0]
    # a strategy asking 0.1 s instead of 0.2 s, its retry then held by a stall covering the
    # whole pickup (0.25 to 0.5), is still a failure: the stall explains the pickup, not the ask
    v = check_retry_schedule(history(0.15, ("w1", 0.24, 0.51), asked=0.1).build(), **judge)
    assert v.status == FAIL and "later than" in v.evidence[0], v.summary


def test_retry_schedule_cannot_judge_a_retry_late_by_its_workers_slow_fetch() -> None:
    # chaos under pytest-xdist (-n 3 on 2 cores): a retry 0.798 s after its failure against
    # 0.75 s (0.7 + 0.05), no loop stall, while PostgreSQL answered slowly
    def history(late: float, fetch: tuple[str, float, float] | None) -> HistoryBuilder:
        b = HistoryBuilder()
        b.submit(1)
        b.run(1, 0.1, 0.15, "retry", retry_in=BASE, worker="w1")  # retry time 0.35
        b.run(1, 0.35 + late, 0.4 + late, "failed", worker="w1")
        if fetch is not None:
            worker, start, end = fetch
            value = {"worker": worker, "job_id": 1, "start": b.t0 + start, "end": b.t0 + end}
            b.observe("slow_fetch", value, end)
        return b

    judge = {"base_delay": BASE, "max_delay": CAP, "tolerance": TOL}
    # 0.12 s late: 0.04 s past the tolerance, w1's fetch of it took 0.35-0.47 (after 0.35)
    v = check_retry_schedule(history(0.12, ("w1", 0.35, 0.47)).build(), **judge)
    assert v.status == UNKNOWN, v.summary
    assert "held up 0.120s" in v.summary and "fetch waited on the database" in v.summary
    # without the slow fetch, or with another worker's, the same retry fails
    assert check_retry_schedule(history(0.12, None).build(), **judge).status == FAIL
    assert check_retry_schedule(history(0.12, ("w2", 0.35, 0.47)).build(), **judge).status == FAIL
    # a fetch slow by 0.02 s explains 0.02 s, not a retry 0.5 s late (a pickup at the next poll)
    assert check_retry_schedule(history(0.5, ("w1", 0.83, 0.85)).build(), **judge).status == FAIL


def test_retry_schedule_fails_when_the_queue_runs_a_retry_before_its_time() -> None:
    v = check_retry_schedule(
        _schedule([0.0, -0.35, 0.0], runs=4).build(),
        base_delay=BASE,
        max_delay=CAP,
        tolerance=TOL,
    )
    assert v.status == FAIL and "before its retry time" in v.evidence[0]


def test_retry_schedule_fails_when_the_strategy_asks_too_short_a_wait() -> None:
    # A linear strategy (0.2, 0.4, 0.6, 0.8 s) where the formula wants 0.2, 0.4, 0.8, 1.0 s.
    b = HistoryBuilder()
    b.submit(1)
    t = 0.0
    for k in range(1, 5):
        b.run(1, t, t + 0.01, "retry", retry_in=BASE * k)
        t += 0.01 + BASE * k + 0.01
    b.run(1, t, t + 0.01)
    v = check_retry_schedule(b.build(), base_delay=BASE, max_delay=CAP, tolerance=TOL)
    assert v.status == FAIL
    assert len(v.evidence) == 2 and "after run 3 was scheduled 0.600s" in v.evidence[0]


def test_retry_schedule_allows_the_commit_to_lag_the_decision() -> None:
    # Loaded machine: the failure commits 0.05 s after the strategy chose the retry time, so
    # the retry comes 0.05 s "early" measured from the commit: within the tolerance.
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.1, "retry", retry_in=0.4 - 0.05)
    b.run(1, 0.1 + 0.35 + 0.01, 0.5)
    v = check_retry_schedule(b.build(), base_delay=0.4, max_delay=CAP, tolerance=TOL)
    assert v.status == PASS, v.evidence


def test_retry_schedule_fails_when_the_cap_is_ignored() -> None:
    # Uncapped: the wait after run 4 is 1.6 s, the cap says 1.0 s.
    b = HistoryBuilder()
    b.submit(1)
    t = 0.0
    for k in range(1, 6):
        delay = BASE * 2 ** (k - 1)
        b.run(1, t, t + 0.01, "retry", retry_in=delay)
        t += 0.01 + delay
    b.run(1, t, t + 0.01, "succeeded")
    v = check_retry_schedule(b.build(), base_delay=BASE, max_delay=CAP, tolerance=TOL)
    assert v.status == FAIL and "after run 4 " in v.evidence[0]


def test_retry_schedule_without_retries_is_unknown_and_ignores_stall_requeues() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 5.0, "retry")  # stall recovery: no retry time, not a scheduled retry
    b.run(1, 5.0, 5.1)
    v = check_retry_schedule(b.build(), base_delay=BASE, max_delay=CAP, tolerance=TOL)
    assert v.status == UNKNOWN


@settings(max_examples=60, deadline=None)
@given(
    runs=st.integers(min_value=2, max_value=7),
    lags=st.lists(st.floats(min_value=0.0, max_value=TOL * 0.99), min_size=6, max_size=6),
    bad=st.integers(min_value=0, max_value=5),
    excess=st.floats(min_value=0.01, max_value=5.0),
)
def test_retry_schedule_property(runs: int, lags: list[float], bad: int, excess: float) -> None:
    """Any lag inside the tolerance passes; pushing one retry past it fails, naming that run."""
    good = check_retry_schedule(
        _schedule(lags, runs=runs).build(), base_delay=BASE, max_delay=CAP, tolerance=TOL
    )
    assert good.status == PASS
    bad %= runs - 1
    broken = list(lags)
    broken[bad] = TOL + excess
    v = check_retry_schedule(
        _schedule(broken, runs=runs).build(), base_delay=BASE, max_delay=CAP, tolerance=TOL
    )
    assert v.status == FAIL and len(v.evidence) == 1
    assert f"after run {bad + 1} " in v.evidence[0]


def test_attempt_count_pass_and_fail() -> None:
    assert check_attempt_count(_schedule([0] * 4, runs=5).build(), max_attempts=5).status == PASS
    fewer = check_attempt_count(_schedule([0] * 4, runs=4).build(), max_attempts=5)
    assert fewer.status == FAIL and "after 4 runs, expected 5" in fewer.evidence[0]
    more = check_attempt_count(
        _schedule([0] * 6, runs=6, final="succeeded").build(), max_attempts=5
    )
    assert more.status == FAIL and "ran 6 times" in more.evidence[0]
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.1)
    assert check_attempt_count(b.build(), max_attempts=5, require_failures=True).status == UNKNOWN


def _timeout_history(durations: list[float], ends: list[str]) -> HistoryBuilder:
    b = HistoryBuilder()
    b.submit(1)
    t = 0.0
    for d, end in zip(durations, ends, strict=True):
        b.run(1, t, t + d, end, retry_in=0.1 if end == "retry" else None)
        t += d + 0.1
    return b


def test_job_timeout_passes_when_a_timed_out_run_is_retried() -> None:
    v = check_job_timeout(
        _timeout_history([1.02, 0.2], ["retry", "succeeded"]).build(),
        job_timeout=1.0,
        tolerance=0.1,
        max_attempts=5,
        require_timeouts=True,
    )
    assert v.status == PASS, v.evidence
    assert len(v.figures["timed_out_runs"]) == 1


def test_job_timeout_fails_on_a_run_beyond_the_timeout() -> None:
    v = check_job_timeout(
        _timeout_history([3.0], ["succeeded"]).build(),
        job_timeout=1.0,
        tolerance=0.1,
        max_attempts=5,
    )
    assert v.status == FAIL and "lasted 3.000s" in v.evidence[0]


def test_job_timeout_fails_on_a_run_still_going_past_the_timeout_at_the_end() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0)  # never ends
    v = check_job_timeout(b.build(finished=10.0), job_timeout=1.0, tolerance=0.1, max_attempts=5)
    assert v.status == FAIL and "still running" in v.evidence[0]


def test_job_timeout_fails_when_a_timed_out_run_is_not_retried() -> None:
    v = check_job_timeout(
        _timeout_history([1.0], ["aborted"]).build(), job_timeout=1.0, tolerance=0.1, max_attempts=5
    )
    assert v.status == FAIL and "not run again" in v.evidence[0]


def test_job_timeout_unknown_without_timeouts_and_excludes_killed_runs() -> None:
    b = _timeout_history([0.2], ["succeeded"])
    assert (
        check_job_timeout(
            b.build(), job_timeout=1.0, tolerance=0.1, max_attempts=5, require_timeouts=True
        ).status
        == UNKNOWN
    )
    b2 = HistoryBuilder()
    b2.submit(1)
    b2.run(1, 0.0, 6.0, "retry")  # killed at 1.0, recovered at 6.0
    b2.run(1, 6.1, 6.2)
    b2.fault("kill", "worker:w1", 1.0, 1.0)
    v = check_job_timeout(b2.build(), job_timeout=1.0, tolerance=0.1, max_attempts=5)
    assert v.status == PASS and v.figures["excluded_runs"] == 1


def test_job_timeout_does_not_judge_a_run_under_a_slowed_database_link() -> None:
    # +500 ms on the link delays the write that ends the run: 1.6 s is the link's doing
    b = _timeout_history([1.6], ["succeeded"])
    b.fault("latency", "dblink", 0.5, 2.0)
    v = check_job_timeout(b.build(), job_timeout=1.0, tolerance=0.1, max_attempts=5)
    assert v.status == UNKNOWN and v.figures["excluded_runs"] == 1
    # the same run with the latency elsewhere in the history is judged, and fails
    b2 = _timeout_history([1.6], ["succeeded"])
    b2.fault("latency", "dblink", 5.0, 6.0)
    assert (
        check_job_timeout(b2.build(), job_timeout=1.0, tolerance=0.1, max_attempts=5).status == FAIL
    )


def test_job_timeout_measures_a_logged_timeout_in_its_workers_clock() -> None:
    # Job events say 1.2 s (the fetch and the end write took 0.1 s each); the worker's log
    # says the timeout fired 1.02 s after the run began: within 1.0 s + 0.1 s.
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 1.2, "retry", retry_in=0.1, worker="w1")
    b.run(1, 1.4, 1.5, worker="w1")
    b.observe("run_worker", {"job_id": 1, "run": 1, "worker": "w1"}, 0.1)
    b.observe("run_timed_out", {"job_id": 1, "run": 1, "worker": "w1"}, 1.12)
    v = check_job_timeout(b.build(), job_timeout=1.0, tolerance=0.1, max_attempts=5)
    assert v.status == PASS, v.evidence
    assert v.figures["measured_by_worker"] == 1 and abs(v.figures["longest_run"] - 1.02) < 1e-3
    # the same log saying the timeout fired late fails, naming the worker's clock
    b2 = HistoryBuilder()
    b2.submit(1)
    b2.run(1, 0.0, 1.2, "retry", retry_in=0.1, worker="w1")
    b2.run(1, 1.4, 1.5, worker="w1")
    b2.observe("run_worker", {"job_id": 1, "run": 1, "worker": "w1"}, 0.0)
    b2.observe("run_timed_out", {"job_id": 1, "run": 1, "worker": "w1"}, 1.2)
    v2 = check_job_timeout(b2.build(), job_timeout=1.0, tolerance=0.1, max_attempts=5)
    assert v2.status == FAIL and "s by its worker's log" in v2.evidence[0]
    assert abs(v2.figures["longest_run"] - 1.2) < 1e-3


def test_job_timeout_measures_any_logged_end_in_its_workers_clock() -> None:
    # soak seed 20261216 run 40: a run failed (the upstream hung up) 1.472 s in by its
    # worker's log; its end write landed 94 ms later, past 1.5 s + 0.063 s by the job events
    def history(*ending: tuple[str, float]) -> HistoryBuilder:
        b = HistoryBuilder()
        b.submit(1)
        b.run(1, 0.0, 1.566, "retry", retry_in=0.1, worker="w3")
        b.run(1, 1.8, 1.9, worker="w3")
        b.observe("run_worker", {"job_id": 1, "run": 1, "worker": "w3"}, 0.0)
        for name, t in ending:
            b.observe(name, {"job_id": 1, "run": 1, "worker": "w3", "status": "Error"}, t)
        return b

    judge = {"job_timeout": 1.5, "tolerance": 0.063, "max_attempts": 5}
    v = check_job_timeout(history(("run_failed", 1.471), ("run_ended", 1.472)).build(), **judge)
    assert v.status == PASS, v.evidence
    assert v.figures["longest_run"] < 1.4715  # the earliest line that ended it (1.471 s)
    # Procrastinate's end line alone is enough
    v = check_job_timeout(history(("run_ended", 1.472)).build(), **judge)
    assert v.status == PASS and v.figures["measured_by_worker"] == 1
    # without any, the job events judge: 1.566 s fails
    v = check_job_timeout(history().build(), **judge)
    assert v.status == FAIL and "1.566s by its job events" in v.evidence[0]
    # and a worker that logs the end late fails by its own clock
    v = check_job_timeout(history(("run_ended", 1.6)).build(), **judge)
    assert v.status == FAIL and "s by its worker's log" in v.evidence[0]


def test_job_timeout_cannot_judge_a_late_timeout_its_workers_stalled_loop_explains() -> None:
    # soak seed 20261216 run 74: job 39's 1.5 s timeout fell due at 58.564 while w1's loop
    # ended 10 runs in a burst; it fired at 58.640, 76 ms late against a 56 ms tolerance
    def history(*stalls: tuple[float, float], ended: float = 1.576) -> HistoryBuilder:
        b = HistoryBuilder()
        b.submit(1)
        b.run(1, 0.0, ended + 0.01, "retry", retry_in=0.1, worker="w1")
        b.run(1, ended + 0.3, ended + 0.4, worker="w1")
        b.observe("run_worker", {"job_id": 1, "run": 1, "worker": "w1"}, 0.0)
        b.observe("run_timed_out", {"job_id": 1, "run": 1, "worker": "w1"}, ended)
        for start, end in stalls:
            stall = {"worker": "w1", "start": b.t0 + start, "end": b.t0 + end}
            b.observe("loop_stall", stall, end)
        return b

    judge = {"job_timeout": 1.5, "tolerance": 0.056, "max_attempts": 5}
    # the loop was not seen running from 1.49 to 1.566: the timer due at 1.5 waited 66 ms
    v = check_job_timeout(history((1.49, 1.566)).build(), **judge)
    assert v.status == UNKNOWN, v.summary
    assert "event loop was not seen running for 0.06" in v.summary  # of 1.5..1.566
    # two stalls 10 ms apart are one stretch (the loop ran only to take its next look)
    v = check_job_timeout(history((1.49, 1.52), (1.53, 1.566)).build(), **judge)
    assert v.status == UNKNOWN, v.summary
    # a stall on another worker, or one that ended before the timeout fell due, explains nothing
    other = history()
    elsewhere = {"worker": "w2", "start": other.t0 + 1.49, "end": other.t0 + 1.6}
    other.observe("loop_stall", elsewhere, 1.6)
    assert check_job_timeout(other.build(), **judge).status == FAIL
    assert check_job_timeout(history((1.2, 1.45)).build(), **judge).status == FAIL
    # no-timeout: a run 2 s past its timeout is not explained by a 0.1 s stall
    v = check_job_timeout(history((1.49, 1.6), ended=3.5).build(), **judge)
    assert v.status == FAIL and "lasted 3.4" in v.evidence[0], v.evidence


def test_job_timeout_fails_when_a_timeout_with_runs_left_ends_failed() -> None:
    # TimeoutError not retried: the first timed-out run fails the job for good
    v = check_job_timeout(
        _timeout_history([1.01], ["failed"]).build(),
        job_timeout=1.0,
        tolerance=0.1,
        max_attempts=5,
    )
    assert v.status == FAIL
    assert "timed out on run 1 of 5 after 1.010s and failed: not retried" in v.evidence[0]
    assert v.summary.startswith("job 1 timed out on run 1 of 5")


def test_job_timeout_accepts_failed_on_the_last_run_only() -> None:
    runs = [1.0, 1.0, 1.0]
    last = check_job_timeout(
        _timeout_history(runs, ["retry", "retry", "failed"]).build(),
        job_timeout=1.0,
        tolerance=0.1,
        max_attempts=3,
        require_timeouts=True,
    )
    assert last.status == PASS, last.evidence
    early = check_job_timeout(
        _timeout_history(runs, ["retry", "retry", "failed"]).build(),
        job_timeout=1.0,
        tolerance=0.1,
        max_attempts=4,
    )
    assert early.status == FAIL and "run 3 of 4" in early.evidence[0]


def test_job_timeout_says_could_not_look_apart_from_no_timeout() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 6.0, "retry")  # the only run met a kill: nothing can be judged
    b.fault("kill", "worker:w1", 1.0, 2.0)
    blind = check_job_timeout(b.build(), job_timeout=1.0, tolerance=0.1, max_attempts=5)
    assert blind.status == UNKNOWN and blind.summary.startswith("could not look")
    quick = check_job_timeout(
        _timeout_history([0.2], ["succeeded"]).build(),
        job_timeout=1.0,
        tolerance=0.1,
        max_attempts=5,
        require_timeouts=True,
    )
    assert quick.status == UNKNOWN and quick.summary.startswith("no run reached the timeout")


def test_job_timeout_excludes_only_faults_on_the_runs_own_worker() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 3.0, worker="w2")  # ran on past the timeout on w2; w1 was killed meanwhile
    b.fault("kill", "worker:w1", 1.0, 2.0)
    v = check_job_timeout(b.build(), job_timeout=1.0, tolerance=0.1, max_attempts=5)
    assert v.status == FAIL and "lasted 3.000s" in v.evidence[0]


# -- schedules that break the formula in realistic ways: base 0.1 s, cap 0.8 s, 6 runs --------

B, C, T = 0.1, 0.8, 0.04


def _requested(delays: list[float], lag: float = 0.01) -> HistoryBuilder:
    """One job whose strategy asks for ``delays`` (one per failed run); each retry starts
    ``lag`` after its retry time; the last run fails for good."""
    b = HistoryBuilder()
    b.submit(1)
    t = 0.0
    for delay in delays:
        b.run(1, t, t + 0.01, "retry", retry_in=delay)
        t += 0.01 + delay + lag
    b.run(1, t, t + 0.01, "failed")
    return b


EXACT = [0.1, 0.2, 0.4, 0.8, 0.8]
BROKEN = {
    "constant": [0.1, 0.1, 0.1, 0.1, 0.1],
    "linear": [0.1, 0.2, 0.3, 0.4, 0.5],
    "one doubling late": [0.2, 0.4, 0.8, 0.8, 0.8],
    "one doubling early": [0.05, 0.1, 0.2, 0.4, 0.8],
    "uncapped": [0.1, 0.2, 0.4, 0.8, 1.6],
}


def test_the_seed_schedule_passes_with_its_cap_exercised() -> None:
    v = check_retry_schedule(
        _requested(EXACT).build(), base_delay=B, max_delay=C, tolerance=T, require_cap=True
    )
    assert v.status == PASS, v.evidence
    assert v.figures["capped_retries"] == 1  # 0.8 after run 5: 1.6 uncapped


def test_constant_linear_off_by_one_and_uncapped_schedules_fail() -> None:
    for name, delays in BROKEN.items():
        v = check_retry_schedule(_requested(delays).build(), base_delay=B, max_delay=C, tolerance=T)
        assert v.status == FAIL, name
        assert v.summary.startswith("job 1: retry after run"), name


def test_a_tolerance_too_coarse_to_tell_a_doubling_is_unknown() -> None:
    # 0.05 s is half the smallest delay (0.1 s): constant and exponential look alike
    v = check_retry_schedule(_requested(EXACT).build(), base_delay=B, max_delay=C, tolerance=0.05)
    assert v.status == UNKNOWN and "not below half the smallest expected delay" in v.summary


def test_a_cap_never_reached_is_unknown_when_required() -> None:
    b = _requested(EXACT[:3])  # 4 runs: 0.1, 0.2, 0.4, never the cap
    v = check_retry_schedule(b.build(), base_delay=B, max_delay=C, tolerance=T, require_cap=True)
    assert v.status == UNKNOWN and "cap" in v.summary
    assert check_retry_schedule(b.build(), base_delay=B, max_delay=C, tolerance=T).status == PASS


SCHEDULES = {
    "constant": lambda k, b, c: b,
    "linear": lambda k, b, c: min(b * k, c),
    "one doubling late": lambda k, b, c: min(b * 2**k, c),
    "one doubling early": lambda k, b, c: min(b * 2 ** (k - 2), c),
    "uncapped": lambda k, b, c: b * 2 ** (k - 1),
}


@settings(max_examples=80, deadline=None)
@given(
    base=st.floats(min_value=0.05, max_value=3.0),
    doublings=st.integers(min_value=4, max_value=6),
    share=st.floats(min_value=0.01, max_value=0.45),
    jitter=st.lists(st.floats(min_value=0.0, max_value=0.9), min_size=10, max_size=10),
    wrong=st.sampled_from(sorted(SCHEDULES)),
)
def test_schedule_property_right_passes_every_wrong_shape_fails(
    base: float, doublings: int, share: float, jitter: list[float], wrong: str
) -> None:
    """With at least four doublings below the cap, one capped retry and a tolerance below half
    the base: the formula (plus pickup jitter inside the tolerance) passes and every wrong
    shape fails."""
    cap = base * 2**doublings
    tol = base * share
    runs = doublings + 3  # the wait after run doublings + 2 is capped
    lags = [j * tol for j in jitter]

    def history(delay: object) -> HistoryBuilder:
        b = HistoryBuilder()
        b.submit(1)
        t = 0.0
        for k in range(1, runs):
            d = delay(k, base, cap)  # type: ignore[operator]
            b.run(1, t, t + 0.01, "retry", retry_in=d)
            t += 0.01 + d + lags[k - 1]
        b.run(1, t, t + 0.01, "failed")
        return b

    good = check_retry_schedule(
        history(expected_delay).build(),
        base_delay=base,
        max_delay=cap,
        tolerance=tol,
        require_cap=True,
    )
    assert good.status == PASS, good.evidence
    bad = check_retry_schedule(
        history(SCHEDULES[wrong]).build(), base_delay=base, max_delay=cap, tolerance=tol
    )
    assert bad.status == FAIL, wrong


def test_attempt_count_allows_another_run_only_after_an_interrupted_last_run() -> None:
    # Run 5 of 5 is interrupted (its worker aborted it, or it stalled): the interruption is not
    # the job's failure, so a sixth run is allowed; a sixth run after run 5 failed by itself
    # (an off-by-one) is not.
    def six_runs(fifth: str) -> HistoryBuilder:
        b = HistoryBuilder()
        b.submit(1)
        for k in range(4):
            b.run(1, k, k + 0.1, "retry", retry_in=0.5)
        if fifth == "aborted":
            b.run(1, 4.0, 4.1, "retry", retry_in=0.0)
            b.observe("run_aborted", {"job_id": 1, "run": 5, "worker": "w1"}, 4.1)
        elif fifth == "stalled":
            b.run(1, 4.0, 4.1, "retry", recovered=True)
        else:
            b.run(1, 4.0, 4.1, "retry", retry_in=0.5)
        b.run(1, 5.0, 5.1, "failed")
        return b

    for fifth in ("aborted", "stalled"):
        v = check_attempt_count(six_runs(fifth).build(), max_attempts=5)
        assert v.status == PASS, (fifth, v.evidence)
    v = check_attempt_count(six_runs("by itself").build(), max_attempts=5)
    assert v.status == FAIL
    assert (
        "ran 6 times" in v.evidence[0]
        and "run 5 ended deferred_for_retry by itself" in (v.evidence[0])
    )
