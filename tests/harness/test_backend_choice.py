"""Backend choice: an unusable backend or a bad option is one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.backends import get_backend_class
from harness.backends.base import BackendUnavailable
from harness.backends.local import REPO_ROOT, LocalBackend

NO_PG_CONFTEST = textwrap.dedent(
    """
    import harness.backends.local as local
    from harness.postgres import INSTALL_HINT, PostgresError

    def _missing():
        raise PostgresError(INSTALL_HINT)

    local.find_bindir = _missing  # as on a machine without PostgreSQL's server binaries
    """
)

NEEDS_STACK = "def test_needs_a_stack(stack):\n    assert stack.api_url\n"


def _run_inner(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(NEEDS_STACK)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "-p", "harness.pytest_plugin", "-p", "harness.fixtures",
         "--reports-dir", str(tmp_path / "reports"), *args, str(tmp_path / "test_inner.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


def test_unknown_backend_name() -> None:
    with pytest.raises(BackendUnavailable, match="unknown backend 'kube'; choose one of local"):
        get_backend_class("kube")
    assert get_backend_class("local") is LocalBackend


def test_unknown_backend_option_is_one_line(tmp_path: Path) -> None:
    result = _run_inner(tmp_path, "--backend", "kube")
    assert result.returncode == 4
    assert "--backend: unknown backend 'kube'; choose one of local, docker" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_no_postgres_binaries_is_one_message_naming_both_ways(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(NO_PG_CONFTEST)
    env_docker = get_backend_class("docker")
    try:
        env_docker.check_available()
        docker_here = True
    except (BackendUnavailable, ImportError):
        docker_here = False
    result = _run_inner(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "bulletproof:" in line]
    assert len(lines) == 1, output
    assert "apt-get install postgresql-15" in lines[0]
    if docker_here:
        assert "--backend docker" in lines[0]
    else:
        assert "no backend can run here" in lines[0] and "docker.io" in lines[0]
