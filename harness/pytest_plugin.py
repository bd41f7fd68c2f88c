"""pytest plugin: the harness's command-line options and the run's seed.

Options: ``--backend local|docker`` (env ``BULLETPROOF_BACKEND``), ``--profile fast|production``
(env ``BULLETPROOF_PROFILE``), ``--seed N`` (env ``BULLETPROOF_SEED``; random and printed when
absent), ``--reports-dir`` (env ``BULLETPROOF_REPORTS``, default ``reports``).
Under pytest-xdist (``-n N``) every worker takes the controller's seed.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import pytest

BACKENDS = ("local", "docker")
PROFILES = ("fast", "production")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bulletproof")
    group.addoption(
        "--backend",
        default=os.environ.get("BULLETPROOF_BACKEND", "local"),
        help="where services run: local (default) or docker",
    )
    group.addoption(
        "--profile",
        default=os.environ.get("BULLETPROOF_PROFILE", "fast"),
        help="timing profile: fast (compressed time, default) or production (the seed's timings)",
    )
    group.addoption(
        "--seed",
        default=os.environ.get("BULLETPROOF_SEED"),
        help="seed for every random choice (default: random, printed)",
    )
    group.addoption(
        "--reports-dir",
        default=os.environ.get("BULLETPROOF_REPORTS", "reports"),
        help="where histories and reports are written (default: reports)",
    )


def pytest_configure(config: pytest.Config) -> None:
    backend = config.getoption("--backend")
    if backend not in BACKENDS:
        raise pytest.UsageError(
            f"--backend: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    profile = config.getoption("--profile")
    if profile not in PROFILES:
        raise pytest.UsageError(
            f"--profile: unknown profile {profile!r}; choose one of {', '.join(PROFILES)}"
        )
    raw_seed = config.getoption("--seed")
    handed = getattr(config, "workerinput", {}).get(SEED_INPUT)
    if handed is not None:  # a pytest-xdist worker: the controller's seed, never its own
        raw_seed = handed
    if raw_seed is None:
        seed = secrets.randbelow(2**31)
    else:
        try:
            seed = int(raw_seed)
        except ValueError:
            raise pytest.UsageError(
                f"--seed: {raw_seed!r} is not an integer; pass e.g. --seed 1234"
            ) from None
    config.stash[SEED_KEY] = seed


SEED_KEY = pytest.StashKey[int]()
SEED_INPUT = "bulletproof_seed"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """pytest-xdist (controller): hand the run's one seed to each worker it starts."""
    config = node.config  # type: ignore[attr-defined]
    node.workerinput[SEED_INPUT] = config.stash[SEED_KEY]  # type: ignore[attr-defined]


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"bulletproof: seed={config.stash[SEED_KEY]} backend={config.getoption('--backend')} "
        f"profile={config.getoption('--profile')} (replay with --seed {config.stash[SEED_KEY]})"
    )


@pytest.fixture(scope="session")
def seed(pytestconfig: pytest.Config) -> int:
    """The run's seed: every random choice flows from it."""
    return pytestconfig.stash[SEED_KEY]


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STARTED] = time.time()


_STARTED = pytest.StashKey[float]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After scenarios ran: the suite's wall time and where each scenario's time went,
    slowest first (stack start, calibration, faults, settle, collect, check)."""
    config = terminalreporter.config
    started = config.stash.get(_STARTED, None)
    if started is None:
        return
    results = Path(config.getoption("--reports-dir")) / "results"
    rows: list[tuple[float, str, dict[str, float]]] = []
    for path in results.glob("*.json") if results.is_dir() else []:
        if path.stat().st_mtime < started:
            continue
        try:
            for entry in json.loads(path.read_text(encoding="utf-8")).get("scenarios", []):
                phases = entry.get("phases") or {}
                rows.append((float(entry.get("duration") or 0.0), str(entry["scenario"]), phases))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if not rows:
        return
    rows.sort(reverse=True)
    terminalreporter.section("bulletproof: where the time went")
    terminalreporter.write_line(
        f"suite wall time {time.time() - started:.1f}s; {len(rows)} scenarios, slowest first:"
    )
    for duration, name, phases in rows:
        parts = ", ".join(f"{k} {float(v):.1f}" for k, v in phases.items() if v is not None)
        terminalreporter.write_line(f"  {duration:6.1f}s  {name}  ({parts})")
