"""Deliberate defects with real processes: each one shows, the clean system does not.

These are the system side of the mutation matrix (system/README.md): they show that a
defect really changes what the system does, under a fault where one is needed. The
harness's scenarios decide whether its invariants catch it.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from harness.fakeapi.client import FakeApiClient
from harness.ports import free_port
from harness.postgres import LocalPostgres
from harness.processes import http_ok
from harness.wait import WaitTimeout, wait_for

if TYPE_CHECKING:
    from conftest import Sut  # the fixture's class (tests/system/conftest.py)

pytestmark = pytest.mark.integration

#: No periodic deferrals: each one notifies the workers and would wake them by chance.
QUIET = {
    "STALLED_JOB_CHECK_INTERVAL": "1h",
    "HEALTH_CHECK_INTERVAL": "1h",
    "SCHEDULED_FETCH_INTERVAL": "off",
}


def pickup(sut: Sut, job_id: int) -> float:
    """Seconds from the job's ``deferred`` event to its first ``started``."""
    events = sut.events(job_id)
    deferred = next(t for kind, t in events if kind == "deferred")
    return next(t for kind, t in events if kind == "started") - deferred


@pytest.mark.parametrize("defects", ["", "no-watchdog"])
def test_no_watchdog_loses_the_listener_after_a_postgres_restart(
    sut: Sut, local_pg: LocalPostgres, jokeapi: FakeApiClient, defects: str
) -> None:
    sut.overrides.update(QUIET, WORKER_POLL_INTERVAL="5s", BULLETPROOF_DEFECTS=defects)
    sut.migrate()
    worker = sut.worker("w1")
    warm = sut.defer()
    sut.wait_status(warm, {"succeeded"}, timeout=15)
    local_pg.restart()
    probe = sut.defer()
    sut.wait_status(probe, {"succeeded"}, timeout=30)
    if not defects:
        wait_for(
            lambda: "database back: worker resumed name=w1" in worker.output(),
            timeout=15,
            what="the watchdog to restart the session",
        )
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"succeeded"}, timeout=15)
    seconds = pickup(sut, job_id)
    print(f"\n[{defects or 'clean'}] pickup after a PostgreSQL restart: {seconds:.3f}s (poll 5s)")
    if defects:
        assert seconds > 1.0, "the listener survived: the defect did not show"
        assert "database back" not in worker.output()
    else:
        assert seconds < 0.5
    assert worker.is_running()


def test_supervisor_gives_up_exits_after_one_failed_reconnect(
    sut: Sut, local_pg: LocalPostgres
) -> None:
    sut.migrate()
    worker = sut.worker("w1", BULLETPROOF_DEFECTS="supervisor-gives-up")
    local_pg.stop()
    assert worker.wait_exit(timeout=30) == 1
    assert "DEFECT supervisor-gives-up: exiting" in worker.output()
    assert worker.output().count("database unavailable") == 1  # exactly one retry


def test_timeout_not_retried_fails_the_job_on_its_first_timeout(
    sut: Sut, jokeapi: FakeApiClient
) -> None:
    sut.migrate()
    jokeapi.slow(4.0, count=1)
    sut.worker("w1", BULLETPROOF_DEFECTS="timeout-not-retried")
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"failed"}, timeout=15)
    assert sut.job(job_id)["attempts"] == 1


@pytest.mark.parametrize(
    ("defects", "status"), [("", "todo"), ("cancelled-not-requeued", "aborted")]
)
def test_shutdown_abort_requeues_unless_the_defect_says_no(
    sut: Sut, jokeapi: FakeApiClient, defects: str, status: str
) -> None:
    sut.overrides.update(JOB_TIMEOUT="30s", WORKER_TIMEOUT="1s", BULLETPROOF_DEFECTS=defects)
    sut.migrate()
    worker = sut.worker("w1")
    jokeapi.slow(20.0, count=1)
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"doing"}, timeout=10)
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=15) == 0
    assert sut.job(job_id)["status"] == status


def test_no_shutdown_abort_lets_the_job_run_past_worker_timeout(
    sut: Sut, jokeapi: FakeApiClient
) -> None:
    sut.overrides.update(JOB_TIMEOUT="10s", WORKER_TIMEOUT="1s")
    sut.migrate()
    worker = sut.worker("w1", BULLETPROOF_DEFECTS="no-shutdown-abort")
    jokeapi.slow(6.0, count=1)
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"doing"}, timeout=10)
    sent = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=20) == 0
    assert time.monotonic() - sent > 2.5  # well past WORKER_TIMEOUT (1 s)
    assert sut.job(job_id)["status"] == "succeeded"  # it ran to its end instead


