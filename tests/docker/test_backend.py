"""The docker backend against a real engine: containers really stop, restart and vanish.

Skipped (with the reason) when no Docker engine is reachable; with an engine, missing images
fail with the command that builds them. ``.ci/docker-smoke`` sets both up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from harness import cleanup
from harness.backends.base import BackendUnavailable
from harness.docker.engine import unreachable_reason
from harness.wait import wait_for

_REASON = unreachable_reason()
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(_REASON is not None, reason=f"no Docker engine: {_REASON}"),
]

if _REASON is None:
    import docker

    from harness.backends.docker import (
        LABEL_BACKEND,
        LABEL_HOST,
        LABEL_OWNER,
        LABEL_RUN,
        ContainerService,
        DockerBackend,
        owner_identity,
        reap_leftovers,
    )
    from harness.docker.build import build_embedded_toxiproxy
    from harness.docker.images import EMBEDDED_TOXIPROXY_IMAGE


def _open(backend: DockerBackend) -> DockerBackend:
    try:
        backend.open()
    except BackendUnavailable as exc:
        backend.close()
        pytest.fail(str(exc), pytrace=False)
    return backend


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture(scope="module")
def dockerb() -> Iterator[DockerBackend]:
    """A docker backend as configured (the real Toxiproxy image is absent here: host fallback)."""
    backend = _open(DockerBackend(cleanup.make_temp_dir("docker-test-")))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def tp_backend() -> Iterator[DockerBackend]:
    """A docker backend whose Toxiproxy runs in a container (the embedded one, locally built)."""
    backend = DockerBackend(cleanup.make_temp_dir("docker-test-tp-"))
    build_embedded_toxiproxy(backend.images.python)
    backend.images = dataclasses.replace(backend.images, toxiproxy=EMBEDDED_TOXIPROXY_IMAGE)
    yield _open(backend)
    backend.close()


def _ours(client: docker.DockerClient, label: str, value: str) -> list[str]:
    found = client.containers.list(all=True, filters={"label": f"{label}={value}"})
    nets = client.networks.list(filters={"label": f"{label}={value}"})
    return [c.name for c in found] + [n.name for n in nets]


def test_postgres_kill_and_restart_keep_committed_data_and_address(dockerb: DockerBackend) -> None:
    pg = dockerb.postgres
    assert isinstance(pg, ContainerService) and pg.container is not None
    assert pg.container.labels[LABEL_RUN] == cleanup.current_run().id
    assert pg.container.labels[LABEL_OWNER] == owner_identity()
    pg.create_database("keep")
    with psycopg.connect(pg.dsn("keep"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v int)")
        conn.execute("INSERT INTO t VALUES (42)")
    before = pg.endpoint

    pg.kill()
    assert not pg.is_running()
    assert pg.exit_code == 137  # SIGKILL
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.dsn("keep"), connect_timeout=2).close()

    elapsed = pg.start(timeout=60)
    assert pg.endpoint == before  # same published port after the restart
    assert elapsed < 60
    with psycopg.connect(pg.dsn("keep")) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [(42,)]
    pg.drop_database("keep")


def test_postgres_graceful_stop_is_a_fast_shutdown(dockerb: DockerBackend) -> None:
    pg = dockerb.postgres
    assert pg.stop(timeout=20) == 0  # SIGINT: fast shutdown, exit 0
    assert not pg.is_running()
    pg.start(timeout=60)
    assert pg.server_version().startswith("15.")


def test_fakeapi_container_kill_and_restart(dockerb: DockerBackend, tmp_path: Path) -> None:
    log = tmp_path / "fakeapi.log"
    fake = dockerb.start_fakeapi(seed=7, log_path=log)
    assert isinstance(fake, ContainerService)
    assert fake.endpoint is not None
    url = f"http://{fake.endpoint.outside}/jokes/random"
    assert fake.endpoint.outside.host == "127.0.0.1"
    first = httpx.get(url, timeout=5)
    assert first.status_code == 200 and first.json()["id"]

    fake.kill()
    assert not fake.is_running()
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, timeout=2)

    fake.start()
    assert httpx.get(url, timeout=5).status_code == 200
    text = log.read_text()
    assert text.count("--- harness: start #") == 2
    assert text.count("fakeapi: listening on http://0.0.0.0:8080") == 2
    fake.close()
    assert fake.container is None
    fake.close()  # idempotent


def test_host_toxiproxy_fronts_published_ports_when_the_image_is_absent(
    dockerb: DockerBackend, tmp_path: Path
) -> None:
    if dockerb.toxiproxy_in_container:
        pytest.skip(f"{dockerb.images.toxiproxy} is present: Toxiproxy runs in a container")
    tp = dockerb.start_toxiproxy(seed=1, log_path=tmp_path / "toxiproxy.log")
    assert tp.flavour != "container"
    fake = dockerb.start_fakeapi(seed=1, log_path=tmp_path / "f.log")
    assert fake.endpoint is not None and fake.endpoint.inside == fake.endpoint.outside
    proxy, listen = tp.create_proxy("jokeapi", fake.endpoint)
    url = f"http://{listen.outside}/jokes/categories"
    assert httpx.get(url, timeout=5).status_code == 200
    proxy.disable()
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, timeout=2)
    proxy.enable()
    assert httpx.get(url, timeout=5).status_code == 200
    tp.close()
    fake.close()


def test_toxiproxy_in_a_container_reaches_upstreams_by_alias(
    tp_backend: DockerBackend, tmp_path: Path
) -> None:
    assert tp_backend.toxiproxy_in_container
    tp = tp_backend.start_toxiproxy(seed=1, log_path=tmp_path / "toxiproxy.log")
    assert tp.flavour == "container"
    fake = tp_backend.start_fakeapi(seed=3, log_path=tmp_path / "f.log")
    assert fake.endpoint is not None
    assert fake.endpoint.inside.host.startswith("bp-")  # the container's network alias
    proxy, listen = tp.create_proxy("jokeapi", fake.endpoint)
    assert proxy.upstream == f"{fake.endpoint.inside.host}:8080"
    url = f"http://{listen.outside}/jokes/categories"
    assert httpx.get(url, timeout=5).status_code == 200
    proxy.disable()
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, timeout=2)
    proxy.enable()
    assert httpx.get(url, timeout=5).status_code == 200

    pg = tp_backend.postgres
    assert pg.endpoint is not None and str(pg.endpoint.inside) == "postgres:5432"
    pg_proxy, pg_listen = tp.create_proxy("postgres", pg.endpoint)
    host, port = pg_listen.outside.host, pg_listen.outside.port
    dsn = pg.dsn("postgres").replace(str(pg.endpoint.outside), f"{host}:{port}")
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    pg_proxy.disable()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2).close()
    pg_proxy.enable()
    tp.close()
    fake.close()


def test_a_stack_with_toxiproxy_in_a_container_runs_jobs(tp_backend: DockerBackend) -> None:
    from harness.profiles import FAST
    from harness.stack import Stack

    with Stack(tp_backend, profile=FAST, seed=11, name="tp-stack", workers=1) as stack:
        assert stack.toxiproxy is not None and stack.toxiproxy.flavour == "container"
        upstreams = {name: proxy.upstream for name, proxy in stack.proxies.items()}
        assert upstreams["postgres"] == "postgres:5432"  # by alias, inside the network
        answer = httpx.post(f"{stack.api_url}/tasks/fetch-joke", timeout=10)
        assert answer.status_code < 300, answer.text
        job_id = answer.json()["job_id"]

        def status() -> str | None:
            with psycopg.connect(stack.db_dsn, connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
                ).fetchone()
            return row[0] if row and row[0] == "succeeded" else None

        wait_for(status, timeout=30, what=f"job {job_id} to succeed", ignore=(psycopg.Error,))
        fetched = [r for r in stack.fakeapi.requests() if r["path"].startswith("/jokes/random")]
        assert fetched, "the job did not reach the fake API through the containerised Toxiproxy"


def test_close_removes_every_container_and_the_network(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    backend = _open(DockerBackend(tmp_path / "work"))
    backend.start_fakeapi(seed=1, log_path=tmp_path / "f.log")
    assert len(_ours(client, LABEL_BACKEND, backend.id)) == 3  # postgres, fakeapi, network
    backend.close()
    assert _ours(client, LABEL_BACKEND, backend.id) == []
    backend.close()  # idempotent


def test_leftovers_of_a_dead_owner_are_reaped_and_live_ones_kept(
    client: docker.DockerClient,
) -> None:
    image = DockerBackend(Path("/nonexistent")).images.python
    dead_owner = "4194303 1"  # no such pid
    labels = {LABEL_RUN: "test-reap"}
    dead = client.containers.run(
        image, ["sleep", "300"], detach=True, labels={**labels, LABEL_OWNER: dead_owner}
    )
    live = client.containers.run(
        image, ["sleep", "300"], detach=True, labels={**labels, LABEL_OWNER: owner_identity()}
    )
    elsewhere = client.containers.run(  # a dead-looking owner on another machine
        image,
        ["sleep", "300"],
        detach=True,
        labels={**labels, LABEL_OWNER: dead_owner, LABEL_HOST: "some-other-machine"},
    )
    try:
        assert reap_leftovers(client) >= 1
        remaining = {c.id for c in client.containers.list(all=True)}
        assert dead.id not in remaining
        assert live.id in remaining
        assert elsewhere.id in remaining
    finally:
        for c in (dead, live, elsewhere):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)


def test_a_sigkilled_runner_leaves_containers_the_next_start_removes(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    marker = tmp_path / "opened"
    script = textwrap.dedent(
        f"""
        import json, pathlib, signal
        from harness import cleanup
        from harness.backends.docker import DockerBackend, remove_run
        backend = DockerBackend(pathlib.Path({str(tmp_path / "work")!r}))
        registered_before = remove_run in cleanup._reapers
        backend.open()
        written = pathlib.Path({str(tmp_path / "opened.tmp")!r})
        written.write_text(json.dumps({{
            "id": backend.id,
            "registered_before_open": registered_before,
            "registered_after_open": remove_run in cleanup._reapers,
        }}))
        written.rename({str(marker)!r})  # whole, or not there yet
        signal.pause()  # hold the containers until SIGKILLed
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, cleanup.ROOT_ENV: str(tmp_path / "runs")},
    )
    following: DockerBackend | None = None
    try:
        wait_for(marker.exists, timeout=90, what="the child to open its backend", interval=0.1)
        opened = json.loads(marker.read_text())
        # The reaper is registered by open(), not by importing the module.
        assert opened["registered_before_open"] is False
        assert opened["registered_after_open"] is True
        backend_id = opened["id"]
        assert _ours(client, LABEL_BACKEND, backend_id)  # postgres + network exist
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert _ours(client, LABEL_BACKEND, backend_id)  # nothing cleaned them up yet
        following = _open(DockerBackend(tmp_path / "next"))  # the next start
        assert _ours(client, LABEL_BACKEND, backend_id) == []
    finally:
        if following is not None:
            following.close()
        if child.poll() is None:
            child.kill()
            child.wait()


def test_ctrl_c_in_a_runner_removes_its_containers_on_the_way_out(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    marker = tmp_path / "opened"
    script = textwrap.dedent(
        f"""
        import pathlib, signal
        from harness.backends.docker import DockerBackend
        # Ctrl-C as from a terminal: background shells start commands with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with DockerBackend(pathlib.Path({str(tmp_path / "work")!r})) as backend:
            backend.start_fakeapi(seed=1, log_path=pathlib.Path({str(tmp_path / "f.log")!r}))
            pathlib.Path({str(marker)!r}).write_text(backend.id)
            signal.pause()  # until Ctrl-C
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, cleanup.ROOT_ENV: str(tmp_path / "runs")},
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(marker.exists, timeout=90, what="the child to start its containers", interval=0.1)
        backend_id = marker.read_text()
        assert len(_ours(client, LABEL_BACKEND, backend_id)) == 3  # postgres, fakeapi, network
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
        assert b"KeyboardInterrupt" in stderr
        # No reaping here: the interrupted process removed its own containers and network.
        assert _ours(client, LABEL_BACKEND, backend_id) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
