"""Importing the docker backend and its helpers has no side effects (no engine needed).

The reaper that removes a run's containers at exit is registered by ``DockerBackend.open``
(checked against a real engine in ``test_backend.py``), never by an import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from harness import cleanup

MODULES = (
    "harness.backends.docker",
    "harness.docker",
    "harness.docker.build",
    "harness.docker.engine",
    "harness.docker.images",
)


def test_importing_the_docker_modules_registers_nothing_and_changes_nothing(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        f"""
        import importlib, json, os
        before = dict(os.environ)
        for name in {MODULES!r}:
            importlib.import_module(name)
        from harness import cleanup
        print(json.dumps({{
            "reapers": [r.__qualname__ for r in cleanup._reapers],
            "run": cleanup._current is not None,
            "env_changed": sorted(k for k in os.environ.keys() ^ before.keys()),
        }}))
        """
    )
    unset = (cleanup.RUN_ENV, "TESTCONTAINERS_RYUK_DISABLED")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env[cleanup.ROOT_ENV] = str(tmp_path / "runs")
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"reapers": [], "run": False, "env_changed": []}
    assert not (tmp_path / "runs").exists()  # no run directory made either