def test_stall_threshold_ignored_requeues_a_live_workers_job(
    sut: Sut, jokeapi: FakeApiClient
) -> None:
    sut.overrides.update(JOB_TIMEOUT="30s", BULLETPROOF_DEFECTS="stall-threshold-ignored")
    sut.migrate()
    first = sut.worker("w1")
    jokeapi.slow(20.0, count=1)  # still running when it is re-queued, even on a slow machine
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"doing"}, timeout=10)
    sut.worker("w2")
    wait_for(
        lambda: sut.query(
            "SELECT 1 FROM bulletproof_stalled_recoveries WHERE job_id = %s", (job_id,)
        ),
        timeout=10,
        what="the live job to be 're-covered'",
    )
    assert first.is_running()  # its worker never stalled
    sut.wait_status([job_id], {"succeeded"}, timeout=20)
    assert sut.job(job_id)["attempts"] >= 1
    assert len([k for k, _ in sut.events(job_id) if k == "started"]) >= 2


def test_slow_stall_recovery_waits_twice_the_threshold(sut: Sut, jokeapi: FakeApiClient) -> None:
    sut.overrides.update(JOB_TIMEOUT="20s", BULLETPROOF_DEFECTS="slow-stall-recovery")
    sut.migrate()
    jokeapi.slow(15.0, count=1)
    first = sut.worker("w1")
    [job_id] = sut.defer()
    sut.wait_status([job_id], {"doing"}, timeout=10)
    first.kill()
    [killed] = sut.query("SELECT EXTRACT(EPOCH FROM now())::float8 AS t")
    sut.worker("w2")
    [recovered] = wait_for(
        lambda: sut.query(
            "SELECT EXTRACT(EPOCH FROM recovered_at)::float8 AS t "
            "FROM bulletproof_stalled_recoveries WHERE job_id = %s",
            (job_id,),
        ),
        timeout=20,
        what="the stalled job to be recovered",
    ).value
    threshold = sut.setting("stalled_job_threshold")
    heartbeat = sut.setting("worker_heartbeat_interval")
    latency = recovered["t"] - killed["t"]
    print(
        f"\nslow-stall-recovery: recovered {latency:.2f}s after the kill (threshold {threshold}s)"
    )
    assert latency >= 2 * threshold - heartbeat - 0.05


@pytest.mark.parametrize(
    ("defects", "health"),
    [("", 503), ("health-ignores-heartbeat,ack-without-queue", 200), ("health-always-ok", 200)],
)
def test_api_defects_answer_as_if_all_was_well(sut: Sut, defects: str, health: int) -> None:
    """An API without worker: /health must say 503; every 2nd 202 must still be a job."""
    sut.migrate()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = sut.process(
        "api",
        ["api", "--port", str(port), "--no-worker"],
        http_ok(f"{base}/health", statuses=(200, 503)),
        BULLETPROOF_DEFECTS=defects,
    )
    api.start(timeout=60)
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/health").status_code == health
        answers = [client.post("/tasks/fetch-joke") for _ in range(4)]
    assert [a.status_code for a in answers] == [202] * 4
    ids = [a.json()["job_id"] for a in answers]
    assert len(set(ids)) == 4
    stored = {r["id"] for r in sut.query("SELECT id FROM procrastinate_jobs")}
    lost = [i for i in ids if i not in stored]
    assert lost == (ids[1::2] if "ack-without-queue" in defects else [])
    api.terminate()
    assert api.wait_exit(timeout=15) == 0


REJECT_HEARTBEATS = """
CREATE FUNCTION test_reject_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'heartbeat rejected (test)'; END $$;
CREATE TRIGGER test_reject_heartbeat BEFORE UPDATE ON procrastinate_workers
    FOR EACH ROW EXECUTE FUNCTION test_reject_heartbeat();
"""
ACCEPT_HEARTBEATS = """
DROP TRIGGER test_reject_heartbeat ON procrastinate_workers;
DROP FUNCTION test_reject_heartbeat();
"""
HEARTBEAT_AGE = (
    "SELECT EXTRACT(EPOCH FROM now() - max(last_heartbeat))::float8 AS age "
    "FROM procrastinate_workers"
)


@pytest.mark.parametrize("defects", ["", "no-watchdog"])
def test_rejected_heartbeat_writes_leave_a_no_watchdog_worker_stale_for_good(
    sut: Sut, jokeapi: FakeApiClient, defects: str
) -> None:
    """Procrastinate's heartbeat task dies on its first failed write; the watchdog restarts."""
    sut.migrate()
    worker = sut.worker("w1", BULLETPROOF_DEFECTS=defects)
    sut.query(REJECT_HEARTBEATS)
    try:
        wait_for(
            lambda: (sut.query(HEARTBEAT_AGE)[0]["age"] or 99.0) > 1.0,  # None: no worker row
            timeout=10,
            what="the heartbeat to go stale while writes are rejected",
        )
    finally:
        sut.query(ACCEPT_HEARTBEATS)

    def fresh() -> bool:
        age = sut.query(HEARTBEAT_AGE)[0]["age"]
        return age is not None and age < 0.5

    if defects:
        with pytest.raises(WaitTimeout):
            wait_for(fresh, timeout=3, what="a fresh heartbeat")
        assert "session lost" not in worker.output()
    else:
        wait_for(fresh, timeout=5, what="a fresh heartbeat")
        assert "worker session lost (heartbeat write failed" in worker.output()
    job_ids = sut.defer(2)  # jobs run either way: only the heartbeat is dead
    sut.wait_status(job_ids, {"succeeded"}, timeout=15)
