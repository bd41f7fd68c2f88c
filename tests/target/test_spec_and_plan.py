"""Targets are checked when written; a task's retry plan is read from its own strategy."""

from __future__ import annotations

import httpx
import pytest
from procrastinate import App, RetryStrategy
from procrastinate.testing import InMemoryConnector

from harness.target.expect import retry_plan
from harness.target.spec import Target, TargetError, load_target
from system.retry import ExponentialBackoffStrategy

BASE = {"name": "t", "app": "mypkg.tasks:app", "task": "fetch", "worker": ["python", "-m", "w"]}


def test_a_valid_target_keeps_its_statements() -> None:
    t = Target(**BASE, recovery_budget=5.0, known_failures={"worker_crash": ["queue_accounting"]})
    assert t.recovery_budget == 5.0 and t.known_failures["worker_crash"] == ["queue_accounting"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"app": "mypkg.tasks.app"}, "must be 'module:attribute'"),
        ({"worker": []}, "worker is empty"),
        ({"recovery_budget": 0}, "recovery_budget=0 is out of range"),
        ({"effect_sql": "DELETE FROM jokes"}, "effect_sql must be a SELECT"),
        ({"known_failures": {"nope": ["queue_accounting"]}}, "names no scenario 'nope'"),
        ({"known_failures": {"worker_crash": ["lost"]}}, "must name invariants"),
        ({"health_port_env": "HEALTH PORT"}, "is not an environment variable name"),
        ({"health_path": "health"}, "health_path 'health' must start with '/'"),
        ({"health_budget": -1}, "health_budget=-1 is out of range"),
    ],
)
def test_a_wrong_target_gets_one_line_naming_the_field(change: dict, message: str) -> None:
    with pytest.raises(TargetError, match=message) as info:
        Target(**{**BASE, **change})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "must be 'module:attribute'"),
        ("no_such_module_here:target", "cannot import 'no_such_module_here'"),
        ("harness.target.spec:nothing", "has no attribute 'nothing'"),
        ("harness.target.spec:FAKE_API", "is a str, not a harness.target.Target"),
    ],
)
def test_load_target_says_what_is_wrong(path: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        load_target(path)


def _task(strategy: object) -> object:
    app = App(connector=InMemoryConnector())

    @app.task(name="fetch", queue="jokes", retry=strategy)  # type: ignore[arg-type]
    def fetch() -> None: ...

    return app.tasks["fetch"]


REFUSED = httpx.ConnectError("refused")


def test_plan_of_procrastinates_builtin_strategy() -> None:
    plan = retry_plan(_task(RetryStrategy(max_attempts=4, wait=1)), REFUSED)
    assert plan.delays == (1.0, 1.0, 1.0, 1.0) and plan.runs == 5


def test_plan_of_an_exponential_strategy_doubles_up_to_its_cap() -> None:
    strategy = ExponentialBackoffStrategy(max_attempts=5, base_delay=0.5, max_delay=2.0)
    plan = retry_plan(_task(strategy), REFUSED)
    assert plan.delays == (0.5, 1.0, 2.0, 2.0) and plan.runs == 5


def test_plan_of_a_strategy_that_does_not_retry_this_error_is_empty() -> None:
    strategy = RetryStrategy(max_attempts=3, retry_exceptions={ValueError})
    assert retry_plan(_task(strategy), REFUSED).delays == ()
    assert retry_plan(_task(None), REFUSED).strategy == "none"


def test_the_plan_is_read_as_the_workers_see_it() -> None:
    # the example reads its backoff from the environment at import: the harness's own
    # environment would give the defaults, the workers' gives the compressed plan
    import os

    from harness.backends.local import REPO_ROOT
    from harness.target.expect import retry_plan_as_worker

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RETRY_BASE_DELAY": "0.3"}
    env["RETRY_MAX_DELAY"] = "2.4"
    app = "examples.plain_app_bulletproof.tasks:app"
    plan = retry_plan_as_worker(app, "fetch_joke", env=env, cwd=str(REPO_ROOT))
    assert plan.delays == (0.3, 0.6, 1.2, 2.4)
    with pytest.raises(RuntimeError, match="has no task 'nope'"):
        retry_plan_as_worker(app, "nope", env=env, cwd=str(REPO_ROOT))
