"""A *target*: the user's own Procrastinate app, described once for the generic scenarios.

    # mypkg/chaos.py
    from harness.target import FAKE_API, Target

    target = Target(
        name="mypkg",
        app="mypkg.tasks:app",                       # the procrastinate.App object
        task="mypkg.tasks.fetch",                    # the task's name (its import path by default)
        worker=["python", "-m", "procrastinate", "--app", "mypkg.tasks.app", "worker"],
        upstreams={"JOKE_API_URL": FAKE_API},       # env var -> upstream; fronted by Toxiproxy
        effect_sql="SELECT job_id, joke_id FROM jokes",
    )

The harness creates a database, injects its URL (through Toxiproxy) into ``database_env``,
points every ``upstreams`` variable at a Toxiproxy proxy in front of the real upstream, starts
``worker`` (``python`` means this interpreter), defers jobs through the app itself, and judges
the history with the same checker as the reference system. Nothing here imports the app until a
scenario runs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: An ``upstreams`` value meaning "the harness's fake joke API" (scriptable, seeded).
FAKE_API = "bulletproof:fake-joke-api"
#: The generic scenarios (``harness/target/scenarios/test_<name>.py``).
SCENARIOS = (
    "backoff_schedule",
    "upstream_cut",
    "worker_crash",
    "stalled_recovery",
    "database_drop",
    "postgres_restart",
    "graceful_shutdown",
)
#: A worker is ready once its log shows one of these: Procrastinate's own worker (logging at
#: INFO) or the bulletproof supervised worker.
DEFAULT_READY = r"Starting worker on|bulletproof: worker ready"


class TargetError(ValueError):
    """A target that cannot be used; the message says what is wrong and what to do."""


def _no_args(index: int) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True, kw_only=True)
class Target:
    """How to run, feed and observe a Procrastinate app under the generic scenarios.

    Times are seconds. ``recovery_budget`` is the user's promise (an SLO), not a measurement:
    after a fault heals, jobs must run again within it. ``shutdown_grace`` is how long the
    orchestrator waits after SIGTERM before SIGKILL (Kubernetes' default is 30 s).
    ``job_seconds`` bounds one normal run of the task. ``ready_log`` is a regular expression
    a worker's log shows once it takes jobs.

    ``health_port_env`` names the variable in which a worker takes the port of its own
    ``GET health_path`` (e.g. ``python -m bulletproof worker`` reads
    ``BULLETPROOF_HEALTH_PORT``): the harness gives each worker a free loopback port there and
    samples it during ``database_drop``, where it must answer non-200 within
    ``health_budget`` seconds of the outage and 200 within ``recovery_budget`` after it.
    Without it, no health check runs.

    ``known_failures`` maps a scenario to the invariants the app is known to break there
    (e.g. while adopting the bulletproof parts): such a scenario passes only when one of them
    does fail (like a mutant), so a gap stays documented and a fixed one is noticed. The
    report still shows every failed verdict with its evidence.
    """

    name: str
    app: str
    task: str
    worker: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    database_env: str = "DATABASE_URL"
    upstreams: Mapping[str, str] = field(default_factory=dict)
    args: Callable[[int], Mapping[str, Any]] = _no_args
    effect_sql: str | None = None
    migrate: Sequence[str] | None = None
    recovery_budget: float = 10.0
    shutdown_grace: float = 10.0
    job_seconds: float = 1.0
    ready_log: str = DEFAULT_READY
    health_port_env: str | None = None
    health_path: str = "/health"
    health_budget: float = 10.0
    known_failures: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if ":" not in self.app:
            raise TargetError(
                f"target {self.name!r}: app {self.app!r} must be 'module:attribute' "
                "(e.g. 'mypkg.tasks:app')"
            )
        if not self.worker:
            raise TargetError(f"target {self.name!r}: worker is empty; give the worker's command")
        for name, value in (
            ("recovery_budget", self.recovery_budget),
            ("shutdown_grace", self.shutdown_grace),
            ("job_seconds", self.job_seconds),
            ("health_budget", self.health_budget),
        ):
            if not 0 < value <= 3600:
                raise TargetError(
                    f"target {self.name!r}: {name}={value} is out of range; use 0 < s <= 3600"
                )
        from harness.vocabulary import Invariant

        for scenario, invariants in self.known_failures.items():
            if scenario not in SCENARIOS:
                raise TargetError(
                    f"target {self.name!r}: known_failures names no scenario {scenario!r}; "
                    f"use one of {', '.join(SCENARIOS)}"
                )
            unknown = sorted(set(invariants) - set(Invariant))
            if unknown or not invariants:
                raise TargetError(
                    f"target {self.name!r}: known_failures[{scenario!r}] must name invariants "
                    f"among {', '.join(Invariant)} (got {', '.join(unknown) or 'none'})"
                )
        if not self.health_path.startswith("/"):
            raise TargetError(
                f"target {self.name!r}: health_path {self.health_path!r} must start with '/' "
                "(e.g. '/health')"
            )
        if self.health_port_env is not None and not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_]*", self.health_port_env
        ):
            raise TargetError(
                f"target {self.name!r}: health_port_env {self.health_port_env!r} is not an "
                "environment variable name (e.g. 'HEALTH_PORT')"
            )
        if self.effect_sql is not None and not self.effect_sql.lstrip().lower().startswith(
            ("select", "with")
        ):
            raise TargetError(
                f"target {self.name!r}: effect_sql must be a SELECT returning (job_id, key) rows"
            )


def import_object(path: str, *, what: str) -> Any:
    """``module:attribute`` (dots allowed in the attribute), or a :class:`TargetError`
    (bulletproof's own loader, its error restated)."""
    from bulletproof.core import AppError, import_attribute

    try:
        return import_attribute(path, what=what, example="mypkg.chaos:target")
    except AppError as exc:
        raise TargetError(str(exc)) from None


def load_target(path: str) -> Target:
    """The :class:`Target` at ``module:attribute`` (``--target``), checked."""
    found = import_object(path, what="--target")
    if not isinstance(found, Target):
        raise TargetError(
            f"--target {path!r} is a {type(found).__name__}, not a harness.target.Target"
        )
    return found


def load_app(target: Target) -> Any:
    """The target's ``procrastinate.App`` (imported only when a scenario runs)."""
    from procrastinate import App

    app = import_object(target.app, what=f"target {target.name!r}: app")
    if not isinstance(app, App):
        raise TargetError(
            f"target {target.name!r}: {target.app!r} is a {type(app).__name__}, not a "
            "procrastinate.App"
        )
    return app


def task_of(target: Target, app: Any) -> Any:
    """The target's task on ``app``, or a :class:`TargetError` listing the tasks it has."""
    tasks: dict[str, Any] = app.tasks
    if target.task in tasks:
        return tasks[target.task]
    names = ", ".join(sorted(tasks)) or "none"
    raise TargetError(
        f"target {target.name!r}: the app has no task {target.task!r}; its tasks: {names}"
    )


__all__: list[str] = [
    "DEFAULT_READY",
    "FAKE_API",
    "SCENARIOS",
    "Target",
    "TargetError",
    "import_object",
    "load_app",
    "load_target",
    "task_of",
]
