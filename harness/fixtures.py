"""pytest fixtures: a session-wide backend and a fresh, wired :class:`Stack` per test.

Loaded from the root conftest (``pytest_plugins``). Options come from harness/pytest_plugin.py:
``--backend``, ``--profile``, ``--seed``, ``--reports-dir``.

    @pytest.mark.stack(workers=2, settings={"job_timeout": 0.5}, defects=["no-timeout"])
    def test_something(stack):
        stack.workers[0].kill()
        ...

Fixtures: ``backend`` (session), ``stack`` (function; options from the ``stack`` marker),
``stack_factory`` (function; ``stack_factory(workers=0, api=False, ...)`` builds more stacks,
all closed at teardown), ``scenario`` (function; a :class:`harness.scenario.ScenarioRun` per
``with`` block, see that module). Nothing outlives the session, also after a failure or
Ctrl-C: every service is closed by finalizers, and :mod:`harness.cleanup` kills whatever is
left at exit (or at the next start if this process was SIGKILLed).
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Generic, TypeVar

import pytest

from harness import cleanup
from harness.backends import get_backend_class
from harness.backends.base import Backend, BackendUnavailable, ServiceError
from harness.mutation import mutant_name
from harness.profiles import get_profile
from harness.report.results import (
    replay_command,
    result_document,
    run_block,
    scenario_entry,
    write_result,
)
from harness.scenario import ScenarioFactory, ScenarioRun
from harness.stack import Stack
from system.defects import Defect

STACK_MARKER = (
    "stack(workers=1, api=True, defects=(), settings={}, env={}): options for the stack fixture "
    "(settings: profile values in seconds to override, env: extra SUT environment)"
)
_STACK_OPTIONS = {"workers", "api", "defects", "settings", "env"}
_PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", STACK_MARKER)


def pytest_sessionstart(session: pytest.Session) -> None:
    # Create this run first (reaping dead runs), so every process the session starts — the
    # PostgreSQL postmaster included — carries its marker and can be reaped.
    cleanup.current_run()


def pytest_unconfigure(config: pytest.Config) -> None:
    cleanup.close_run()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_PHASE_REPORTS, {})[report.when] = report
    return report


def _unavailable_message(name: str, reason: str) -> str:
    """One message saying what is missing and how to get either backend."""
    if name == "local":
        try:
            get_backend_class("docker").check_available()
        except (BackendUnavailable, ImportError) as docker_reason:
            return (
                f"bulletproof: no backend can run here. local: {reason}. docker: {docker_reason}. "
                "Install PostgreSQL's server binaries (Debian: apt-get install postgresql-15) "
                "for the local backend, or Docker (apt-get install docker.io; start dockerd) "
                "and pass --backend docker."
            )
        return (
            f"bulletproof: local backend unavailable: {reason}. Docker works here: --backend docker"
        )
    return (
        f"bulletproof: {name} backend unavailable: {reason}. "
        "The local backend needs only PostgreSQL's server binaries: --backend local"
    )


def _sigterm_as_interrupt() -> None:
    """Turn SIGTERM into KeyboardInterrupt so that finalizers run (if nobody else handles it)."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The session's backend (``--backend``), opened once: PostgreSQL is initialised once."""
    name = request.config.getoption("--backend")
    _sigterm_as_interrupt()
    try:
        cls = get_backend_class(name)
        cls.check_available()
    except (BackendUnavailable, ImportError) as exc:
        pytest.exit(_unavailable_message(name, str(exc)), returncode=pytest.ExitCode.USAGE_ERROR)
    workdir = cleanup.make_temp_dir(f"backend-{name}-")
    kwargs: dict[str, Any] = {}
    if name == "local":
        # Share the test suite's PostgreSQL when it has one (tests/conftest.py's ``postgres``).
        with contextlib.suppress(pytest.FixtureLookupError):
            kwargs["postgres"] = request.getfixturevalue("postgres")
    instance = cls(workdir, **kwargs)
    try:
        instance.open()
    except (BackendUnavailable, ServiceError) as exc:
        with contextlib.suppress(Exception):
            instance.close()
        pytest.exit(f"bulletproof: {name} backend did not start: {exc}", returncode=3)
    try:
        yield instance
    finally:
        instance.close()


def _logs_dir(request: pytest.FixtureRequest, suffix: str = "") -> Path:
    """``<reports-dir>/logs/<test id>``, emptied of an earlier run's logs."""
    reports = Path(request.config.getoption("--reports-dir"))
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")[-120:]
    directory = reports / "logs" / f"{slug}{suffix}"
    for old in directory.glob("*.log"):
        old.unlink()
    return directory


def _attach_logs_on_failure(request: pytest.FixtureRequest, stack: Stack) -> None:
    reports = request.node.stash.get(_PHASE_REPORTS, {})
    if not any(r.failed for r in reports.values()):
        return
    lines = [f"logs: {stack.logs_dir}"]
    for path in sorted(stack.logs_dir.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-15:]
        lines += [f"--- {path.name} (last {len(tail)} lines)", *tail]
    request.node.add_report_section("teardown", "bulletproof services", "\n".join(lines))


