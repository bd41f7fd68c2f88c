"""Schemathesis against the real API: every check, the stateful phase too, fixed seed.

The API runs as ``python -m system api`` (with its in-process worker) on loopback, on a real
PostgreSQL, the joke API being the harness's fake. Schemathesis's command line drives it: it
generates examples, coverage, fuzzed and stateful cases (the link from ``POST
/tasks/fetch-joke``'s 202 to ``GET /jobs/{job_id}`` makes the stateful phase possible) and
fails on any undeclared status, server error or schema mismatch.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import ApiServer  # tests/system/conftest.py

pytestmark = pytest.mark.integration

#: The fast profile bounds each database call by 2 s; on a loaded 2-core machine one call can
#: take longer and the API rightly answers 503, which Schemathesis counts as a server error.
#: Production's bound (5 s) keeps this test about the API, not about the machine's load.
API_ENV = {"DB_POOL_TIMEOUT": "30s"}  # read by the module_api fixture
SEED = 11
MAX_EXAMPLES = 30  # per operation and phase: the run stays well under a minute


def test_schemathesis_all_checks_and_stateful_pass(module_api: ApiServer, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{module_api.url}/openapi.json",
        "--checks=all",
        "--phases=examples,coverage,fuzzing,stateful",
        f"--seed={SEED}",
        f"--max-examples={MAX_EXAMPLES}",
        "--generation-database=none",
        "--workers=1",
        "--request-timeout=10",
        "--no-color",
        "--report=junit",
        f"--report-dir={tmp_path}",
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False
    )
    output = run.stdout + run.stderr
    print(output)  # the figures (cases per phase) show with pytest -s or on failure
    assert run.returncode == 0, output[-6000:]
    assert re.search(r"Stateful", output), output[-3000:]  # the stateful phase ran
    # no request crashed the app (the worker may log tracebacks of jobs failing on purpose)
    assert "Exception in ASGI application" not in module_api.proc.output()
    assert module_api.proc.is_running()
