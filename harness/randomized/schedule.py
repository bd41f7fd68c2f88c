"""A fault schedule is data: what happens to which part of the stack, when, for how long.

Times are seconds from the start of the workload. Written into the history (observation
``schedule``) and to ``<reports>/schedules/<name>.json``; any schedule replays exactly from
that file (``--schedule FILE``) or from the seed it was generated with.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

#: Every fault the random nemesis draws from, with the targets it applies to.
#: ``wN`` are workers (``w*`` = any), ``workers`` every worker at once (the host they share
#: crashes, freezes or is redeployed), ``api`` the API process, ``postgres`` the server,
#: ``dblink`` / ``jokeapi`` the Toxiproxy links.
FAULTS: dict[str, tuple[str, ...]] = {
    "kill": ("w*", "workers", "api"),  # SIGKILL, started again when the window ends
    "sigterm": ("w*", "workers", "api"),  # graceful stop (a deploy), started again at the end
    "pause": ("w*", "workers"),  # SIGSTOP ... SIGCONT (a GC pause, a frozen VM)
    "pg_restart": ("postgres",),  # fast shutdown, down for the window, started again
    "pg_kill": ("postgres",),  # SIGKILL (crash), down for the window, started again
    "proxy_down": ("dblink", "jokeapi"),  # link refused and open connections dropped
    "timeout": ("dblink", "jokeapi"),  # blackhole: bytes held, nothing answered
    "reset_peer": ("dblink", "jokeapi"),  # connections reset
    "latency": ("dblink", "jokeapi"),  # +500 ms each way
}

#: The target naming every worker at once.
ALL_WORKERS = "workers"


def hit(target: str, workers: int) -> tuple[str, ...]:
    """The parts of the stack a fault on ``target`` acts on (``workers``: each worker)."""
    if target == ALL_WORKERS:
        return tuple(f"w{i}" for i in range(1, workers + 1))
    return (target,)


class ScheduleError(ValueError):
    """A schedule file or value that cannot be used (the message says what and where)."""


@dataclass(frozen=True)
class FaultStep:
    """One fault: ``fault`` on ``target`` from ``start`` for ``duration`` seconds."""

    start: float
    duration: float
    fault: str
    target: str

    @property
    def end(self) -> float:
        return self.start + self.duration

    def check(self, workers: int) -> None:
        allowed = FAULTS.get(self.fault)
        if allowed is None:
            raise ScheduleError(f"unknown fault {self.fault!r}; use one of {', '.join(FAULTS)}")
        worker = self.target.startswith("w") and self.target[1:].isdigit()
        if not (self.target in allowed or (worker and "w*" in allowed)):
            raise ScheduleError(f"fault {self.fault!r} cannot hit {self.target!r}")
        if worker and not 1 <= int(self.target[1:]) <= workers:
            raise ScheduleError(f"{self.target!r}: the schedule has {workers} workers")
        if self.start < 0 or not 0 < self.duration <= 600:
            raise ScheduleError(f"{self}: start must be >= 0 and 0 < duration <= 600 s")


@dataclass(frozen=True)
class Workload:
    """What the client does: ``jobs`` submissions through the API at ``rate`` per second, a
    share of them duplicates, unknown categories (404: must fail at once), a category the
    upstream always answers 500 for (``failing``: must be retried on its backoff schedule, then
    fail after its last allowed run), a category the upstream never answers (``stuck``: each
    run times out, is retried, the last fails; a SIGTERM during one must abort and re-queue
    it, a kill must leave it to stalled-job recovery: 10%, so that a worker killed in the
    first 15 s has one in flight, where 5% left every judged kill of 10 runs with none), or
    calls that hang past ``JOB_TIMEOUT`` once; ``bursts``
    5xx/429 bursts of the joke API spread over the run. The joke
    API draws from ``joke_pool`` jokes, so the same joke comes back often (an upstream that
    repeats itself): storing it twice would show."""

    jobs: int = 100
    rate: float = 20.0
    duplicates: float = 0.1
    not_found: float = 0.05
    failing: float = 0.03
    stuck: float = 0.10
    hangs: float = 0.03
    bursts: int = 2
    joke_pool: int = 25

    @property
    def seconds(self) -> float:
        """How long the submissions take at ``rate``."""
        return self.jobs / self.rate


@dataclass(frozen=True)
class Schedule:
    """A workload, the workers it runs on, and the faults laid over it (healed before
    ``quiet`` seconds of calm at the end)."""

    seed: int
    workers: int
    workload: Workload
    faults: tuple[FaultStep, ...] = ()
    quiet: float = 3.0
    origin: str = "generated"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 16:
            raise ScheduleError(f"workers={self.workers}: use 1 to 16")
        for step in self.faults:
            step.check(self.workers)

    @property
    def horizon(self) -> float:
        """When the last fault heals (or the submissions end, if later)."""
        return max([self.workload.seconds, *(f.end for f in self.faults)])

    def with_faults(self, faults: Iterable[FaultStep], **changes: Any) -> Schedule:
        """The same schedule with other faults (and other fields), e.g. a shrinking step."""
        return replace(self, faults=tuple(sorted(faults, key=lambda f: f.start)), **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "workers": self.workers,
            "workload": asdict(self.workload),
            "faults": [asdict(f) for f in self.faults],
            "quiet": self.quiet,
            "origin": self.origin,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Schedule:
        if not isinstance(data, dict):
            raise ScheduleError("a schedule is a JSON object")
        try:
            return cls(
                seed=int(data["seed"]),
                workers=int(data["workers"]),
                # a file written before ``failing``/``stuck`` existed replays without them
                workload=Workload(**{"failing": 0.0, "stuck": 0.0, **data.get("workload", {})}),
                faults=tuple(FaultStep(**f) for f in data.get("faults", [])),
                quiet=float(data.get("quiet", 3.0)),
                origin=str(data.get("origin", "file")),
                meta=dict(data.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ScheduleError):
                raise
            raise ScheduleError(f"not a schedule: {type(exc).__name__}: {exc}") from None

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Schedule:
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ScheduleError(f"{path}: cannot read ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise ScheduleError(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from None
        try:
            return cls.from_dict(data)
        except ScheduleError as exc:
            raise ScheduleError(f"{path}: {exc}") from None


def schedule_replay_command(path: Path, defect: str | None = None, profile: str = "fast") -> str:
    """The command that replays the schedule saved at ``path`` exactly (the report shows it):
    ``pytest scenarios/test_random.py --schedule <file>``, with the defect and the profile the
    run had (the schedule file holds everything else: workers, workload, faults)."""
    parts = ["pytest", "scenarios/test_random.py", "--schedule", str(path)]
    parts += ["--random-defect", defect] if defect else []
    parts += ["--profile", profile] if profile != "fast" else []
    return shlex.join(parts)
