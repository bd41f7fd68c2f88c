"""pytest plugin for the generic scenarios: ``--target module:attribute`` and their fixture.

    nox -s chaos -- --target examples.plain_app:target
    pytest harness/target/scenarios --target mypkg.chaos:target
    python -m bulletproof.chaos mypkg.chaos:target       # installed, from anywhere

Without ``--target`` (env ``BULLETPROOF_TARGET``) the generic scenarios are not collected
as runnable: collecting them is a usage error that says what to pass.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.backends.base import Backend
from harness.fixtures import ScenarioBlock
from harness.target.run import TargetRun
from harness.target.spec import Target, TargetError, load_target
from harness.target.stack import TargetStack

SCENARIOS_DIR = Path(__file__).parent / "scenarios"

TargetScenario = Callable[..., contextlib.AbstractContextManager[TargetRun]]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("bulletproof").addoption(
        "--target",
        default=os.environ.get("BULLETPROOF_TARGET"),
        help="run the generic scenarios against your app: module:attribute of a "
        "harness.target.Target (env BULLETPROOF_TARGET)",
    )
    parser.getgroup("bulletproof").addoption(
        "--known-only",
        action="store_true",
        help="run only the scenarios the target lists in known_failures (a deliberately broken "
        "target: each must catch its defect)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    generic = [i for i in items if SCENARIOS_DIR in Path(str(i.path)).parents]
    if not generic:
        return
    path = config.getoption("--target")
    if not path:
        raise pytest.UsageError(
            "the generic scenarios need a target: pass --target module:attribute "
            "(e.g. --target examples.plain_app:target)"
        )
    try:
        target = load_target(path)
    except TargetError as exc:
        raise pytest.UsageError(str(exc)) from None
    if config.getoption("--known-only"):
        if not target.known_failures:
            raise pytest.UsageError(f"--known-only: target {target.name!r} lists no known_failures")
        keep = [
            i for i in generic if Path(str(i.path)).stem[len("test_") :] in target.known_failures
        ]
        dropped = [i for i in items if i in generic and i not in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [i for i in items if i not in dropped]


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Target:
    """The :class:`Target` named by ``--target``."""
    path = request.config.getoption("--target")
    if not path:
        raise pytest.UsageError("no --target given (module:attribute of a Target)")
    return load_target(path)


@pytest.fixture
def target_scenario(
    request: pytest.FixtureRequest, backend: Backend, seed: int, target: Target
) -> Iterator[TargetScenario]:
    """``target_scenario(name, title=..., workers=1)`` -> a context manager yielding a
    :class:`TargetRun` on a started :class:`TargetStack`; everything is stopped at exit."""
    reports_dir = Path(request.config.getoption("--reports-dir"))
    target_path = str(request.config.getoption("--target"))
    stacks: list[TargetStack] = []

    def make(name: str, *, title: str, workers: int = 1) -> ScenarioBlock[TargetRun]:
        logs = reports_dir / "logs" / f"{target.name}__{name}"
        for old in logs.glob("*.log"):
            old.unlink()

        def build() -> TargetRun:
            stack = TargetStack(
                backend,
                target,
                seed=seed,
                name=f"{target.name}_{name}",
                logs_dir=logs,
                workers=workers,
            )
            stacks.append(stack)
            stack.start()
            run = TargetRun(
                name=name,
                title=title,
                seed=seed,
                stack=stack,
                reports_dir=reports_dir,
                target_path=target_path,
            )
            print(f"scenario {run.name}: seed={seed} (replay: {run.replay()})")
            return run

        return ScenarioBlock(build)

    try:
        yield make
    finally:
        for stack in stacks:
            stack.close()
