"""Render histories recorded from real scenario runs (``pytest scenarios --seed 11``): three
passing scenarios and one failing mutation run (stalled-job recovery disabled)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.checker import runs_by_job
from harness.history import read_history
from harness.report import build
from harness.report.history import load_history
from tests.report.htmlparse import parse, table_with

DATA = Path(__file__).parent / "data" / "recorded-seed11"
MUTANT = "worker_crash__defect_no_stall_recovery"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    reports = tmp_path_factory.mktemp("reports")
    shutil.copytree(DATA, reports, dirs_exist_ok=True)
    built = build(reports)
    return reports, built.doc, built.index_html.read_text("utf-8")


def test_verdicts_from_real_runs(rendered: tuple[Path, dict, str]) -> None:
    _, doc, html = rendered
    page = parse(html)
    # Recorded before results carried expected_failing: a failure is not a catch without it.
    assert doc["verdict"] == "fail"
    assert doc["counts"]["missed"] == 1 and doc["counts"]["pass"] == 3
    (miss,) = doc["mutations"]["missed"]
    assert miss["scenario"] == MUTANT and "names no invariant" in miss["reason"]
    table = table_with(page, "scenario", "verdict")
    assert {r[0]: r[1] for r in table.rows[1:]} == {
        "graceful_shutdown": "✓ pass",
        "stalled_recovery": "✓ pass",
        "worker_crash": "✓ pass",
    }
    mutation = table_with(page, "scenario", "defect").rows[1]
    assert mutation[0] == MUTANT and mutation[3] == "✗ fail"
    assert mutation[-1].startswith("✗ DEFECT NOT DETECTED")
    assert {"queue_accounting", "recovery_latency"} <= set(mutation[4].split(", "))


def test_the_report_draws_the_runs_the_checker_judged() -> None:
    for path in sorted((DATA / "histories").glob("*.jsonl")):
        loaded = load_history(path)
        assert loaded is not None and loaded.bad_lines == 0
        assert loaded.runs == runs_by_job(read_history(path)), path.name


def test_every_scenario_has_a_timeline_and_lost_jobs_have_open_trails(
    rendered: tuple[Path, dict, str],
) -> None:
    reports, doc, html = rendered
    page = parse(html)
    svg_ids = {str(s.get("id")) for s in page.svgs}
    for s in doc["scenarios"]:
        assert f"chart-timeline-{s['scenario']}" in svg_ids
    mutant = json.loads((reports / "results" / f"{MUTANT}.json").read_text("utf-8"))
    lost = mutant["scenarios"][0]["accounting"]["lost_ids"]
    assert lost, "the recorded mutation run lost jobs"
    for job_id in lost:
        anchor = f"job-{MUTANT}-{job_id}"
        assert f"#{anchor}" in page.hrefs and anchor in page.ids
        assert f'<details class="story lost" id="{anchor}" open>' in html
    internal = {h[1:] for h in page.hrefs if h.startswith("#")}
    assert internal <= set(page.ids)


def test_claim_figures_come_from_the_measurements(rendered: tuple[Path, dict, str]) -> None:
    reports, doc, _ = rendered
    recoveries = json.loads((reports / "results" / "stalled_recovery.json").read_text("utf-8"))[
        "scenarios"
    ][0]["recoveries"]
    worst = max(recoveries, key=lambda r: r["latency"])
    claim = next(c for c in doc["claims"] if c["key"] == "stalled_recovery")
    assert claim["status"] == "pass"
    figures = [ev["figure"] for ev in claim["evidence"] if ev["scenario"] == "stalled_recovery"]
    assert figures == [
        f"slowest of {len(recoveries)}: {worst['what']} recovered in {worst['latency']:.2f} s, "
        f"budget {worst['budget']:.2f} s"
    ]
    untested = {c["key"] for c in doc["claims"] if c["status"] == "untested"}
    assert {"no_loss_network", "backoff_formula", "thundering_herd"} <= untested
