"""C3: every connection names its process in ``application_name`` (pg_stat_activity).

The harness terminates exactly one worker's backends by that name; these tests check the
names, that the LISTEN backend can be told apart, and that the worker survives it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import httpx
import pytest

from harness.fakeapi.client import FakeApiClient
from harness.ports import free_port
from harness.processes import http_ok
from harness.wait import wait_for
from system.db import API_APPLICATION_NAME, worker_application_name

if TYPE_CHECKING:
    from conftest import Sut  # the fixture's class (tests/system/conftest.py)

pytestmark = pytest.mark.integration

#: Backends of this test's database except the test's own connection.
OTHERS = (
    "SELECT pid, application_name AS name, query FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
#: The LISTEN backend's last statement: its LISTENs, or the keep-alive after 30 s of silence.
LISTENER = "(query LIKE 'LISTEN %%' OR query = 'SELECT 1')"


def test_worker_names_all_its_connections_and_survives_their_termination(
    sut: Sut, jokeapi: FakeApiClient
) -> None:
    sut.migrate()
    sut.worker("w1")
    name = worker_application_name("w1")
    assert name == "bulletproof-worker-w1"

    backends = sut.query(OTHERS)
    assert {b["name"] for b in backends} == {name}, backends
    assert len(backends) >= 3  # the pool's minimum (2) and the LISTEN connection
    listeners = [b for b in backends if b["query"].startswith("LISTEN ")]
    assert len(listeners) == 1, backends

    # break only the LISTEN connection: Procrastinate reconnects it under the same name
    [killed] = sut.query(
        f"SELECT pid, pg_terminate_backend(pid) AS ok FROM pg_stat_activity "
        f"WHERE application_name = %s AND {LISTENER}",
        (name,),
    )
    assert killed["ok"]
    wait_for(
        lambda: sut.query(
            f"SELECT pid FROM pg_stat_activity WHERE application_name = %s AND {LISTENER} "
            "AND pid <> %s",
            (name, killed["pid"]),
        ),
        timeout=10,
        what="a new LISTEN connection",
    )
    # then every backend of the worker at once: it still takes jobs afterwards
    terminated = sut.query(
        "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = %s",
        (name,),
    )
    assert terminated and all(t["ok"] for t in terminated)
    job_ids = sut.defer(3)
    sut.wait_status(job_ids, {"succeeded"}, timeout=20)
    assert {b["name"] for b in sut.query(OTHERS)} == {name}


def test_api_and_its_in_process_worker_have_distinct_names(sut: Sut) -> None:
    sut.migrate()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = sut.process(
        "api",
        ["api", "--port", str(port), "--name", "inproc"],
        http_ok(f"{base}/health", statuses=(200, 503)),
    )
    api.start(timeout=60)
    stop = threading.Event()

    def hammer() -> None:  # the API opens a connection per request (a null pool)
        with httpx.Client(base_url=base, timeout=10) as client:
            while not stop.is_set():
                client.get("/stats")

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    seen: set[str] = set()
    try:

        def both_seen() -> bool:
            seen.update(b["name"] for b in sut.query(OTHERS))
            return {API_APPLICATION_NAME, worker_application_name("inproc")} <= seen

        wait_for(both_seen, timeout=20, what="the API's and its worker's connections")
    finally:
        stop.set()
        thread.join(timeout=15)
    assert seen == {"bulletproof-api", "bulletproof-worker-inproc"}
    api.terminate()
    assert api.wait_exit(timeout=15) == 0
