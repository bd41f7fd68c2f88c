"""The pytest plugin end to end: real pytest subprocesses in a scratch project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.report import recorded

ROOT = Path(__file__).resolve().parents[2]

ALPHA = """
import random
from pathlib import Path

from tests.report import recorded


def test_alpha(request):
    recorded.worker_crash(Path(request.config.getoption("--reports-dir")), random.Random(1))
"""
BETA = """
def test_beta():
    raise RuntimeError("fixture exploded: <script>alert(3)</script>")
"""
GAMMA = """
import pytest


def test_gamma():
    pytest.skip("Docker is not available: no engine")
"""
UNIT = """
def test_unit():
    assert 1 + 1 == 2
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n", "utf-8")
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["harness.pytest_plugin", "harness.report.plugin"]\n', "utf-8"
    )
    for folder, name, body in (
        ("scenarios", "test_alpha.py", ALPHA),
        ("scenarios", "test_beta.py", BETA),
        ("scenarios", "test_gamma.py", GAMMA),
        ("tests", "test_unit.py", UNIT),
    ):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_text(textwrap.dedent(body), "utf-8")
    return tmp_path


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("BULLETPROOF_REPORTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_single_scenario_run_writes_junit_results_and_html(project: Path) -> None:
    done = _pytest(project, "scenarios/test_alpha.py", "--seed", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    reports = project / "reports"
    assert (reports / "junit.xml").is_file()
    doc = json.loads((reports / "results.json").read_text("utf-8"))
    assert [s["scenario"] for s in doc["scenarios"]] == ["worker_crash"]
    assert doc["verdict"] == "pass"
    assert doc["run"]["seed"] == 5 and doc["run"]["command"] == (
        "pytest scenarios/test_alpha.py --seed 5"
    )
    assert "bulletproof reliability report" in done.stdout
    assert f"report: {(reports / 'index.html').resolve()}" in done.stdout
    assert "BULLETPROOF" in (reports / "index.html").read_text("utf-8")


def test_generic_scenarios_against_a_target_write_the_report_too(project: Path) -> None:
    # `nox -s chaos -- --target app:target` runs harness/target/scenarios/, not scenarios/:
    # before, that run wrote result files but neither index.html nor the terminal summary
    generic = project / "harness" / "target" / "scenarios"
    generic.mkdir(parents=True)
    (generic / "test_alpha.py").write_text(textwrap.dedent(ALPHA), "utf-8")
    done = _pytest(project, "harness/target/scenarios", "--seed", "7")
    assert done.returncode == 0, done.stdout + done.stderr
    reports = project / "reports"
    doc = json.loads((reports / "results.json").read_text("utf-8"))
    assert [s["scenario"] for s in doc["scenarios"]] == ["worker_crash"]
    assert (reports / "junit.xml").is_file()
    assert "bulletproof reliability report" in done.stdout
    assert f"report: {(reports / 'index.html').resolve()}" in done.stdout


def test_failed_scenarios_still_get_a_report_and_stale_results_are_left_out(
    project: Path,
) -> None:
    results = project / "reports" / "results"
    results.mkdir(parents=True)
    stale = results / "stale.json"
    stale.write_text(json.dumps({"scenario": "stale", "verdict": "fail"}), "utf-8")
    os.utime(stale, (1_000_000, 1_000_000))
    done = _pytest(project, "scenarios", "--junitxml=reports/custom.xml")
    assert done.returncode == 1, done.stdout + done.stderr
    assert (project / "reports" / "custom.xml").is_file()
    assert not (project / "reports" / "junit.xml").exists()
    doc = json.loads((project / "reports" / "results.json").read_text("utf-8"))
    by = {s["scenario"]: s for s in doc["scenarios"]}
    assert set(by) == {"worker_crash", "beta"}
    assert by["beta"]["verdict"] == "unknown"
    assert "fixture exploded" in by["beta"]["error"]
    assert doc["verdict"] == "unknown"
    gamma = {
        "scenario": "gamma",
        "test": "scenarios/test_gamma.py::test_gamma",
        "reason": "Docker is not available: no engine",
    }
    assert doc["skipped"] == [gamma]
    assert "skipped gamma: Docker is not available: no engine" in done.stdout
    html = (project / "reports" / "index.html").read_text("utf-8")
    assert "<script>alert(3)" not in html and "&lt;script&gt;alert(3)" in html
    assert (
        "unknown beta: scenarios/test_beta.py::test_beta (call): RuntimeError: fixture exploded:"
        in done.stdout
    )
    # offline, the failed test comes back from junit.xml
    (project / "reports" / "custom.xml").rename(project / "reports" / "junit.xml")
    (project / "reports" / "results.json").unlink()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    offline = subprocess.run(
        [sys.executable, "-m", "harness.report"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert offline.returncode == 1, offline.stderr
    again = json.loads((project / "reports" / "results.json").read_text("utf-8"))
    beta = next(s for s in again["scenarios"] if s["scenario"] == "beta")
    assert beta["verdict"] == "unknown"
    assert "RuntimeError: fixture exploded: <script>alert(3)</script>" in beta["error"]
    assert again["skipped"] == [gamma]  # the skip comes back from junit.xml too


def test_runs_without_scenarios_write_nothing(project: Path) -> None:
    done = _pytest(project, "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (project / "reports").exists()
    assert "bulletproof reliability report" not in done.stdout


def test_offline_rerender_cli(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "harness.report", "--reports-dir", str(tmp_path)]
    empty = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert empty.returncode == 2
    assert empty.stderr.strip().splitlines() == [
        f"harness.report: no scenario results in {tmp_path / 'results'}; run scenarios first "
        "(e.g. nox -s chaos) or pass --reports-dir"
    ]
    recorded.write_passing(tmp_path)
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("bulletproof: PASS - 3 scenario(s)")
    recorded.write_failing(tmp_path)
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1 and "fail    network_cut" in bad.stdout
    assert (tmp_path / "index.html").is_file()
