"""A ScenarioRun's result file and verdict handling, on a stand-in stack (no services)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.checker import FAIL, PASS, UNKNOWN, Verdict
from harness.profiles import get_profile
from harness.scenario import ScenarioRun


def _run(tmp_path: Path, name: str, **kwargs: Any) -> ScenarioRun:
    stack = SimpleNamespace(
        settings=get_profile("fast"),
        defects=[],
        toxiproxy=None,
        timings={"total": 1.0},
        api_url="http://127.0.0.1:9",
        postgres=SimpleNamespace(server_version=lambda: "15.0"),
    )
    return ScenarioRun(
        name=name,
        title="T",
        seed=42,
        stack=stack,
        reports_dir=tmp_path,  # type: ignore[arg-type]
        backend="local",
        claims=["c"],
        **kwargs,
    )


def test_a_passing_scenario_writes_its_result(tmp_path: Path) -> None:
    run = _run(tmp_path, "worker_crash")
    accounting = Verdict("queue_accounting", PASS, "ok", {"acknowledged": 3, "lost": 0})
    entry = run._write_result([accounting])
    run._judge([accounting])
    doc = json.loads((tmp_path / "results" / "worker_crash.json").read_text())
    assert doc["verdict"] == "pass" and doc["scenarios"][0] == entry
    assert entry["accounting"] == {"acknowledged": 3, "lost": 0}
    assert entry["replay"] == "pytest scenarios/test_worker_crash.py --seed 42"
    assert entry["history"] == "histories/worker_crash.jsonl"
    assert (tmp_path / "histories" / "worker_crash.jsonl").exists()
    run.close(None)


@pytest.mark.parametrize("status", [FAIL, UNKNOWN])
def test_a_failed_or_unknown_verdict_fails_the_test_naming_the_evidence(
    tmp_path: Path, status: str
) -> None:
    run = _run(tmp_path, "worker_crash")
    bad = Verdict("recovery_latency", status, "1 of 1 recoveries failed", {}, ["job 7 never ran"])  # type: ignore[arg-type]
    with pytest.raises(pytest.fail.Exception) as failed:
        run._judge([bad])
    text = str(failed.value)
    assert "recovery_latency" in text and "job 7 never ran" in text and "--seed 42" in text
    run.close(None)


def test_a_mutation_passes_only_when_the_named_invariant_fails(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        "idempotency__defect_plain_insert",
        expect="fail",
        expect_failing=["no_duplicate_effects"],
    )
    caught = Verdict(
        "no_duplicate_effects", FAIL, "2 duplicate rows", {}, ["joke a stored 3 times"]
    )
    run._judge([caught])  # caught: no exception
    other = Verdict("queue_accounting", FAIL, "lost", {}, [])
    with pytest.raises(pytest.fail.Exception, match="MISSED"):
        run._judge([other, Verdict("no_duplicate_effects", PASS, "fine")])
    entry = run._write_result([caught])
    assert entry["expected_verdict"] == "fail" and entry["defect"] == "plain_insert"
    run.close(None)


def test_a_broken_scenario_leaves_an_error_result(tmp_path: Path) -> None:
    run = _run(tmp_path, "network_cut")
    run.close(RuntimeError("proxy vanished\nmore"))
    (entry,) = json.loads((tmp_path / "results" / "network_cut.json").read_text())["scenarios"]
    assert entry["verdict"] == "unknown" and entry["error"] == "RuntimeError: proxy vanished"
