"""``python -m bulletproof`` and the two example apps, as real processes on real PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import psycopg
import pytest
from procrastinate import App, PsycopgConnector

from harness.ports import free_port
from harness.postgres import LocalPostgres
from harness.processes import ManagedProcess, log_line
from harness.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
BULLETPROOF_APP = "examples.plain_app_bulletproof.tasks:app"


def run(
    argv: list[str], env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rows(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def defer_fetch(app: App, dsn: str, count: int) -> list[int]:
    with app.replace_connector(PsycopgConnector(conninfo=dsn)), app.open():
        return [app.configure_task("fetch_joke").defer() for _ in range(count)]


def start_bulletproof_example(
    env: Mapping[str, str], tmp_path: Path, procs: list[ManagedProcess]
) -> ManagedProcess:
    """Migrate with the bulletproof example's command, then start its worker ``bp1`` (ready)."""
    from examples.plain_app_bulletproof import target

    assert target.migrate is not None
    done = run(list(target.migrate[1:]), env)
    assert done.returncode == 0, done.stderr
    worker = ManagedProcess(
        "bp",
        [sys.executable, *target.worker[1:], "--name", "bp1"],
        log_path=tmp_path / "bp.log",
        env=dict(env),
        cwd=ROOT,
        ready=log_line(r"bulletproof: worker ready name=bp1\b"),
    )
    procs.append(worker)
    worker.start(timeout=60)
    return worker


@pytest.fixture
def procs() -> Iterator[list[ManagedProcess]]:
    started: list[ManagedProcess] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.close()


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("bad", "--app 'bad' must be 'module:attribute'"),
        ("no_such_pkg.tasks:app", "cannot import 'no_such_pkg.tasks'"),
        ("examples.plain_app.tasks:nothing", "has no attribute 'nothing'"),
        ("json:dumps", "is a function, not a procrastinate.App"),
        ("examples.plain_app.tasks:app", "has no retry_stalled_jobs task"),
    ],
)
def test_worker_with_a_bad_app_says_so_in_one_line(app: str, message: str) -> None:
    done = run(
        ["-m", "bulletproof", "worker", "--app", app],
        {"PROCRASTINATE_DATABASE_URL": "postgresql://127.0.0.1:1/none"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("bulletproof: ") and message in done.stderr, done.stderr


def test_worker_whose_queues_leave_the_recovery_out_is_refused() -> None:
    done = run(
        ["-m", "bulletproof", "worker", "--app", BULLETPROOF_APP, "--queues", "jokes"],
        {"PROCRASTINATE_DATABASE_URL": "postgresql://127.0.0.1:1/none"},
    )
    assert done.returncode == 2
    assert "queue 'default'" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_missing_database_url_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROCRASTINATE_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "bulletproof", "migrate", "--app", BULLETPROOF_APP],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "bulletproof: PROCRASTINATE_DATABASE_URL is not set: set it to a PostgreSQL URL such as "
        "postgresql://user@127.0.0.1:5432/db\n"
    )


@pytest.mark.integration
def test_bulletproof_migrate_is_idempotent(pg_dsn: str) -> None:
    env = {"PROCRASTINATE_DATABASE_URL": pg_dsn}
    first = run(["-m", "bulletproof", "migrate", "--app", BULLETPROOF_APP], env)
    second = run(["-m", "bulletproof", "migrate", "--app", BULLETPROOF_APP], env)
    assert (first.returncode, second.returncode) == (0, 0), (first.stderr, second.stderr)
    assert "applied Procrastinate's schema" in first.stderr
    assert "Procrastinate's schema already present" in second.stderr
    # the example's own migration adds its table to the same, under the same lock
    again = run(["-m", "examples.plain_app_bulletproof.migrate"], env)
    assert again.returncode == 0, again.stderr
    assert rows(
        pg_dsn,
        "SELECT to_regclass('procrastinate_jobs') IS NOT NULL, "
        "to_regclass('bulletproof_stalled_recoveries') IS NOT NULL, "
        "to_regclass('plain_jokes') IS NOT NULL, to_regclass('chuck_norris_jokes') IS NULL",
    ) == [(True, True, True, True)]


