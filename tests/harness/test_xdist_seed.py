"""Scenarios run side by side (pytest-xdist, ``-n N``) still flow from the run's one seed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("xdist", reason="pytest-xdist is part of the dev extra")

CONFTEST = 'pytest_plugins = ["harness.pytest_plugin"]\n'
TESTS = """
import os
from pathlib import Path

def _record(seed, name):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    Path(os.environ["SEEDS_DIR"], name).write_text(f"{seed} {worker}")

def test_one(seed): _record(seed, "one")
def test_two(seed): _record(seed, "two")
def test_three(seed): _record(seed, "three")
def test_four(seed): _record(seed, "four")
"""


def test_every_xdist_worker_takes_the_controllers_printed_seed(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_seeds.py").write_text(TESTS)
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "-rN"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "SEEDS_DIR": str(seeds)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    printed = re.search(r"bulletproof: seed=(\d+)", done.stdout)
    assert printed, done.stdout
    recorded = [p.read_text().split() for p in sorted(seeds.iterdir())]
    assert len(recorded) == 4
    assert {seed for seed, _ in recorded} == {printed.group(1)}
    assert len({worker for _, worker in recorded}) == 2  # really two worker processes