def _build(request: pytest.FixtureRequest, backend: Backend, options: dict[str, Any]) -> Stack:
    suffix = options.pop("_suffix", "")
    unknown = set(options) - _STACK_OPTIONS
    if unknown:
        raise pytest.UsageError(
            f"stack marker: unknown option {', '.join(sorted(unknown))}; "
            f"use {', '.join(sorted(_STACK_OPTIONS))}"
        )
    profile = get_profile(request.config.getoption("--profile"))
    if options.get("settings"):
        profile = profile.replace(**options["settings"])
    seed: int = request.getfixturevalue("seed")
    return Stack(
        backend,
        profile=profile,
        seed=seed,
        name=request.node.name,
        logs_dir=_logs_dir(request, suffix),
        workers=options.get("workers", 1),
        api=options.get("api", True),
        defects=options.get("defects", ()),
        extra_env=options.get("env"),
    )


@pytest.fixture
def stack(request: pytest.FixtureRequest, backend: Backend) -> Iterator[Stack]:
    """A started stack: fresh database, Toxiproxy on both links, fake API, API and workers."""
    marker = request.node.get_closest_marker("stack")
    options = dict(marker.kwargs) if marker else {}
    built = _build(request, backend, options)
    try:
        built.start()
        yield built
    finally:
        try:
            _attach_logs_on_failure(request, built)
        finally:
            built.close()


@pytest.fixture
def stack_factory(
    request: pytest.FixtureRequest, backend: Backend
) -> Iterator[Callable[..., Stack]]:
    """``make(**options)`` -> a started :class:`Stack` (same options as the marker)."""
    made: list[Stack] = []

    def make(**options: Any) -> Stack:
        options["_suffix"] = f"-{len(made) + 1}"
        built = _build(request, backend, options)
        made.append(built)
        built.start()
        return built

    try:
        yield make
    finally:
        for built in reversed(made):
            with contextlib.suppress(Exception):
                _attach_logs_on_failure(request, built)
            built.close()


RunT = TypeVar("RunT", bound=ScenarioRun)


class ScenarioBlock(Generic[RunT]):
    """The ``with`` block of one scenario: builds the run (a :class:`ScenarioRun` or a
    subclass), closes it; the fixture that made the stack stops it."""

    def __init__(self, make: Callable[[], RunT]) -> None:
        self._make = make
        self.run: RunT | None = None

    def __enter__(self) -> RunT:
        self.run = self._make()
        return self.run

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.run is not None:
            self.run.close(exc)


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest, seed: int, stack_factory: Callable[..., Stack]
) -> Iterator[ScenarioFactory]:
    """``scenario(name, title=..., workers=1, defect=None, settings={}, claims=(),
    expect_failing=(), replay=None)`` -> a context manager yielding a :class:`ScenarioRun` on
    a started stack; with ``defect`` the run is the mutation ``<name>__defect_<defect>``,
    expected to fail on one of ``expect_failing``; ``replay`` replaces the derived replay
    command (a random run replays from its schedule file). The stack is closed at teardown."""
    reports_dir = Path(request.config.getoption("--reports-dir"))
    backend = str(request.config.getoption("--backend"))
    profile = str(request.config.getoption("--profile"))

    def make(
        name: str,
        *,
        title: str,
        workers: int = 1,
        defect: Defect | None = None,
        settings: dict[str, Any] | None = None,
        claims: Sequence[str] = (),
        expect_failing: Sequence[str] = (),
        replay: str | None = None,
    ) -> ScenarioBlock:
        if defect is not None:
            if not expect_failing:
                raise pytest.UsageError(f"mutation of {name}: name the invariants that must fail")
            name, title = mutant_name(name, defect), f"{title}, defect {defect.value}"

        def build() -> ScenarioRun:
            command = replay or replay_command(name, seed, backend, profile)
            print(f"scenario {name}: seed={seed} (replay: {command})")
            request.node.user_properties.extend([("seed", seed), ("replay", command)])
            try:
                stack = stack_factory(
                    workers=workers,
                    defects=[defect.value] if defect else [],
                    settings=settings or {},
                )
            except Exception as exc:
                entry = scenario_entry(
                    name=name,
                    title=title,
                    seed=seed,
                    verdicts=[],
                    expected_verdict="fail" if defect else "pass",
                    defect=defect.value if defect else None,
                    expected_failing=expect_failing,
                    error=f"the stack did not start: {type(exc).__name__}: {exc}",
                    duration=0.0,
                    backend=backend,
                    profile=profile,
                    claims=claims,
                    phases={},
                    calibration=None,
                    logs={},
                )
                run = run_block(seed=seed, backend=backend, profile=profile, started_at=time.time())
                write_result(
                    reports_dir / "results" / f"{name}.json", result_document(run, [entry])
                )
                raise
            return ScenarioRun(
                name=name,
                title=title,
                seed=seed,
                stack=stack,
                reports_dir=reports_dir,
                backend=backend,
                claims=claims,
                defect=defect,
                expect_failing=expect_failing,
                replay=command,
            )

        return ScenarioBlock(build)

    yield make