@pytest.mark.integration
def test_plain_example_stores_jokes_under_procrastinates_own_worker(
    pg_dsn: str, fakeapi_url: str, tmp_path: Path, procs: list[ManagedProcess]
) -> None:
    from examples.plain_app import target
    from examples.plain_app.tasks import app

    env = {target.database_env: pg_dsn, "JOKE_API_URL": fakeapi_url}
    assert target.migrate is not None
    for _ in range(2):  # the example's migration runs twice without harm
        done = run(list(target.migrate[1:]), env)
        assert done.returncode == 0, done.stderr
    worker = ManagedProcess(
        "plain",
        [sys.executable, *target.worker[1:]],
        log_path=tmp_path / "plain.log",
        env=env,
        cwd=ROOT,
        ready=log_line(r"Starting worker on all queues"),
    )
    procs.append(worker)
    worker.start(timeout=60)
    job_ids = defer_fetch(app, pg_dsn, 3)
    assert target.effect_sql is not None
    stored = wait_for(
        lambda: (found := rows(pg_dsn, target.effect_sql or "")) and len(found) == 3 and found,
        timeout=20,
        what="three plain_jokes rows",
    ).value
    assert sorted(job_id for job_id, _ in stored) == sorted(job_ids)
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=20) == 0, worker.tail(10)


@pytest.mark.integration
def test_bulletproof_example_stores_jokes_and_stops_gracefully(
    pg_dsn: str, fakeapi_url: str, tmp_path: Path, procs: list[ManagedProcess]
) -> None:
    from examples.plain_app_bulletproof import target
    from examples.plain_app_bulletproof.tasks import app

    env = {**target.env, target.database_env: pg_dsn, "JOKE_API_URL": fakeapi_url}
    worker = start_bulletproof_example(env, tmp_path, procs)
    job_ids = defer_fetch(app, pg_dsn, 3)
    stored = wait_for(
        lambda: (found := rows(pg_dsn, target.effect_sql or "")) and len(found) == 3 and found,
        timeout=20,
        what="three plain_jokes rows",
    ).value
    assert sorted(job_id for job_id, _ in stored) == sorted(job_ids)
    # its schedule defers the stalled-job recovery, which runs on queue "default"
    wait_for(
        lambda: rows(
            pg_dsn,
            "SELECT 1 FROM procrastinate_jobs WHERE task_name = 'retry_stalled_jobs' "
            "AND queue_name = 'default' AND status = 'succeeded'",
        ),
        timeout=20,
        what="a stalled-job recovery run",
    )
    assert "taking jobs on queues jokes, default" in worker.output()
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=20) == 0, worker.tail(10)
    assert "worker bp1 stopped" in worker.output()


def test_bulletproof_worker_health_says_503_without_its_database_and_200_once_back(
    postgres: LocalPostgres,
    pg_dsn: str,
    fakeapi_url: str,
    tmp_path: Path,
    procs: list[ManagedProcess],
) -> None:
    if os.environ.get("PROCRASTINATE_DATABASE_URL"):
        pytest.skip("stops the server: needs the test session's own PostgreSQL")
    from examples.plain_app_bulletproof import target

    port = free_port()
    url = f"http://127.0.0.1:{port}/health"
    env = {**target.env, target.database_env: pg_dsn, "JOKE_API_URL": fakeapi_url}
    env["BULLETPROOF_HEALTH_PORT"] = str(port)
    worker = start_bulletproof_example(env, tmp_path, procs)

    def status() -> int | None:
        try:
            return httpx.get(url, timeout=1.0).status_code
        except httpx.HTTPError:
            return None

    wait_for(lambda: status() == 200, timeout=10, what="/health 200 once ready")
    assert httpx.get(url).json()["worker"] == "bp1"
    try:
        postgres.stop()
        noticed = wait_for(lambda: status() == 503, timeout=10, what="/health 503").elapsed
        # the example's promise (its target's health_budget, 3 s)
        assert noticed <= target.health_budget, f"503 after {noticed:.2f}s"
    finally:
        postgres.start()
    back = wait_for(lambda: status() == 200, timeout=20, what="/health 200 again").elapsed
    assert back <= target.recovery_budget, f"200 again after {back:.2f}s"
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=20) == 0, worker.tail(10)
    print(f"/health: 503 {noticed:.2f}s after PostgreSQL stopped, 200 {back:.2f}s after restart")


def test_a_health_port_in_use_is_a_one_line_error(pg_dsn: str) -> None:
    from examples.plain_app_bulletproof import target

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**target.env, target.database_env: pg_dsn, "BULLETPROOF_HEALTH_PORT": str(port)}
        done = run(["-m", "bulletproof", "worker", "--app", BULLETPROOF_APP], env, timeout=30)
    assert done.returncode == 2, done.stderr
    assert f"health: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    bad = run(["-m", "bulletproof", "worker", "--app", BULLETPROOF_APP, "--health-port", "x"], {})
    assert bad.returncode == 2
    assert "'x' is not a port; use 0 to 65535" in bad.stderr
