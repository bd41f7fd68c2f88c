"""What a target's task promises, read from the task itself: its retry plan.

The generic scenarios do not restate a formula: they ask the task's own retry strategy what it
decides after each failed run (``get_retry_decision``, the call Procrastinate's worker makes)
and judge the worker against that. A worker that honours its strategy late (a retry picked up
at the next poll) or not at all is caught; a strategy the user finds wrong is theirs to state.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from procrastinate.jobs import Job

#: At most this many runs are asked about (a strategy that retries forever is cut here).
MAX_RUNS = 20


@dataclass(frozen=True)
class RetryPlan:
    """``delays[k-1]``: seconds the strategy waits after run ``k`` fails; ``runs``: the most
    runs a failing job gets (``len(delays) + 1``)."""

    delays: tuple[float, ...]
    strategy: str

    @property
    def runs(self) -> int:
        return len(self.delays) + 1

    def to_dict(self) -> dict[str, Any]:
        return {"delays": list(self.delays), "runs": self.runs, "strategy": self.strategy}


def _probe_job(task: Any, attempts: int) -> Job:
    return Job(
        id=0,
        queue=task.queue,
        lock=None,
        queueing_lock=None,
        task_name=task.name,
        attempts=attempts,
    )


def retry_plan(task: Any, exception: BaseException) -> RetryPlan:
    """Ask ``task``'s retry strategy what it does when runs fail with ``exception``."""
    strategy = task.retry_strategy
    if strategy is None:
        return RetryPlan(delays=(), strategy="none")
    delays: list[float] = []
    for attempts in range(MAX_RUNS - 1):
        now = dt.datetime.now(dt.UTC)
        decision = strategy.get_retry_decision(exception=exception, job=_probe_job(task, attempts))
        if decision is None:
            break
        retry_at = decision.retry_at or now
        delays.append(round(max(0.0, (retry_at - now).total_seconds()), 3))
    return RetryPlan(delays=tuple(delays), strategy=type(strategy).__name__)


def _probe_exception() -> BaseException:
    import httpx

    return httpx.ConnectError("connection refused (bulletproof probe)")


def retry_plan_as_worker(
    app_path: str, task_name: str, *, env: Mapping[str, str], cwd: str, timeout: float = 60.0
) -> RetryPlan:
    """The plan as the target's workers see it: the app imported in a fresh interpreter with
    the workers' environment (apps often read their retry settings from it at import)."""
    argv = [sys.executable, "-m", "harness.target.expect", app_path, task_name]
    done = subprocess.run(
        argv, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"could not read the retry plan of {task_name!r}: {last}")
    data = json.loads(done.stdout)
    return RetryPlan(delays=tuple(float(d) for d in data["delays"]), strategy=data["strategy"])


def main(argv: list[str]) -> int:
    """``python -m harness.target.expect module:app task``: print the task's plan as JSON."""
    from harness.target.spec import Target, TargetError, load_app, task_of

    try:
        target = Target(name="probe", app=argv[0], task=argv[1], worker=["-"])
        task = task_of(target, load_app(target))
    except (TargetError, IndexError) as exc:
        print(f"bulletproof: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(retry_plan(task, _probe_exception()).to_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
