"""Run derivation and queue accounting on synthetic histories (pass and fail)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.checker import (
    FAIL,
    PASS,
    UNKNOWN,
    Verdict,
    accounting,
    check_queue_accounting,
    merge,
    runs_by_job,
)
from harness.history.builder import HistoryBuilder


def test_runs_follow_events_and_scheduled_retries() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2, "retry", retry_in=2.0)
    b.run(1, 2.25, 2.3, "retry")  # re-queued without a retry time: a stall recovery
    b.run(1, 2.4, 2.5, "succeeded")
    runs = runs_by_job(b.build())[1]
    assert [r.number for r in runs] == [1, 2, 3]
    assert runs[0].scheduled_retry and runs[0].retry_at is not None
    assert abs(runs[0].retry_at - runs[0].end - 2.0) < 1e-9  # type: ignore[operator]
    assert not runs[1].scheduled_retry
    assert runs[2].end_type == "succeeded"


def test_accounting_passes_when_every_acknowledged_job_succeeds() -> None:
    b = HistoryBuilder()
    for j in (1, 2, 3):
        b.submit(j)
        b.run(j, 0.1, 0.3)
    v = check_queue_accounting(b.build())
    assert v.status == PASS, v
    assert v.figures["succeeded"] == 3 and v.figures["lost"] == 0


def test_accounting_fails_on_a_job_left_doing_or_todo() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1)  # still doing at the deadline
    b.submit(2)  # never ran
    b.submit(3)
    b.run(3, 0.1, 0.2)
    v = check_queue_accounting(b.build())
    assert v.status == FAIL
    assert v.figures["lost_ids"] == [1, 2]
    assert any("job 1" in e and "doing" in e for e in v.evidence)


def test_a_job_left_when_no_worker_was_left_fails_and_says_so() -> None:
    # settle stops waiting once every worker exited on its own (Watch.no_worker_left): the
    # job is still lost, and the evidence names the exits instead of a deadline
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1)
    b.observe("no_worker_left", {"w1": 1, "w2": 1}, 3.0)
    v = check_queue_accounting(b.build())
    assert v.status == FAIL and v.figures["lost_ids"] == [1]
    assert v.evidence[0] == (
        "job 1 acknowledged but doing at the end, when no worker was left to run it "
        "(w1 exit code 1, w2 exit code 1)"
    )


def test_accounting_fails_on_an_acknowledged_job_missing_from_the_table() -> None:
    b = HistoryBuilder()
    b.submit(1)
    h = b.build()
    h.records = [r for r in h.records if getattr(r, "id", None) != 1 or r.kind != "job"]
    v = check_queue_accounting(h)
    assert v.status == FAIL and v.figures["lost_ids"] == [1]
    assert "missing" in v.evidence[0]


def test_unknown_submission_whose_job_stays_todo_is_lost_not_recovered() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2)
    b.submit(2, outcome="unknown")  # the job exists but never ran
    v = check_queue_accounting(b.build())
    assert v.status == FAIL
    assert v.figures["recovered"] == 0 and v.figures["lost_ids"] == [2]
    assert "job 2 created by an unknown submission but todo" in v.summary
    b.run(2, 0.3)  # started, still doing at the deadline: lost as well
    assert check_queue_accounting(b.build()).figures["lost_ids"] == [2]


def test_unknown_submission_that_ran_is_recovered_extra_job_is_unexpected() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2)
    b.submit(2, outcome="unknown")  # request timed out but the job was created
    b.run(2, 0.1, 0.2)
    ok = accounting(b.build(), task_name="fetch_and_cache_joke")
    assert ok["recovered"] == 1 and ok["unexpected"] == 0

    b2 = HistoryBuilder()
    b2.submit(1)
    b2.run(1, 0.1, 0.2)
    b2.job(7)  # nobody asked for job 7
    b2.run(7, 0.1, 0.2)
    b2.job(8, task="system.tasks.health_check_task")  # other tasks are not ours
    v = check_queue_accounting(b2.build())
    assert v.status == FAIL and v.figures["unexpected_ids"] == [7]


def test_expected_status_fails_other_terminal_states() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2, "failed")
    assert check_queue_accounting(b.build(), expected_status="failed").status == PASS
    b2 = HistoryBuilder()
    b2.submit(1)
    b2.run(1, 0.1, 0.2, "failed")
    v = check_queue_accounting(b2.build(), expected_status="succeeded")
    assert v.status == FAIL and "expected succeeded" in v.evidence[0]


def test_duplicated_executions_count_reruns_not_caused_by_a_scheduled_retry() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2, "retry", retry_in=1.0)  # a failure retry: not a duplicate
    b.run(1, 1.2, 1.3, "succeeded")
    b.submit(2)
    b.run(2, 0.1, 3.0, "retry")  # stalled and recovered: the rerun is a duplicate
    b.run(2, 3.1, 3.2, "succeeded")
    acc = accounting(b.build(), task_name="fetch_and_cache_joke")
    assert acc["duplicated_executions"] == 1
    assert acc["duplicated_ids"] == [2]
    assert acc["executions"] == {"1": 2, "2": 2}


def test_nothing_acknowledged_fails() -> None:
    b = HistoryBuilder()
    b.submit(None, outcome="unknown")
    assert check_queue_accounting(b.build()).status == FAIL


def test_merge() -> None:
    assert merge([]) == UNKNOWN  # nothing shown is not a pass
    assert merge([PASS, PASS]) == PASS
    assert merge([PASS, UNKNOWN]) == UNKNOWN
    assert merge([Verdict("a", PASS, ""), Verdict("b", FAIL, ""), UNKNOWN]) == FAIL


def test_immediate_and_recovery_requeues_are_not_backoff_retries() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.5, "retry", retry_in=0.0)  # aborted by a shutdown, re-queued at once
    b.fault("sigterm", "worker:w1", 0.2, 0.6, exit_code=0)
    b.run(1, 0.6, 3.0, "retry", recovered=True)  # stalled, recovered with retry_at=now()
    b.run(1, 3.1, 3.2, "retry", retry_in=0.8)  # a backoff retry
    b.run(1, 4.0, 4.1, "retry", retry_in=-0.1)  # a backoff retry committed late (load)
    b.run(1, 4.2, 4.3)
    h = b.build()
    runs = runs_by_job(h)[1]
    assert [r.scheduled_retry for r in runs[:4]] == [False, False, True, True]
    assert runs[0].aborted and runs[1].recovered and not runs[0].recovered
    acc = accounting(h, task_name="fetch_and_cache_joke")
    assert acc["duplicated_executions"] == 2  # the reruns after the two immediate re-queues


def test_runs_carry_their_worker_from_the_logs() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.5, "retry", recovered=True, worker="w1")
    b.run(1, 0.6, 0.7, worker="w2")
    b.submit(2)
    b.run(2, 0.0, 0.1)  # no log line: unknown
    runs = runs_by_job(b.build())
    assert [r.worker for r in runs[1]] == ["w1", "w2"] and runs[2][0].worker is None
    # two logs claiming the same run: unknown, never a guess
    b.observe("run_worker", {"job_id": 2, "run": 1, "worker": "w1"}, 0.05)
    b.observe("run_worker", {"job_id": 2, "run": 1, "worker": "w2"}, 0.05)
    assert runs_by_job(b.history)[2][0].worker is None


def test_an_abort_requeue_counts_only_in_a_shutdown_of_its_own_worker() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.0, 0.5, "retry", retry_in=0.0, worker="w2")  # w2 was not stopped
    b.run(1, 0.6, 0.7, worker="w2")
    b.fault("sigterm", "worker:w1", 0.2, 0.6, exit_code=0)
    assert not runs_by_job(b.build())[1][0].aborted


def test_expected_status_per_job() -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2, "failed")
    b.submit(2)
    b.run(2, 0.1, 0.2)
    h = b.build()
    assert check_queue_accounting(h, expected_status={1: "failed", 2: "succeeded"}).status == PASS
    v = check_queue_accounting(h, expected_status={1: "succeeded", 2: "succeeded"})
    assert v.status == FAIL and v.evidence == ["job 1 ended failed, expected succeeded"]


FINAL = ["succeeded", "failed", "aborted", "doing", "todo", "missing"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(FINAL), min_size=1, max_size=12))
def test_accounting_property_lost_iff_not_terminal(finals: list[str]) -> None:
    """Any mix of final states: lost = exactly the jobs not terminal (or missing), the counts
    add up, and the verdict fails iff something is lost."""
    b = HistoryBuilder()
    for job_id, final in enumerate(finals, start=1):
        b.submit(job_id)
        if final in ("succeeded", "failed", "aborted"):
            b.run(job_id, 0.1, 0.2, final)
        elif final == "doing":
            b.run(job_id, 0.1)
    h = b.build()
    missing = {i for i, f in enumerate(finals, start=1) if f == "missing"}
    h.records = [r for r in h.records if not (r.kind == "job" and getattr(r, "id", 0) in missing)]
    v = check_queue_accounting(h)
    acc = v.figures
    expected_lost = [i for i, f in enumerate(finals, start=1) if f in ("doing", "todo", "missing")]
    assert acc["lost_ids"] == expected_lost
    assert acc["succeeded"] + acc["failed"] + acc["lost"] == acc["acknowledged"] == len(finals)
    assert (v.status == FAIL) == bool(expected_lost)
