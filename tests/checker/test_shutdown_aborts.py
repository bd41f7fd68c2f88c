"""Shutdown aborts amid faults: a run in flight at SIGTERM is over by WORKER_TIMEOUT."""

from __future__ import annotations

from harness.checker import FAIL, PASS, UNKNOWN, check_shutdown_aborts
from harness.history.builder import HistoryBuilder
from harness.history.records import History

WT = 1.0
TOL = 0.05


def _sigterm_during_a_run(*, ends_at: float, aborted: bool) -> HistoryBuilder:
    """A run of job 1 on w1 from 0.0; SIGTERM to w1 at 0.2; the run ends at ``ends_at``."""
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, ends_at, "retry", retry_in=0.0 if aborted else 0.3, worker="w1")
    b.run(1, ends_at + 2.0, ends_at + 2.1, worker="w1")
    b.fault("sigterm", "worker:w1", 0.2, 2.0, exit_code=0)
    b.observe("run_worker", {"job_id": 1, "run": 1, "worker": "w1"}, 0.01)
    line = "run_aborted" if aborted else "run_timed_out"
    b.observe(line, {"job_id": 1, "run": 1, "worker": "w1"}, ends_at - 0.01)
    return b


def _check(history: History) -> tuple[str, str, list[str]]:
    v = check_shutdown_aborts(history, worker_timeout=WT, tolerance=TOL)
    return v.status, v.summary, v.evidence


def test_a_run_aborted_at_worker_timeout_passes() -> None:
    status, summary, _ = _check(_sigterm_during_a_run(ends_at=1.22, aborted=True).build())
    assert status == PASS and summary.startswith("1 runs in flight at 1 SIGTERM(s)")


def test_a_run_that_goes_on_to_its_own_timeout_fails() -> None:
    # no-shutdown-abort: the run's JOB_TIMEOUT (1.5 s) ends it, 1.3 s after the signal
    status, _, evidence = _check(_sigterm_during_a_run(ends_at=1.5, aborted=False).build())
    assert status == FAIL
    assert "in flight at SIGTERM" in evidence[0] and "not aborted at WORKER_TIMEOUT" in evidence[0]


def test_a_sigterm_meeting_another_fault_is_not_judged() -> None:
    for kind, target in (("pg_kill", "postgres"), ("latency", "dblink"), ("pause", "worker:w1")):
        b = _sigterm_during_a_run(ends_at=1.5, aborted=False)
        b.fault(kind, target, 0.8, 1.4)
        v = check_shutdown_aborts(b.build(), worker_timeout=WT, tolerance=TOL)
        assert v.status == PASS and v.figures["not_judged"] == 1, (kind, v.evidence)
    # a fault on another worker does not hold this one up: still judged, still fails
    b = _sigterm_during_a_run(ends_at=1.5, aborted=False)
    b.fault("pause", "worker:w2", 0.8, 1.4)
    assert _check(b.build())[0] == FAIL


def test_a_process_the_nemesis_had_to_kill_is_not_judged() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 5.0, "retry", retry_in=0.0, worker="w1")
    b.run(1, 5.1, 5.2, worker="w1")
    b.fault("sigterm", "worker:w1", 0.2, 3.0, killed=True)
    v = check_shutdown_aborts(b.build(), worker_timeout=WT, tolerance=TOL)
    assert v.status == PASS and v.figures["not_judged"] == 1


def test_no_run_in_flight_says_there_was_nothing_to_abort() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.1, worker="w1")
    b.fault("sigterm", "worker:w1", 0.5, 1.0, exit_code=0)
    status, summary, _ = _check(b.build())
    assert status == PASS and summary.startswith("nothing to abort")


def _run_whose_outcome_write_was_lost(*, ended_in_worker: float) -> HistoryBuilder:
    """Seed 20261214 run 7: job 1's run on w1 starts at 0.0; the database link is blackholed
    and PostgreSQL killed (until 3.0), so its ``succeeded`` write is lost with the session; the
    SIGTERM comes at 3.4 and stalled-job recovery ends the job at 7.0."""
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 7.0, worker="w1")
    b.fault("timeout", "dblink", 0.01, 1.9)
    b.fault("pg_kill", "postgres", 1.6, 2.8)
    b.fault("sigterm", "worker:w1", 3.4, 5.0, exit_code=0)
    b.observe("run_worker", {"job_id": 1, "run": 1, "worker": "w1"}, 0.001)
    ended = {"job_id": 1, "run": 1, "worker": "w1", "status": "Success"}
    b.observe("run_ended", ended, ended_in_worker)
    return b


def test_a_run_that_ended_in_its_worker_before_the_signal_was_not_in_flight() -> None:
    status, summary, _ = _check(_run_whose_outcome_write_was_lost(ended_in_worker=0.02).build())
    assert status == PASS and summary.startswith("nothing to abort: no run in flight at 1")
    # the same run, its worker's end line after WORKER_TIMEOUT: in flight, and too long
    late = _run_whose_outcome_write_was_lost(ended_in_worker=4.9).build()
    status, _, evidence = _check(late)
    assert status == FAIL and "ended succeeded 1.500s after it" in evidence[0]


def test_a_run_late_by_no_more_than_its_workers_stalled_loop_cannot_be_judged() -> None:
    # SIGTERM at 0.2, deadline 1.2 (+0.05): the run ended at 1.3, 50 ms late
    def history(*stalls: tuple[float, float]) -> History:
        b = _sigterm_during_a_run(ends_at=1.31, aborted=True)
        for start, end in stalls:
            b.observe("loop_stall", {"worker": "w1", "start": b.t0 + start, "end": b.t0 + end}, end)
        return b.build()

    # the loop stood still from 1.18 to 1.3: the abort timer could not fire before
    status, summary, _ = _check(history((1.18, 1.3)))
    assert status == UNKNOWN and "w1's event loop was not seen running" in summary
    # the signal came while the loop stood still (0.15 to 0.3): the deadline moved with it
    assert _check(history((0.15, 0.3)))[0] == UNKNOWN
    # a stall between the signal and the deadline delays no timer: still a failure
    assert _check(history((0.5, 0.9)))[0] == FAIL
    # no-shutdown-abort (run to its 1.5 s timeout) is not explained by a 0.1 s stall
    b = _sigterm_during_a_run(ends_at=1.5, aborted=False)
    b.observe("loop_stall", {"worker": "w1", "start": b.t0 + 1.19, "end": b.t0 + 1.29}, 1.29)
    assert _check(b.build())[0] == FAIL
