"""The local stack: each control really happens to real processes, sockets and PostgreSQL."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from harness.backends.base import Address
from harness.processes import ManagedProcess
from harness.stack import Stack
from harness.wait import wait_for

pytestmark = pytest.mark.integration


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _refused(address: Address) -> bool:
    try:
        with socket.create_connection((address.host, address.port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def _job_done(stack: Stack, job_id: int) -> Any:
    with psycopg.connect(stack.db_dsn) as conn:
        row = conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,))
        status = row.fetchone()
    return status is not None and status[0] == "succeeded"


def _submit(stack: Stack) -> int:
    response = httpx.post(f"{stack.api_url}/tasks/fetch-joke", timeout=10)
    assert response.status_code == 202, response.text
    job_id: int = response.json()["job_id"]
    return job_id


def _proc(stack: Stack, name: str) -> ManagedProcess:
    service = stack.services[name]
    assert isinstance(service, ManagedProcess)
    return service


def test_stack_is_wired_through_both_proxies(stack: Stack) -> None:
    assert httpx.get(f"{stack.api_url}/health", timeout=5).status_code == 200
    pg_listen = stack.proxy_endpoints["postgres"].inside
    api_listen = stack.proxy_endpoints["jokeapi"].inside
    assert f"127.0.0.1:{pg_listen.port}/" in stack.env["PROCRASTINATE_DATABASE_URL"]
    assert stack.env["API_BASE_URL"] == f"http://{api_listen}"
    pg = stack.postgres.endpoint
    assert pg is not None
    assert pg.outside.port != pg_listen.port  # the SUT never goes direct
    assert stack.proxies["postgres"].upstream == str(pg.outside)
    job_id = _submit(stack)
    wait_for(lambda: _job_done(stack, job_id), timeout=20, what=f"job {job_id} to succeed")
    record = stack.fakeapi.requests()  # (production also runs a scheduled fetch at start)
    assert record and all(r["outcome"] == "ok" for r in record)
    with psycopg.connect(stack.db_dsn) as conn:
        rows = conn.execute("SELECT joke_id FROM chuck_norris_jokes").fetchall()
    assert rows and {r[0] for r in rows} <= {r["joke_id"] for r in record}
    assert stack.toxiproxy is not None
    assert stack.describe()["toxiproxy"] == stack.toxiproxy.flavour


@pytest.mark.stack(workers=2)
def test_kill_terminate_restart_and_add_worker(stack: Stack) -> None:
    w1, w2 = _proc(stack, "w1"), _proc(stack, "w2")
    first_pid = w1.pid
    assert _alive(first_pid) and _alive(w2.pid)

    w1.kill()
    assert not _alive(first_pid) and w1.exit_code == -9
    assert w2.is_running()  # the other worker is untouched

    elapsed = w1.start(timeout=30)
    assert w1.pid != first_pid and _alive(w1.pid) and elapsed < 30
    assert "bulletproof: worker ready name=w1" in w1.output()

    w2.terminate()
    assert w2.wait_exit(timeout=stack.profile.worker_timeout + 15) == 0  # graceful

    w3 = stack.add_worker()
    assert w3.name == "w3" and w3.is_running() and len(stack.workers) == 3
    assert stack.worker("w3") is w3
    with pytest.raises(ValueError, match="already exists"):
        stack.add_worker("w1")


def test_api_kill_refuses_connections_and_restart_keeps_the_address(stack: Stack) -> None:
    api = _proc(stack, "api")
    assert api.endpoint is not None
    address = api.endpoint.outside
    url = stack.api_url
    api.kill()
    assert not _alive(api.pid)
    assert _refused(address)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)
    api.start(timeout=30)
    assert stack.api_url == url
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200


def test_fakeapi_kill_and_restart(stack: Stack) -> None:
    fake = _proc(stack, "fakeapi")
    assert fake.endpoint is not None
    address = fake.endpoint.outside
    fake.kill()
    assert _refused(address)
    fake.restart(timeout=30)
    assert httpx.get(f"http://{address}/jokes/categories", timeout=5).status_code == 200


@pytest.mark.stack(workers=0, api=False)
def test_jokeapi_proxy_cut_and_faults_are_seen_by_a_client(stack: Stack) -> None:
    listen = stack.proxy_endpoints["jokeapi"].outside
    through = f"http://{listen}"
    assert httpx.get(f"{through}/jokes/random", timeout=5).status_code == 200

    stack.fakeapi.status(503, count=1)  # an application fault, through the proxy
    assert httpx.get(f"{through}/jokes/random", timeout=5).status_code == 503

    stack.proxies["jokeapi"].disable()  # the link is cut
    assert _refused(listen)
    stack.proxies["jokeapi"].enable()
    assert httpx.get(f"{through}/jokes/random", timeout=5).status_code == 200

    stack.proxies["jokeapi"].add_toxic(type="latency", attributes={"latency": 300})
    started = time.monotonic()
    httpx.get(f"{through}/jokes/random", timeout=5)
    assert time.monotonic() - started >= 0.3
    stack.proxies["jokeapi"].destroy_toxic("latency_downstream")


@pytest.mark.stack(workers=0, api=False)
def test_postgres_proxy_cut_is_seen_while_the_direct_dsn_works(stack: Stack) -> None:
    proxied = stack.env["PROCRASTINATE_DATABASE_URL"]
    with psycopg.connect(proxied, connect_timeout=2) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    stack.proxies["postgres"].disable()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(proxied, connect_timeout=2)
    with psycopg.connect(stack.db_dsn) as conn:  # the harness's own reads go direct
        assert conn.execute("SELECT 1").fetchone() == (1,)
    stack.proxies["postgres"].enable()
    with psycopg.connect(proxied, connect_timeout=2) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.stack(workers=0, api=False)
def test_postgres_kill_and_restart_keep_committed_rows(stack: Stack) -> None:
    with psycopg.connect(stack.db_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE survivors (n int)")
        conn.execute("INSERT INTO survivors VALUES (1), (2)")
    postmaster = stack.postgres.pid  # type: ignore[attr-defined]
    assert stack.postgres.endpoint is not None
    address = stack.postgres.endpoint.outside
    stack.postgres.kill()
    assert not _alive(postmaster)
    assert _refused(address)
    assert not stack.postgres.is_running()
    elapsed = stack.postgres.start(timeout=30)
    assert elapsed < 30
    with psycopg.connect(stack.db_dsn) as conn:
        rows = conn.execute("SELECT n FROM survivors ORDER BY n").fetchall()
    assert rows == [(1,), (2,)]
    stack.postgres.restart(timeout=30)  # graceful restart too
    assert stack.postgres.is_running() and stack.postgres.pid != postmaster  # type: ignore[attr-defined]


def test_close_leaves_nothing_running(stack_factory: Any) -> None:
    built: Stack = stack_factory(workers=1)
    pids = [p.pid for p in (_proc(built, "w1"), _proc(built, "api"), _proc(built, "fakeapi"))]
    assert built.toxiproxy is not None
    toxiproxy_pid = built.toxiproxy.handle.pid  # type: ignore[attr-defined]
    addresses = [
        built.proxy_endpoints["postgres"].outside,
        built.proxy_endpoints["jokeapi"].outside,
    ]
    db_name = built.db_name
    built.close()
    assert not any(_alive(pid) for pid in [*pids, toxiproxy_pid])
    assert all(_refused(a) for a in addresses)
    with psycopg.connect(built.postgres.dsn("postgres")) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,))
        assert found.fetchone() is None
    built.close()  # idempotent


def test_two_live_stacks_drive_their_own_proxies(stack_factory: Any) -> None:
    first: Stack = stack_factory(workers=0, api=False)
    second: Stack = stack_factory(workers=0, api=False)
    assert first.toxiproxy is not None and second.toxiproxy is not None
    assert first.toxiproxy.api_url != second.toxiproxy.api_url
    first.proxies["jokeapi"].disable()  # second was configured last: must not be the target
    assert _refused(first.proxy_endpoints["jokeapi"].outside)
    assert not _refused(second.proxy_endpoints["jokeapi"].outside)
    second.proxies["jokeapi"].disable()
    first.proxies["jokeapi"].enable()
    assert not _refused(first.proxy_endpoints["jokeapi"].outside)
    assert _refused(second.proxy_endpoints["jokeapi"].outside)
