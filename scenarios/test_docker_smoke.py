"""docker_smoke: the docker backend for real, under a PostgreSQL restart and a joke API cut.

PostgreSQL (testcontainers) and the fake joke API run in containers, Toxiproxy fronts both links
(in a container when its image is present, else on the host), the SUT runs on the host. Jobs are
submitted, the PostgreSQL container is restarted through docker-py while jobs are queued or
running, the joke API is cut through Toxiproxy until a job has visibly failed an attempt and
been scheduled for retry, and every acknowledged job must then succeed exactly once.

This module always uses the docker backend (it overrides the ``backend`` fixture), whatever
``--backend`` says, and is skipped only when no Docker engine is reachable. Run it with
``.ci/docker-smoke`` (sets up the engine and images) or
``pytest scenarios/test_docker_smoke.py --backend docker``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from harness import budgets, cleanup
from harness.backends.base import Backend, BackendUnavailable, ServiceError
from harness.checks import baseline
from harness.docker.engine import unreachable_reason
from harness.scenario import ScenarioRun
from harness.stack import Stack
from harness.wait import wait_for

pytestmark = pytest.mark.docker

SUBMIT_EACH = 3


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    """A docker backend for this module (skip, with the reason, when no engine answers)."""
    reason = unreachable_reason()
    if reason is not None:
        pytest.skip(f"docker_smoke needs a Docker engine: {reason}")
    from harness.backends.docker import DockerBackend

    instance = DockerBackend(cleanup.make_temp_dir("backend-docker-"))
    try:
        instance.open()
    except (BackendUnavailable, ServiceError) as exc:
        with contextlib.suppress(Exception):
            instance.close()
        # An engine is here, so a missing image or a failed start is a real failure.
        pytest.fail(f"docker backend did not start: {exc}", pytrace=False)
    try:
        yield instance
    finally:
        instance.close()


def _postmaster_started(stack: Stack) -> float:
    with psycopg.connect(stack.db_dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT extract(epoch FROM pg_postmaster_start_time())").fetchone()
    assert row is not None
    return float(row[0])


def _retries_scheduled(stack: Stack, ids: list[int]) -> int:
    with psycopg.connect(stack.db_dsn, connect_timeout=2) as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate_events "
            "WHERE type = 'deferred_for_retry' AND job_id = ANY(%s)",
            (ids,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_docker_smoke(
    request: pytest.FixtureRequest, seed: int, stack_factory: Callable[..., Stack]
) -> None:
    from harness.backends.docker import ContainerService, DockerPostgres

    # More retries than the profile's 5: a cut that outlasts a loaded machine's retry budget
    # would fail jobs, and this scenario is about the backend, not about the retry limit.
    stack = stack_factory(workers=2, settings={"max_retries": 8})
    # Really containers: PostgreSQL and the fake API are docker services.
    assert isinstance(stack.postgres, DockerPostgres)
    assert isinstance(stack.fakeapi_service, ContainerService)
    run = ScenarioRun(
        name="docker_smoke",
        title="Docker backend: PostgreSQL container restart and joke API cut",
        seed=seed,
        stack=stack,
        reports_dir=Path(request.config.getoption("--reports-dir")),
        backend="docker",
    )
    error: BaseException | None = None
    try:
        run.observe("docker_toxiproxy", stack.toxiproxy.flavour if stack.toxiproxy else None)
        first = run.client.submit_many(SUBMIT_EACH)
        assert any(s.outcome == "ok" for s in first), [s.error for s in first]

        started_before = _postmaster_started(stack)
        run.nemesis.pg_restart()
        started_after = _postmaster_started(stack)
        assert started_after > started_before, "the PostgreSQL container was not restarted"
        run.client.submit_many(SUBMIT_EACH)

        with run.nemesis.proxy_down("jokeapi") as cut:
            cut_jobs = [s.job_id for s in run.client.submit_many(SUBMIT_EACH) if s.job_id]
            assert cut_jobs, "no job was acknowledged while the joke API was cut"
            seen = wait_for(
                lambda: _retries_scheduled(stack, cut_jobs),
                timeout=budgets.pickup(run.profile) + run.profile.job_timeout,
                what="a job to fail an attempt on the cut joke API and be scheduled for retry",
                ignore=(psycopg.Error,),
            )
            cut.detail["retries_seen"] = seen.value
        run.client.submit_many(SUBMIT_EACH)

        result = run.finish(
            lambda h: baseline(
                h,
                expected_status="succeeded",
                smallest=run.profile.worker_timeout,
                what="job completion",
            )
        )
        # And directly: every acknowledged job is succeeded in procrastinate_jobs.
        statuses = run.statuses()
        assert len(statuses) == len(run.acknowledged()) >= SUBMIT_EACH, statuses
        assert set(statuses.values()) == {"succeeded"}, statuses
        assert result["verdict"] == "pass"
    except BaseException as exc:
        error = exc
        raise
    finally:
        run.close(error)
