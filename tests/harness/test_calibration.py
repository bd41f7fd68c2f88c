"""Calibration on a real stack: it measures the system's own retry path, before any fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import budgets, probe
from harness.calibration import calibrate
from harness.client import Client
from harness.history.store import HistoryWriter
from harness.nemesis import Nemesis
from harness.stack import Stack

pytestmark = pytest.mark.integration


@pytest.mark.stack(workers=1)
def test_calibration_measures_retry_lateness_of_ordinary_jobs(stack: Stack, tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "h.jsonl")
    nemesis = Nemesis(stack, writer)
    p = stack.profile
    with Client(stack.api_url, writer) as client:
        cal = calibrate(
            dsn=stack.db_dsn,
            fail_next=lambda n: nemesis.arm_api_fault("status", status=503, count=n),
            submit=lambda n: [s.job_id for s in client.submit_many(n) if s.job_id is not None],
            timeout=budgets.pickup(p) + 5.0,
        )
    # one sample per failed request, each a retry that started after its retry time
    assert cal.samples == 5 and len(cal.job_ids) == 5
    assert 0.0 <= cal.pickup_p50 <= cal.pickup_max
    # the calibration's jobs are ordinary jobs, and they all succeeded after their retry
    statuses = probe.job_statuses(stack.db_dsn, cal.job_ids)
    assert set(statuses.values()) == {"succeeded"}
    print(f"calibration: {cal.to_dict()}")
