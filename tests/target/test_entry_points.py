"""How users start the generic scenarios, and the one-line errors they get when they slip."""

from __future__ import annotations

import subprocess
import sys

from harness.backends.local import REPO_ROOT, python_env


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**python_env(), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_scenarios_without_a_target_are_a_usage_error() -> None:
    done = _run("-m", "pytest", "-p", "no:cacheprovider", "harness/target/scenarios")
    assert done.returncode == 4  # pytest's usage error
    assert "the generic scenarios need a target: pass --target module:attribute" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_target_that_does_not_import_is_named() -> None:
    done = _run(
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "harness/target/scenarios",
        "--target",
        "no_such_pkg.chaos:target",
    )
    assert done.returncode == 4
    assert "cannot import 'no_such_pkg.chaos'" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_python_m_harness_target_needs_the_target_first() -> None:
    for module in ("harness.target", "bulletproof.chaos"):
        done = _run("-m", module)
        assert done.returncode == 2 and done.stderr.startswith("usage: python -m bulletproof.chaos")


def test_python_m_harness_target_collects_the_seven_scenarios() -> None:
    done = _run("-m", "bulletproof.chaos", "examples.plain_app:target", "--collect-only", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line)
    assert names == [
        "test_backoff_schedule",
        "test_database_drop",
        "test_graceful_shutdown",
        "test_postgres_restart",
        "test_stalled_recovery",
        "test_upstream_cut",
        "test_worker_crash",
    ]


def test_nox_runs_every_example_mutant() -> None:
    import ast

    from examples.plain_app_bulletproof import mutants

    tree = ast.parse((REPO_ROOT / "noxfile.py").read_text())
    listed = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "EXAMPLE_MUTANTS" for t in node.targets)
    )
    assert tuple(listed) == mutants.MUTANTS
    for name in listed:
        assert getattr(mutants, name).known_failures, name


def test_known_only_keeps_the_scenarios_a_broken_target_names() -> None:
    done = _run(
        "-m",
        "harness.target",
        "examples.plain_app_bulletproof.mutants:no_stall_recovery",
        "--known-only",
        "--collect-only",
        "-q",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line)
    assert names == ["test_stalled_recovery", "test_worker_crash"]
