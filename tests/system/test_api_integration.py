"""`python -m system api` as a user runs it: real HTTP, an in-process worker, a database outage."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from harness.ports import free_port
from harness.postgres import LocalPostgres
from harness.processes import http_ok
from harness.wait import wait_for

if TYPE_CHECKING:
    from conftest import Sut  # the fixture's class (tests/system/conftest.py)

pytestmark = pytest.mark.integration


def test_api_submits_reports_and_answers_503_while_the_database_is_away(
    sut: Sut, postgres: LocalPostgres
) -> None:
    if os.environ.get("PROCRASTINATE_DATABASE_URL"):
        pytest.skip("stops the server: needs the test session's own PostgreSQL")
    sut.migrate()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = sut.process(
        "api",
        ["api", "--port", str(port), "--name", "api-worker"],
        http_ok(f"{base}/health", statuses=(200,)),
    )
    api.start(timeout=60)
    # /health may turn 200 a moment before the line is written (the row exists first)
    wait_for(
        lambda: "bulletproof: worker ready name=api-worker" in api.output(),
        timeout=10,
        what="the in-process worker's ready line",
    )
    client = httpx.Client(base_url=base, timeout=10)
    try:
        accepted = client.post("/tasks/fetch-joke", json={"category": "dev"})
        assert accepted.status_code == 202
        job_id = accepted.json()["job_id"]
        assert client.post("/tasks/fetch-joke").status_code == 202  # no body at all

        def succeeded() -> dict[str, object] | None:
            body: dict[str, object] = client.get(f"/jobs/{job_id}").json()
            return body if body["status"] == "succeeded" else None

        job = wait_for(succeeded, timeout=15, what="the job to succeed").value
        assert (job["task"], job["queue"], job["attempts"]) == (
            "fetch_and_cache_joke",
            "api_calls",
            1,
        )
        assert isinstance(job["events"], list)
        assert [e["type"] for e in job["events"]] == ["deferred", "started", "succeeded"]

        stats = client.get("/stats").json()
        assert stats["jokes_stored"] >= 1
        assert stats["jobs"]["succeeded"] >= 1
        assert {"retries", "stalled_recoveries"} <= set(stats)

        assert client.get("/jobs/999999").status_code == 404
        assert client.get("/jobs/abc").status_code == 422
        bad = client.post("/tasks/fetch-joke", json={"category": "no spaces; allowed"})
        assert bad.status_code == 422
        assert client.post("/tasks/fetch-joke", json={"colour": "red"}).status_code == 422

        healthy = client.get("/health")
        assert healthy.status_code == 200
        assert healthy.json()["database"] == "ok"

        postgres.stop()
        started = time.monotonic()
        down = client.get("/health")
        assert down.status_code == 503
        assert down.json()["database"].startswith("error")
        assert time.monotonic() - started < 6.0  # answers, never hangs
        assert client.post("/tasks/fetch-joke").status_code == 503
        assert client.get(f"/jobs/{job_id}").status_code == 503

        postgres.start()
        back = wait_for(
            lambda: client.get("/health").status_code == 200,
            timeout=20,
            what="/health to answer 200 again",
        )
        assert back.value
        again = client.post("/tasks/fetch-joke")
        assert again.status_code == 202
        new_id = again.json()["job_id"]
        sut.wait_status([new_id], {"succeeded"}, timeout=15)
    finally:
        client.close()
        if not postgres.is_running():
            postgres.start()
    api.terminate()
    assert api.wait_exit(timeout=15) == 0
    assert sut.query("SELECT id FROM procrastinate_jobs WHERE status = 'doing'") == []


def test_api_without_worker_reports_no_worker_as_unhealthy(sut: Sut) -> None:
    sut.migrate()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = sut.process(
        "api",
        ["api", "--port", str(port), "--no-worker"],
        http_ok(f"{base}/health", statuses=(200, 503)),
    )
    api.start(timeout=60)
    response = httpx.get(f"{base}/health", timeout=10)
    assert response.status_code == 503
    assert response.json()["worker"] == "no worker registered"
    assert "worker ready" not in api.output()
    api.terminate()
    assert api.wait_exit(timeout=15) == 0
