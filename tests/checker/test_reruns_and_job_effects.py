"""Justified re-runs and job effects on synthetic histories (pass and fail)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.checker import FAIL, PASS, UNKNOWN, check_job_effects, check_justified_reruns
from harness.history.builder import HistoryBuilder

#: How a job's first run ends: a backoff retry, or a re-queue justified by a kill of its own
#: worker, of another worker, or by nothing.
ENDINGS = ["backoff", "kill own worker", "kill other worker", "no fault"]


def test_backoff_retries_are_not_reruns() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.1, "retry", retry_in=0.2, worker="w1")
    b.run(1, 0.3, 0.4, worker="w2")
    v = check_justified_reruns(b.build())
    assert v.status == PASS and v.figures["reruns"] == []


def test_a_rerun_after_its_worker_was_killed_is_justified() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 3.0, "retry", recovered=True, worker="w1")  # w1 killed at 1.0
    b.run(1, 3.1, 3.2, worker="w2")
    b.fault("kill", "worker:w1", 1.0, 1.5)
    v = check_justified_reruns(b.build())
    assert v.status == PASS, v.evidence
    assert v.figures["reruns"][0]["justified_by"] == ["kill worker:w1"]
    assert "1 re-executions, each justified" in v.summary


def test_a_live_workers_job_requeued_without_a_fault_fails() -> None:
    # stall-threshold-ignored: recovery re-queues w1's running job although w1 is alive; the
    # re-queue closes run 1 in the event log, so nothing looks overlapped
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.4, "retry", recovered=True, worker="w1")
    b.run(1, 0.5, 0.6, worker="w2")
    b.submit(2)
    b.run(2, 0.0, 0.1, worker="w1")
    v = check_justified_reruns(b.build())
    assert v.status == FAIL
    assert v.summary.startswith(
        "job 1 run 2: re-executed after run 1 on w1 ended deferred_for_retry with no fault"
    )


def test_a_fault_on_another_worker_does_not_justify_a_rerun() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 3.0, "retry", recovered=True, worker="w1")
    b.run(1, 3.1, 3.2, worker="w1")
    b.fault("kill", "worker:w2", 1.0, 1.5)  # w2 died; w1, which ran the job, did not
    assert check_justified_reruns(b.build()).status == FAIL
    # ...unless the log does not say which worker ran it
    b2 = HistoryBuilder()
    b2.submit(1)
    b2.run(1, 0.0, 3.0, "retry", recovered=True)
    b2.run(1, 3.1, 3.2)
    b2.fault("kill", "worker:w2", 1.0, 1.5)
    assert check_justified_reruns(b2.build()).status == PASS


def test_database_wide_faults_and_shutdown_aborts_justify_reruns() -> None:
    for kind, target in (
        ("pg_restart", "postgres"),
        ("proxy_down", "dblink"),
        ("latency", "postgres"),
        ("sigterm", "worker:w1"),
        ("pause", "worker:w1"),
        ("terminate_backend", "worker:w1"),
    ):
        b = HistoryBuilder()
        b.submit(1)
        b.run(1, 0.0, 2.0, "retry", retry_in=0.0, worker="w1")
        b.run(1, 2.1, 2.2, worker="w2")
        b.fault(kind, target, 1.0, 1.8, exit_code=0)
        assert check_justified_reruns(b.build()).status == PASS, kind
    # a fault on the joke API stops no run
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 2.0, "retry", recovered=True, worker="w1")
    b.run(1, 2.1, 2.2, worker="w2")
    b.fault("proxy_down", "jokeapi", 1.0, 1.8)
    assert check_justified_reruns(b.build()).status == FAIL


def test_a_fault_outside_the_previous_run_justifies_nothing() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 2.0, 3.0, "retry", recovered=True, worker="w1")
    b.run(1, 3.1, 3.2, worker="w2")
    b.fault("kill", "worker:w1", 0.5, 1.0)  # before the run started
    assert check_justified_reruns(b.build()).status == FAIL


def test_overlapping_runs_always_fail() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, worker="w1")  # still running...
    b.run(1, 1.0, 1.2, worker="w2")  # ...when a second run starts
    b.fault("kill", "worker:w1", 0.5, 0.6)  # even with a fault on the first one's worker
    v = check_justified_reruns(b.build())
    assert v.status == FAIL and "two executions at once" in v.evidence[0]


def test_job_effects_pass_when_every_success_stored_its_joke() -> None:
    b = HistoryBuilder()
    for job_id, joke in ((1, "a"), (2, "b"), (3, "a")):
        b.submit(job_id)
        b.run(job_id, 0.1, 0.2)
        b.job_effect(job_id, joke, 0.15)
    b.effect("a")
    b.effect("b")
    b.submit(4)
    b.run(4, 0.1, 0.2, "failed")  # failed for good without an effect: fine
    v = check_job_effects(b.build())
    assert v.status == PASS, v.evidence
    assert v.figures["succeeded_jobs"] == 3


def test_a_succeeded_job_without_its_row_fails() -> None:
    # succeed-without-store: the store error is swallowed, the job says succeeded
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2)
    b.job_effect(1, "a")
    b.effect("a")
    b.submit(2)
    b.run(2, 0.1, 0.2)
    v = check_job_effects(b.build())
    assert v.status == FAIL and v.figures["missing_ids"] == [2]
    assert v.summary.startswith("job 2 succeeded but stored no joke")


def test_a_failed_job_with_a_row_or_a_row_without_its_joke_fails() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2, "failed")
    b.job_effect(1, "a")
    b.effect("a")
    v = check_job_effects(b.build())
    assert v.status == FAIL and "job 1 ended failed but left its effect" in v.evidence[0]
    b2 = HistoryBuilder()
    b2.submit(1)
    b2.run(1, 0.1, 0.2)
    b2.job_effect(1, "ghost")
    v = check_job_effects(b2.build())
    assert v.status == FAIL and "not in the jokes table" in v.evidence[0]


def test_job_effects_unknown_when_nothing_succeeded_or_was_stored() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2, "failed")
    assert check_job_effects(b.build()).status == UNKNOWN


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(ENDINGS), min_size=1, max_size=8))
def test_reruns_property_fail_iff_one_is_unjustified(endings: list[str]) -> None:
    """Any mix of jobs, each on its own worker: the verdict fails exactly when some job was
    re-run with no fault on the worker that ran it, and names each such job."""
    b = HistoryBuilder()
    for job_id, ending in enumerate(endings, start=1):
        t = 10.0 * job_id
        own, other = f"w{job_id}", f"x{job_id}"
        b.submit(job_id, t)
        if ending == "backoff":
            b.run(job_id, t, t + 1.0, "retry", retry_in=0.5, worker=own)
        else:
            b.run(job_id, t, t + 3.0, "retry", recovered=True, worker=own)
        b.run(job_id, t + 4.0, t + 4.1, worker=other)
        if ending.startswith("kill"):
            victim = own if ending == "kill own worker" else other
            b.fault("kill", f"worker:{victim}", t + 1.0, t + 1.5)
    v = check_justified_reruns(b.build())
    bad = [j for j, e in enumerate(endings, start=1) if e in ("no fault", "kill other worker")]
    assert (v.status == FAIL) == bool(bad)
    assert [int(e.split()[1]) for e in v.evidence] == bad
    assert len(v.figures["reruns"]) == sum(1 for e in endings if e != "backoff")


FAST_SETTINGS = {
    "worker_heartbeat_interval": 0.2,
    "db_pool_timeout": 2.0,
    "db_connect_timeout": 1.0,
    "worker_timeout": 1.0,
}


def _fetched_as_the_pause_ended(*, lost_at: float | None, paused: bool = True) -> HistoryBuilder:
    """Seed 20261207 run 2: w2 frozen 2.42 s (stall threshold 2.0 s) fetches job 1 2 ms after
    SIGCONT; its watchdog has just given up on the session; w1's recovery re-queues the job."""
    b = HistoryBuilder()
    assert b.history.meta is not None
    b.history.meta.settings.update(FAST_SETTINGS)
    b.submit(1)
    b.run(1, 2.422, 3.99, "retry", recovered=True, worker="w2")
    b.run(1, 4.0, 4.1, worker="w1")
    if paused:
        b.fault("pause", "worker:w2", 0.0, 2.42)
    if lost_at is not None:
        b.observe("session_lost", {"worker": "w2", "reason": "heartbeat write failed"}, lost_at)
    return b


