"""Render reports from recorded histories (passing and failing) and check the HTML's structure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.report import build
from harness.report.build import summary_lines
from harness.report.claims import CLAIMS
from tests.report import recorded
from tests.report.htmlparse import ReportParser, parse, table_with

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


SKIPPED = [
    {
        "scenario": "docker_smoke",
        "test": "scenarios/test_docker_smoke.py::test_docker_smoke",
        "reason": "Docker is not available: no engine",
    }
]


@pytest.fixture(scope="module")
def failing(failing_dir: Path) -> tuple[dict, ReportParser, str]:
    built = build(failing_dir, run=RUN, skipped=SKIPPED)
    html = built.index_html.read_text("utf-8")
    return built.doc, parse(html), html


def test_passing_run_reads_bulletproof_with_the_defect_caught(passing: tuple) -> None:
    doc, page, html = passing
    assert doc["verdict"] == "pass"
    assert doc["counts"] == {"pass": 2, "fail": 0, "unknown": 0, "caught": 1, "missed": 0}
    assert doc["mutations"] == {"caught": 1, "total": 1, "missed": []}
    assert "BULLETPROOF" in "".join(page.text)
    assert '<div class="banner pass" id="verdict">' in html
    table = table_with(page, "scenario", "defect", "must fail")
    assert table.rows[1:] == [
        [
            "idempotency__defect_plain-insert",
            "plain-insert",
            "no_duplicate_effects",
            "✗ fail",
            "no_duplicate_effects",
            "✓ checker caught the defect",
        ]
    ]
    assert "Mutation score: 1 of 1 deliberate defects caught" in "".join(page.text)


def test_banner_leads_with_failures_losses_and_skips(failing: tuple) -> None:
    doc, page, html = failing
    assert doc["verdict"] == "fail"
    banner = html[html.index('id="verdict"') : html.index("</nav>")]
    # failing first, each linked to its section; the lost jobs linked to their stories
    assert banner.index("network_cut") < banner.index("database_drop")
    assert '<a href="#s-network_cut"><b>network_cut</b></a>' in banner
    assert 'href="#job-network_cut-206"' in banner and 'href="#job-network_cut-207"' in banner
    # whole-run figures: lost of acknowledged, duplicated executions, mutation score, claims
    totals = doc["totals"]
    assert (totals["lost"], totals["acknowledged"]) == (2, 24)
    assert "<b>2 of 24</b>acknowledged jobs lost (whole run)" in banner
    assert f"<b>{totals['duplicated_executions']}</b>duplicated executions" in banner
    assert "<b>1 of 1</b>defects caught (mutation score)" in banner
    assert "claims proven;" in banner
    # the skipped scenario is listed with its reason, not silently dropped
    assert "docker_smoke</b>: Docker is not available: no engine" in banner
    assert doc["skipped"] == SKIPPED
    assert table_with(page, "scenario", "test", "reason").rows[1][2] == SKIPPED[0]["reason"]
    # scenario sections: failing first
    order = [i[2:] for i in page.ids if i.startswith("s-")]
    assert order.index("network_cut") < order.index("database_drop") < order.index("worker_crash")


def test_verdict_table_is_scenario_by_invariant(failing: tuple) -> None:
    _, page, _ = failing
    table = table_with(page, "scenario", "verdict")
    header = table.rows[0]
    assert header[-1] == "duration"
    assert set(header[2:-1]) == {
        "queue accounting",
        "no duplicate effects",
        "retry schedule",
        "attempt count",
        "recovery latency",
    }
    cells = {r[0]: dict(zip(header, r, strict=True)) for r in table.rows[1:]}
    assert set(cells) == {"backoff_schedule", "database_drop", "network_cut", "worker_crash"}
    assert cells["network_cut"]["verdict"] == "✗ fail"
    assert cells["network_cut"]["queue accounting"] == "✗ fail"
    assert cells["network_cut"]["retry schedule"] == "✗ fail"
    assert cells["network_cut"]["no duplicate effects"] == "✓ pass"
    assert cells["network_cut"]["recovery latency"] == "·"
    assert cells["database_drop"]["verdict"] == "? unknown"


def test_claims_are_honest(failing: tuple) -> None:
    doc, page, _ = failing
    rows = {
        rid: row
        for t in page.tables
        for rid, row in zip(t.row_ids, t.rows, strict=True)
        if rid and rid.startswith("claim-")
    }
    assert set(rows) == {f"claim-{c.key}" for c in CLAIMS}
    claims = {c["key"]: c for c in doc["claims"]}
    assert claims["queueing_lock_periodic"]["status"] == "untested"
    assert "not tested in this run" in rows["claim-queueing_lock_periodic"][0]
    # a failing figure leads with the failure
    assert claims["no_loss_network"]["status"] == "fail"
    assert claims["no_loss_network"]["evidence"][0]["figure"].startswith(
        "jobs 206, 207 lost, 2 of 8 acknowledged"
    )
    assert claims["no_loss_worker_crash"]["status"] == "pass"
    assert claims["no_loss_worker_crash"]["evidence"][0]["figure"].startswith("12 acknowledged")
    # refuted as stated, with the count per scenario, next to what is proven instead
    dup = claims["no_duplicate_execution"]
    assert dup["status"] == "fail"
    assert [(e["scenario"], e["figure"]) for e in dup["evidence"]] == [
        ("worker_crash", "2 duplicated executions (jobs 106, 107)")
    ]
    assert dup["see_also"] == ["no_duplicate_effects", "complete_or_fail", "justified_reruns"]
    # proven only when every scenario it names ran: complete_or_fail names nine
    complete = claims["complete_or_fail"]
    assert complete["status"] == "fail"  # network_cut lost jobs
    assert "system_restart" in complete["missing"]
    recovery = claims["stalled_recovery"]
    assert recovery["status"] == "unknown"  # passed in worker_crash; stalled_recovery not run
    assert recovery["missing"] == ["stalled_recovery"]
    assert "budget 2.30 s" in recovery["evidence"][0]["figure"]
    # a mutation run is never evidence for a claim
    assert all("__defect_" not in ev["scenario"] for c in doc["claims"] for ev in c["evidence"])


def test_lost_job_story_is_open_and_explains_the_loss(failing: tuple) -> None:
    _, _, html = failing
    anchor = "job-network_cut-206"
    start = html.index(f'id="{anchor}"')
    opening = html[html.rindex("<details", 0, start) : html.index(">", start) + 1]
    assert " open>" in opening and "lost" in opening
    body = html[start : html.index("</details>", start)]
    text = re.sub(r"<[^>]+>", " ", body)
    # chronological, relative times, submission, the run, the faults, log lines from processes
    times = [float(t) for t in re.findall(r"t\+(-?\d+\.\d{3}) s", text)]
    assert times == sorted(times) and len(times) >= 6
    assert "submitted through the API" in text
    assert "run 1 started" in text and "never ended" in text
    assert "fault starts: reset_peer on jokeapi" in text
    assert "Job 206: Fetching joke (attempt 1/5)" in text  # w1's log
    assert "deferred job 206" in text  # the API's log
    assert "w1 started (start #1)" in text
    assert "w1 exited on an error: ERROR system.worker: worker stopped (db)" in text
    assert 'href="logs/network_cut/w1.log"' in body
    assert "final state in the database" in text
    # a job that went well has a closed story
    ok = html[html.rindex("<details", 0, html.index('id="job-network_cut-200"')) :]
    assert ok.startswith('<details class="story ok" id="job-network_cut-200">')


def test_a_process_that_died_shows_its_last_errors_inline(failing: tuple) -> None:
    _, _, html = failing
    section = html[html.index('id="s-network_cut"') : html.index('id="s-database_drop"')]
    assert "w1 exited unexpectedly" in section
    assert "DEFECT no-db-supervision: exiting" in section
    assert "api exited unexpectedly" not in section
    assert 'logs: <a href="logs/network_cut/api.log">api</a>' in section


def test_every_job_link_has_a_target_and_ids_are_unique(failing: tuple) -> None:
    _, page, html = failing
    internal = [h[1:] for h in page.hrefs if h.startswith("#")]
    missing = sorted(set(internal) - set(page.ids))
    assert not missing, f"links without a target: {missing}"
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    assert "job-network_cut-206" in internal and "job-worker_crash-106" in internal
    # job ids in the checker's evidence are links too
    assert 'job <a href="#job-network_cut-206">206</a>' in html
    # the timeline's job labels link to the stories
    assert 'xlink:href="#job-network_cut-206"' in html or 'href="#job-network_cut-206"' in html


def test_glossary_beside_the_accounting(failing: tuple) -> None:
    _, _, html = failing
    section = html[html.index('id="accounting"') : html.index('id="trends"')]
    for term in ("acknowledged", "lost", "unknown", "recovered", "unexpected"):
        assert f"<dt>{term}" in section
    assert "<dt>duplicated execution</dt>" in section and "<dt>duplicate effect</dt>" in section


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
    assert "default-src 'none'" in html  # the page may make no request of its own
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
    assert recorded.HOSTILE_LOG not in html  # a log line, shown inline: escaped too
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;x()&lt;/script&gt;" in html
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
        "known_failures",
        "scenarios",
        "claims",
        "skipped",
        "trends",
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
        "expected_failing",
        "phases",
        "calibration",
        "logs",
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


def test_trends_appear_from_the_second_run_on(tmp_path: Path) -> None:
    recorded.write_passing(tmp_path)
    first = build(tmp_path, run={**RUN, "started_at": 1.0}).index_html.read_text("utf-8")
    assert "This is the first run recorded in" in first
    recorded.write_failing(tmp_path)
    built = build(tmp_path, run={**RUN, "started_at": 2.0})
    page = parse(built.index_html.read_text("utf-8"))
    rows = {r[0]: r for r in table_with(page, "scenario", "passed").rows[1:]}
    assert rows["worker_crash"][1:3] == ["2 of 2", "✓ ✓"]
    assert rows["network_cut"][1:3] == ["0 of 1", "✗"]
    assert built.doc["trends"]["window"] == 2


def test_a_target_run_with_known_failures_reads_not_bulletproof(tmp_path: Path) -> None:
    # the run is green (it matches the target's declaration) but the page must not call the
    # user's app bulletproof: it leads with each guarantee the app breaks, and the terminal too
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    lost = {"name": "queue_accounting", "status": "fail", "summary": "job 7 lost"}
    entries = {
        "app__worker_crash": {
            "invariants": [lost, {"name": "job_effects", "status": "pass", "summary": "ok"}],
            "expected_verdict": "fail",
            "expected_failing": ["queue_accounting"],
            "accounting": {"acknowledged": 8, "lost": 1, "lost_ids": [7]},
        },
        "app__upstream_cut": {
            "invariants": [{"name": "queue_accounting", "status": "pass", "summary": "ok"}],
            "accounting": {"acknowledged": 6, "lost": 0},
        },
    }
    for name, entry in entries.items():
        (results_dir / f"{name}.json").write_text(json.dumps({"scenario": name, **entry}))
    built = build(tmp_path, run=RUN)
    html = built.index_html.read_text("utf-8")
    text = " ".join("".join(parse(html).text).split())
    assert built.doc["verdict"] == "pass"
    assert '<div class="banner fail" id="verdict">' in html
    assert "NOT BULLETPROOF" in text and "1 of 2 scenario(s) break a guarantee" in text
    assert (
        '✗ known failure</span> <a href="#s-app__worker_crash"><b>app__worker_crash</b></a>: '
        "queue_accounting: job "
    ) in html
    assert "<b>1 of 14</b>acknowledged jobs lost" in html
    assert 'id="mutations"' not in html  # no planted defect in this run
    lines = summary_lines(built)
    assert lines[0].endswith("known failures still failing 1/1")
    assert "  known   app__worker_crash: queue_accounting: job 7 lost" in lines


def test_a_long_run_moves_what_went_as_expected_to_pages_of_their_own(
    failing_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a 75-run soak on one page was 66 MB; past INLINE_SCENARIOS the page is split
    import shutil

    from harness.report import render

    whole = parse(build(failing_dir, run=RUN).index_html.read_text("utf-8"))
    reports = tmp_path / "split"
    shutil.copytree(failing_dir, reports)
    monkeypatch.setattr(render, "INLINE_SCENARIOS", 2)
    built = build(reports, run=RUN)
    html = built.index_html.read_text("utf-8")
    index = parse(html)
    pages = {p.name: p.read_text("utf-8") for p in (reports / "pages").glob("*.html")}
    # passing scenarios and the caught defect get pages; the failing and undecided stay whole
    assert sorted(pages) == [
        "backoff_schedule.html",
        "idempotency__defect_plain-insert.html",
        "worker_crash.html",
    ]
    assert "network_cut.html" not in pages and "database_drop.html" not in pages
    svgs = {str(s.get("id")) for s in index.svgs}
    assert "chart-timeline-network_cut" in svgs and "chart-timeline-worker_crash" not in svgs
    assert 'href="pages/worker_crash.html"' in html
    assert {"s-worker_crash", "s-network_cut"} <= set(index.ids)  # every section keeps its id
    # every link resolves: in the index, into a page, from a page back to the index or a file
    for href in index.hrefs:
        if href.startswith("#"):
            assert href[1:] in index.ids, href
        elif href.startswith("pages/"):
            name, _, anchor = href[len("pages/") :].partition("#")
            assert name in pages, href
            assert not anchor or anchor in parse(pages[name]).ids, href
    for name, text in pages.items():
        page = parse(text)
        assert any(str(s.get("id")).startswith("chart-timeline-") for s in page.svgs), name
        assert "default-src 'none'" in text and "script" not in page.tags
        for href in page.hrefs:
            if href.startswith("#"):
                assert href[1:] in page.ids, (name, href)
            elif href.startswith("../index.html#"):
                assert href.split("#", 1)[1] in index.ids, (name, href)
            else:
                assert href.startswith("../") and href[3:] in whole.hrefs, (name, href)
    # the next report with every scenario inline leaves no stale page behind
    monkeypatch.setattr(render, "INLINE_SCENARIOS", 30)
    build(reports, run=RUN)
    assert list((reports / "pages").glob("*.html")) == []
