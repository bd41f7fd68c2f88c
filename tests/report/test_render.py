"""Render reports from recorded histories (passing and failing) and check the HTML's structure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.report import build
from harness.report.claims import CLAIMS
from tests.report import recorded
from tests.report.htmlparse import ReportParser, parse, table_after_header

RUN = {"seed": recorded.SEED, "backend": "local", "profile": "fast"}


@pytest.fixture(scope="module")
def passing(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, ReportParser, str]:
    reports = tmp_path_factory.mktemp("passing")
    recorded.write_passing(reports)
    built = build(reports, run=RUN)
    html = built.index_html.read_text("utf-8")
    return built.doc, parse(html), html


@pytest.fixture(scope="module")
def failing_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reports = tmp_path_factory.mktemp("failing")
    recorded.write_failing(reports)
    return reports


@pytest.fixture(scope="module")
def failing(failing_dir: Path) -> tuple[dict, ReportParser, str]:
    built = build(failing_dir, run=RUN)
    html = built.index_html.read_text("utf-8")
    return built.doc, parse(html), html


def test_passing_run_reads_bulletproof_with_the_defect_caught(passing: tuple) -> None:
    doc, page, _ = passing
    assert doc["verdict"] == "pass"
    assert doc["counts"] == {"pass": 2, "fail": 0, "unknown": 0, "caught": 1, "missed": 0}
    assert "BULLETPROOF" in "".join(page.text)
    banner_classes = [c for c in page.classes if c in ("pass", "fail", "unknown")]
    assert banner_classes[0] == "pass"
    mutations = table_after_header(page, "scenario")  # the verdict table comes first
    assert [r[0] for r in mutations.rows[1:]] == ["backoff_schedule", "worker_crash"]
    mutation_rows = [r for t in page.tables for r in t.rows if r and r[-1].startswith("checker")]
    assert mutation_rows == [
        [
            "idempotency__defect_plain-insert",
            "plain-insert",
            "no_duplicate_effects",
            "fail",
            "no_duplicate_effects",
            "checker caught the defect",
        ]
    ]


def test_verdict_table_is_scenario_by_invariant(failing: tuple) -> None:
    doc, page, _ = failing
    table = table_after_header(page, "scenario")
    header = table.rows[0]
    assert header[:2] == ["scenario", "verdict"] and header[-1] == "duration"
    assert set(header[2:-1]) == {
        "queue accounting",
        "no duplicate effects",
        "retry schedule",
        "attempt count",
        "recovery latency",
    }
    rows = {r[0]: r for r in table.rows[1:]}
    cells = {name: dict(zip(header, row, strict=True)) for name, row in rows.items()}
    assert set(rows) == {"backoff_schedule", "database_drop", "network_cut", "worker_crash"}
    assert rows["network_cut"][1] == "fail"
    assert [cells["network_cut"][k] for k in header[2:-1]] == [
        {"queue accounting": "fail", "no duplicate effects": "pass", "retry schedule": "fail"}.get(
            k, "pass" if k != "recovery latency" else "·"
        )
        for k in header[2:-1]
    ]
    assert rows["database_drop"][1] == "unknown"
    assert rows["worker_crash"][1:3] == ["pass", "pass"]
    assert doc["verdict"] == "fail"
    assert "NOT BULLETPROOF" in "".join(page.text)


def test_claims_table_lists_every_seed_claim_untested_ones_included(failing: tuple) -> None:
    doc, page, _ = failing
    rows = {
        rid: row
        for t in page.tables
        for rid, row in zip(t.row_ids, t.rows, strict=True)
        if rid and rid.startswith("claim-")
    }
    assert set(rows) == {f"claim-{c.key}" for c in CLAIMS}
    assert rows["claim-queueing_lock_periodic"][0] == "untested"
    assert rows["claim-no_loss_network"][0] == "fail"
    assert rows["claim-no_loss_worker_crash"][0] == "pass"
    assert (
        "12 acknowledged: 12 succeeded, 0 failed explicitly, 0 lost"
        in (rows["claim-no_loss_worker_crash"][3])
    )
    # each invariant's evidence shows its own kind of figure
    automatic = next(c for c in doc["claims"] if c["key"] == "no_loss_worker_crash")
    assert automatic["evidence"][0]["figure"].startswith("12 acknowledged")
    recovery = next(c for c in doc["claims"] if c["key"] == "stalled_recovery")
    figure = recovery["evidence"][0]["figure"]
    assert "recovered in" in figure and "budget 2.30 s" in figure
    # a mutation run is never evidence for a claim
    assert all("__defect_" not in ev["scenario"] for c in doc["claims"] for ev in c["evidence"])


def test_lost_and_duplicated_ids_link_to_their_event_trails(failing: tuple) -> None:
    _, page, _ = failing
    internal = [h[1:] for h in page.hrefs if h.startswith("#")]
    missing = sorted(set(internal) - set(page.ids))
    assert not missing, f"links without a target: {missing}"
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    assert "job-network_cut-206" in internal and "job-network_cut-207" in internal
    assert "job-worker_crash-106" in internal  # duplicated execution
    trail = next(
        t for t in page.tables if any("206" in c and "started" in c for r in t.rows for c in r)
    )
    kinds = [r[1] for r in trail.rows[1:]]
    assert kinds[:3] == ["submit", "job_event", "job_event"] and kinds[-1] == "job"


def test_charts_are_inline_svg_per_scenario(failing: tuple) -> None:
    _, page, html = failing
    ids = {str(s.get("id")) for s in page.svgs}
    for name in ("worker_crash", "network_cut", "backoff_schedule"):
        assert f"chart-timeline-{name}" in ids
    assert {"chart-backoff-network_cut", "chart-backoff-backoff_schedule"} <= ids
    assert "chart-recovery-worker_crash" in ids
    # /health samples get a strip under the network_cut timeline, and only there
    charts = re.findall(r'<svg id="chart-timeline-([^"]+)".*?</svg>', html, flags=re.S)
    starts = [m.start() for m in re.finditer(r'<svg id="chart-timeline-', html)]
    bodies = [html[i : html.index("</svg>", i)] for i in starts]
    with_health = [name for name, body in zip(charts, bodies, strict=True) if "/health" in body]
    assert with_health == ["network_cut"]
    assert "chart-timeline-database_drop" not in ids  # no history: no chart, and a note
    assert "History not available" in html
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html


def test_page_is_self_contained(failing: tuple) -> None:
    _, page, html = failing
    assert page.srcs == []
    assert "link" not in page.tags and "script" not in page.tags and "iframe" not in page.tags
    external = [h for h in page.hrefs if "://" in h]
    assert external == []
    assert "@import" not in html and "url(" not in html.replace("url(#", "")


def test_hostile_outside_text_is_escaped(failing: tuple) -> None:
    _, page, html = failing
    assert "script" not in page.tags and "img" not in page.tags
    assert recorded.HOSTILE_JOKE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    # the parser sees the hostile text as text, intact
    text = "".join(page.text)
    assert "<script>alert(1)</script>" in text
    assert '<img src=x onerror="alert(2)">' in text


def test_results_json_has_the_documented_keys(failing: tuple, failing_dir: Path) -> None:
    doc, _, _ = failing
    on_disk = json.loads((failing_dir / "results.json").read_text("utf-8"))
    assert on_disk == json.loads(json.dumps(doc, default=str))
    assert set(on_disk) == {
        "schema_version",
        "run",
        "verdict",
        "counts",
        "totals",
        "mutations",
        "scenarios",
        "claims",
    }
    assert set(on_disk["run"]) >= {
        "seed",
        "backend",
        "profile",
        "started_at",
        "finished_at",
        "git_commit",
        "versions",
        "command",
    }
    assert on_disk["run"]["versions"]["toxiproxy"] == "embedded"
    keys = {
        "scenario",
        "title",
        "seed",
        "verdict",
        "expected_verdict",
        "outcome",
        "defect",
        "error",
        "duration",
        "history",
        "replay",
        "invariants",
        "accounting",
        "retry_delays",
        "recoveries",
        "claims",
    }
    for s in on_disk["scenarios"]:
        assert keys <= set(s), s["scenario"]
        assert s["replay"].startswith("pytest scenarios/test_")
    drop = next(s for s in on_disk["scenarios"] if s["scenario"] == "database_drop")
    assert drop["verdict"] == "unknown" and drop["error"] == recorded.HOSTILE_ERROR


def test_math_and_markup_in_chart_labels_stay_literal(tmp_path: Path) -> None:
    recorded.write_passing(tmp_path)
    path = tmp_path / "histories" / "worker_crash.jsonl"
    lines = path.read_text("utf-8").splitlines()
    fault = {
        "kind": "fault",
        "fault_id": 9,
        "fault_kind": "latency",
        "target": "$x^2$ <b>",
        "start": recorded.T0 + 0.5,
        "end": recorded.T0 + 0.9,
        "detail": {},
    }
    path.write_text("\n".join([*lines, json.dumps(fault), "not json {"]) + "\n", "utf-8")
    html = build(tmp_path).index_html.read_text("utf-8")
    assert "latency $x^2$ &lt;b&gt;" in html
    assert "1 unreadable line(s) in the history were skipped" in html