def test_a_run_fetched_by_a_session_its_watchdog_ended_after_a_pause_is_justified() -> None:
    v = check_justified_reruns(_fetched_as_the_pause_ended(lost_at=None).build())
    assert v.status == FAIL  # the pause ended before the run began: not enough on its own
    v = check_justified_reruns(_fetched_as_the_pause_ended(lost_at=2.42).build())
    assert v.status == PASS, v.evidence
    (why,) = v.figures["reruns"][0]["justified_by"]
    assert why.startswith("session lost on w2 at ") and why.endswith("after pause worker:w2")


def test_a_session_loss_explains_nothing_without_a_fault_or_long_before_the_run() -> None:
    # a watchdog ending sessions for no reason: its re-runs are still unjustified
    v = check_justified_reruns(_fetched_as_the_pause_ended(lost_at=2.42, paused=False).build())
    assert v.status == FAIL
    # a loss more than the session's teardown limit (1 + 2 + 2 s) before the run: another session
    b = _fetched_as_the_pause_ended(lost_at=None)
    b.fault("pause", "worker:w2", -5.0, -4.0)  # explains the loss, which ended another session
    b.observe("session_lost", {"worker": "w2", "reason": "heartbeat write failed"}, -2.7)
    assert check_justified_reruns(b.build()).status == FAIL
    # another worker's loss does not explain w2's run
    b = _fetched_as_the_pause_ended(lost_at=None)
    b.observe("session_lost", {"worker": "w1", "reason": "heartbeat write failed"}, 2.42)
    assert check_justified_reruns(b.build()).status == FAIL
