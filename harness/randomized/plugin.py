"""pytest options of random mode (loaded by the root conftest):

    nox -s chaos -- --random 3                  # three random runs of the default size
    pytest scenarios/test_random.py --schedule reports/schedules/random_1234.json   # replay
    nox -s soak -- --duration 30m --workers 4   # random runs until the time is up

Without ``--random``, ``--schedule`` or ``--soak-duration`` the random scenarios are
deselected (the default suite stays within its time).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from harness.randomized.schedule import Schedule, ScheduleError

RANDOM_FILE = "test_random.py"
#: Seconds one random run (and the run that precedes a shrink) may take at most.
RUN_ALLOWANCE = 600.0


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``1h`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise pytest.UsageError(f"duration {text!r}: use e.g. 90s, 30m or 1h")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bulletproof")
    group.addoption("--random", type=int, default=0, help="add N random-schedule runs")
    group.addoption("--schedule", default=None, help="replay the schedule in this JSON file")
    group.addoption(
        "--random-faults", type=int, default=6, help="faults per random schedule (default 6)"
    )
    group.addoption(
        "--random-workers", type=int, default=2, help="workers per random run (default 2)"
    )
    group.addoption(
        "--shrink-budget",
        default=os.environ.get("BULLETPROOF_SHRINK_BUDGET", "10m"),
        help="time to shrink a failing schedule (default 10m; 0 = do not shrink)",
    )
    group.addoption("--soak-duration", default=None, help="run random schedules this long")
    group.addoption(
        "--random-defect",
        default=None,
        help="run the random schedules against the system with this deliberate defect "
        "(system/defects.py): each run passes only when the checker catches it",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--schedule")
    if path:
        try:
            Schedule.load(Path(path))
        except ScheduleError as exc:
            raise pytest.UsageError(f"--schedule: {exc}") from None
    for name in ("--random", "--random-faults"):
        if config.getoption(name) < 0:
            raise pytest.UsageError(f"{name} must be 0 or more")
    if not 1 <= config.getoption("--random-workers") <= 16:
        raise pytest.UsageError("--random-workers: use 1 to 16")
    parse_duration(config.getoption("--shrink-budget"))
    defect = config.getoption("--random-defect")
    if defect is not None:
        from system.defects import Defect

        if defect not in set(Defect):
            raise pytest.UsageError(
                f"--random-defect: unknown defect {defect!r}; use one of {', '.join(Defect)}"
            )
    if config.getoption("--soak-duration"):
        parse_duration(config.getoption("--soak-duration"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {
        "test_random_run": bool(config.getoption("--random") or config.getoption("--schedule")),
        "test_soak": bool(config.getoption("--soak-duration")),
    }
    dropped = [
        i
        for i in items
        if Path(str(i.path)).name == RANDOM_FILE
        and not wanted.get(getattr(i, "originalname", i.name), False)
    ]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i not in dropped]
    # a random run may shrink for --shrink-budget, a soak lasts --soak-duration: pytest's
    # per-test timeout (pytest-timeout) must leave them that long, plus the runs themselves
    shrink = parse_duration(config.getoption("--shrink-budget"))
    soak = parse_duration(config.getoption("--soak-duration") or "0")
    for item in items:
        if Path(str(item.path)).name == RANDOM_FILE:
            item.add_marker(pytest.mark.timeout(shrink + soak + RUN_ALLOWANCE))
