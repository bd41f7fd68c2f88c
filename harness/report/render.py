"""The self-contained ``index.html``: inline CSS, inline SVG charts, no script, no network.

Every value that comes from outside (scenario names, summaries, errors, evidence, history
records) goes through :func:`e` (``html.escape``); markup is only ever built from literals.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from harness.report import charts
from harness.report.history import History
from harness.report.results import ACCOUNTING_COUNTS

Json = dict[str, Any]
MAX_EVIDENCE = 40
MAX_TRAIL = 200

CSS = """
:root{--pass:#1a7f37;--pass-bg:#dafbe1;--fail:#cf222e;--fail-bg:#ffebe9;--unk:#9a6700;
--unk-bg:#fff8c5;--none:#57606a;--none-bg:#eaeef2;--line:#d0d7de;--ink:#1f2328;--muted:#59636e}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--ink);margin:0;background:#f6f8fa}
main{max-width:1280px;margin:0 auto;padding:24px 28px 60px;background:#fff;min-height:100vh}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:34px 0 10px;padding-bottom:6px;
border-bottom:1px solid var(--line)}h3{font-size:16px;margin:22px 0 8px}
h4{font-size:14px;margin:16px 0 6px}
.sub{color:var(--muted);margin:0 0 16px}
.banner{display:flex;align-items:center;gap:22px;border-radius:10px;padding:18px 22px;
margin:12px 0 14px;border:2px solid}
.banner .word{font-size:34px;font-weight:800;letter-spacing:.04em}
.banner .why{font-size:15px}
.banner.pass{background:var(--pass-bg);border-color:var(--pass);color:var(--pass)}
.banner.fail{background:var(--fail-bg);border-color:var(--fail);color:var(--fail)}
.banner.unknown{background:var(--unk-bg);border-color:var(--unk);color:var(--unk)}
.banner .why{color:var(--ink)}
.stats{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 10px}
.stat{border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:120px}
.stat b{display:block;font-size:22px}
nav{font-size:13px;margin:10px 0}nav a{margin-right:12px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid var(--line);padding:5px 9px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;border-radius:999px;padding:1px 10px;font-weight:700;font-size:12px;
white-space:nowrap;border:1px solid}
.pass{color:var(--pass)}.badge.pass,td.pass{background:var(--pass-bg);border-color:var(--pass)}
.fail{color:var(--fail)}.badge.fail,td.fail{background:var(--fail-bg);border-color:var(--fail)}
.unknown{color:var(--unk)}.badge.unknown,td.unknown{background:var(--unk-bg);border-color:var(--unk)}
.untested,.none{color:var(--none)}.badge.untested,.badge.none,td.none{background:var(--none-bg);
border-color:var(--none)}
.badge.caught{color:var(--pass);background:var(--pass-bg);border-color:var(--pass)}
.badge.missed{color:#fff;background:var(--fail);border-color:var(--fail)}
td.cell{text-align:center}
.bad{color:var(--fail);font-weight:700}
.error{background:var(--fail-bg);border-left:4px solid var(--fail);padding:8px 12px;
white-space:pre-wrap;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.note{color:var(--muted);font-size:12px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:8px 10px;
overflow:auto;max-height:360px;white-space:pre-wrap;word-break:break-word}
code.cmd{background:#f6f8fa;border:1px solid var(--line);border-radius:4px;padding:2px 6px;
user-select:all}
section.scenario{border-top:3px solid var(--line);margin-top:34px}
section.sc-fail{border-top-color:var(--fail)}section.sc-pass{border-top-color:var(--pass)}
section.sc-unknown{border-top-color:var(--unk)}
svg.chart{width:100%;height:auto;max-width:1150px;display:block;margin:6px 0 14px}
svg.chart.narrow{max-width:720px}
td.summary{min-width:340px;max-width:560px}td.figs{font-family:ui-monospace,SFMono-Regular,Menlo,
monospace;font-size:12px;max-width:480px;word-break:break-word}
.trail{margin:8px 0 14px}.trail:target{outline:3px solid #0969da;outline-offset:4px}
details summary{cursor:pointer;color:#0969da}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
"""


def e(value: object) -> str:
    """Escape any outside value for HTML text or a quoted attribute; ``None`` shows as a dash."""
    return "—" if value is None else escape(str(value), quote=True)


def slug(text: object) -> str:
    """A safe fragment for ids and anchors."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


def badge(status: object, text: object = None) -> str:
    cls = slug(status)
    return f'<span class="badge {cls}">{e(text if text is not None else status)}</span>'


def _fmt_time(ts: object) -> str:
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return e(ts)


def _fmt_s(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.2f} s"
    return "—"


def job_anchor(scenario: str, job_id: object) -> str:
    return f"job-{slug(scenario)}-{slug(job_id)}"


def scenario_anchor(scenario: str) -> str:
    return f"s-{slug(scenario)}"


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def render(doc: Mapping[str, Any], histories: Mapping[str, History | None]) -> str:
    """The whole page for a ``results.json`` document and the scenarios' histories."""
    scenarios: list[Json] = list(doc.get("scenarios") or [])
    real = [s for s in scenarios if s.get("expected_verdict") != "fail"]
    mutations = [s for s in scenarios if s.get("expected_verdict") == "fail"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>bulletproof: {e(str(doc.get('verdict', 'unknown')).upper())}</title>",
        f"<style>{CSS}</style></head><body><main>",
        _header(doc, real, mutations),
        _verdict_table(real),
        _claims_table(doc.get("claims") or [], (doc.get("run") or {}).get("profile")),
    ]
    if mutations:
        parts.append(_mutation_table(mutations))
    parts.append('<h2 id="scenarios">Scenarios</h2>')
    if not scenarios:
        parts.append('<p class="note">No scenario results were found.</p>')
    for s in [*real, *mutations]:
        parts.append(_scenario_section(s, histories.get(s["scenario"])))
    parts.append(_environment(doc, scenarios))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _header(doc: Mapping[str, Any], real: Sequence[Json], mutations: Sequence[Json]) -> str:
    run = doc.get("run") or {}
    verdict = str(doc.get("verdict") or "unknown")
    failing = [
        s["scenario"] for s in doc.get("scenarios") or [] if s["outcome"] in ("fail", "missed")
    ]
    unknown = [s["scenario"] for s in doc.get("scenarios") or [] if s["outcome"] == "unknown"]
    if verdict == "pass":
        why = f"All {len(real)} scenario(s) passed every invariant"
        if mutations:
            why += f"; the checker caught all {len(mutations)} deliberate defect(s)"
        why += "."
    elif verdict == "fail":
        why = "Failed: " + ", ".join(failing) + "."
        if unknown:
            why += " Undecided: " + ", ".join(unknown) + "."
    else:
        why = "Undecided: " + (", ".join(unknown) if unknown else "no scenario results") + "."
    claims = doc.get("claims") or []
    n_claims = {
        k: sum(1 for c in claims if c["status"] == k)
        for k in ("pass", "fail", "unknown", "untested")
    }
    c = doc.get("counts") or {}
    word = {"pass": "BULLETPROOF", "fail": "NOT BULLETPROOF", "unknown": "UNDECIDED"}.get(
        verdict, "UNDECIDED"
    )
    stats = [
        (len(real), "scenarios"),
        (c.get("pass", 0), "passed"),
        (c.get("fail", 0), "failed"),
        (c.get("unknown", 0), "unknown"),
    ]
    if mutations:
        stats.append((f"{c.get('caught', 0)}/{len(mutations)}", "defects caught"))
    stats.append((f"{n_claims['pass']}/{len(claims)}", "claims proven"))
    stat_html = "".join(f'<div class="stat"><b>{e(n)}</b>{e(label)}</div>' for n, label in stats)
    return (
        "<h1>Bulletproof Procrastinate: reliability report</h1>"
        f'<p class="sub">{_fmt_time(run.get("started_at"))} · seed <code>{e(run.get("seed"))}'
        f"</code> · backend {e(run.get('backend'))} · profile {e(run.get('profile'))} · commit "
        f"<code>{e(str(run.get('git_commit') or '—')[:12])}</code></p>"
        f'<div class="banner {slug(verdict)}" id="verdict"><span class="word">{e(word)}</span>'
        f'<span class="why">{e(why)}<br><span class="note">claims: {n_claims["pass"]} proven, '
        f"{n_claims['fail']} refuted, {n_claims['unknown']} undecided, "
        f"{n_claims['untested']} untested</span></span></div>"
        f'<div class="stats">{stat_html}</div>'
        '<nav><a href="#verdicts">Verdicts</a><a href="#claims">Claims</a>'
        + ('<a href="#mutations">Mutation checks</a>' if mutations else "")
        + '<a href="#scenarios">Scenarios</a><a href="#environment">Environment &amp; '
        'reproduction</a><a href="results.json">results.json</a>'
        '<a href="junit.xml">junit.xml</a></nav>'
    )


def _invariant_columns(scenarios: Iterable[Mapping[str, Any]]) -> list[str]:
    # In the order the scenarios list them: the checker owns the names, the report no list.
    return list(dict.fromkeys(v["name"] for s in scenarios for v in s.get("invariants") or []))


def _verdict_table(real: Sequence[Json]) -> str:
    cols = _invariant_columns(real)
    head = "".join(f"<th>{e(c.replace('_', ' '))}</th>" for c in cols)
    rows = []
    for s in real:
        by_name = {v["name"]: v for v in s.get("invariants") or []}
        cells = []
        for col in cols:
            v = by_name.get(col)
            if v is None:
                cells.append('<td class="cell none" title="not checked">·</td>')
            else:
                cells.append(
                    f'<td class="cell {slug(v["status"])}" title="{e(v["summary"])}">'
                    f"{e(v['status'])}</td>"
                )
        rows.append(
            f'<tr><td><a href="#{scenario_anchor(s["scenario"])}">{e(s["scenario"])}</a></td>'
            f"<td>{badge(s['verdict'])}</td>{''.join(cells)}"
            f'<td class="num">{_fmt_s(s.get("duration"))}</td></tr>'
        )
    body = "".join(rows) or f'<tr><td colspan="{len(cols) + 3}">no scenarios ran</td></tr>'
    return (
        '<h2 id="verdicts">Verdicts: scenario × invariant</h2>'
        '<table class="verdicts"><thead><tr><th>scenario</th><th>verdict</th>'
        f"{head}<th>duration</th></tr></thead><tbody>{body}</tbody></table>"
        '<p class="note">Hover a cell for the checker\'s summary; · = not checked by that '
        "scenario. Merge rule: any fail → fail, else any unknown → unknown.</p>"
    )


def _claims_table(claims: Sequence[Mapping[str, Any]], profile: object = None) -> str:
    rows = []
    for c in claims:
        if c["evidence"]:
            ev = "<br>".join(
                f'<a href="#{scenario_anchor(x["scenario"])}">{e(x["scenario"])}</a>'
                f"{' / ' + e(x['invariant']) if x.get('invariant') else ''}: "
                f"{badge(x['verdict'])} {e(x.get('figure') or '')}"
                for x in c["evidence"]
            )
        else:
            would = ", ".join(c.get("tested_by") or []) or "no scenario tests this claim"
            ev = f'<span class="untested">not tested in this run; tested by: {e(would)}</span>'
        note = f'<br><span class="note">{e(c["note"])}</span>' if c.get("note") else ""
        rows.append(
            f'<tr id="claim-{slug(c["key"])}"><td>{badge(c["status"])}</td>'
            f'<td>{e(c["text"])}{note}</td><td class="note">{e(c["section"])}</td>'
            f"<td>{ev}</td></tr>"
        )
    return (
        '<h2 id="claims">Claims from the seed document</h2>'
        f'<p class="note">Figures are measured under the run\'s timing profile '
        f"(<code>{e(profile)}</code>; <code>fast</code> compresses the seed's intervals, budgets "
        "scale with them). Untested claims are listed, never hidden.</p>"
        "<table><thead><tr><th>status</th><th>claim</th><th>where</th>"
        f"<th>evidence: scenario / invariant, measured figure</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _mutation_table(mutations: Sequence[Json]) -> str:
    rows = []
    for s in mutations:
        failed = [v["name"] for v in s.get("invariants") or [] if v["status"] == "fail"]
        word = {"caught": "checker caught the defect", "missed": "DEFECT NOT DETECTED"}.get(
            s["outcome"], "undecided"
        )
        wanted = ", ".join(s.get("expected_failing") or []) or "any"
        rows.append(
            f'<tr><td><a href="#{scenario_anchor(s["scenario"])}">{e(s["scenario"])}</a></td>'
            f"<td><code>{e(s.get('defect'))}</code></td><td>{e(wanted)}</td>"
            f"<td>{badge(s['verdict'])}</td>"
            f"<td>{e(', '.join(failed) or '—')}</td><td>{badge(s['outcome'], word)}</td></tr>"
        )
    return (
        '<h2 id="mutations">Mutation checks: deliberate defects the checker must catch</h2>'
        '<p class="note">Each row runs a scenario against a system with a defect switched on '
        "(BULLETPROOF_DEFECTS). A failed verdict is the expected, good outcome.</p>"
        "<table><thead><tr><th>scenario</th><th>defect</th><th>must fail</th><th>verdict</th>"
        "<th>invariants that failed</th><th>result</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _id_links(scenario: str, ids: Sequence[object]) -> str:
    if not ids:
        return "—"
    return ", ".join(
        f'<a class="bad" href="#{job_anchor(scenario, j)}">{e(j)}</a>' for j in ids[:200]
    ) + (f" … and {len(ids) - 200} more" if len(ids) > 200 else "")


def _accounting(s: Mapping[str, Any]) -> str:
    acc = s.get("accounting") or {}
    if all(acc.get(k) is None for k in ACCOUNTING_COUNTS):
        return '<p class="note">No queue accounting recorded.</p>'
    must_be_zero = {"lost", "unexpected", "duplicate_effects"}
    head = "".join(f"<th>{e(k.replace('_', ' '))}</th>" for k in ACCOUNTING_COUNTS)
    cells = "".join(
        f'<td class="num{" bad" if k in must_be_zero and acc.get(k) else ""}">{e(acc.get(k))}</td>'
        for k in ACCOUNTING_COUNTS
    )
    name = s["scenario"]
    ids = (
        f"<tr><th>lost jobs</th><td>{_id_links(name, acc.get('lost_ids') or [])}</td></tr>"
        f"<tr><th>duplicated executions</th>"
        f"<td>{_id_links(name, acc.get('duplicated_ids') or [])}</td></tr>"
        f"<tr><th>unexpected jobs</th>"
        f"<td>{_id_links(name, acc.get('unexpected_ids') or [])}</td></tr>"
    )
    return (
        f"<h4>Queue accounting</h4><table><thead><tr>{head}</tr></thead><tbody><tr>{cells}"
        f"</tr></tbody></table><table><tbody>{ids}</tbody></table>"
    )


def _trails(s: Mapping[str, Any], history: History | None) -> str:
    acc = s.get("accounting") or {}
    wanted: list[tuple[object, str]] = []
    for key, why in (
        ("lost_ids", "lost"),
        ("duplicated_ids", "duplicated"),
        ("unexpected_ids", "unexpected"),
    ):
        for j in acc.get(key) or []:
            if all(j != w for w, _ in wanted):
                wanted.append((j, why))
    if not wanted:
        return ""
    out = ["<h4>Event trails of lost, duplicated and unexpected jobs</h4>"]
    t0 = history.t0 if history else 0.0
    for job_id, why in wanted[:200]:
        anchor = job_anchor(s["scenario"], job_id)
        if history is None:
            body = '<p class="note">History not available.</p>'
        else:
            trail = history.trail(job_id)
            rows = []
            for r in trail[:MAX_TRAIL]:
                t = min(
                    (r[k] for k in ("at", "t_invoke") if isinstance(r.get(k), int | float)),
                    default=None,
                )
                rel = f"{t - t0:+.3f} s" if t is not None else "final"
                what = r.get("type") or r.get("status") or r.get("outcome") or ""
                rows.append(
                    f'<tr><td class="num">{e(rel)}</td><td>{e(r.get("kind"))}</td>'
                    f"<td>{e(what)}</td><td><code>{e(_json(r))}</code></td></tr>"
                )
            body = (
                "<table><thead><tr><th>t</th><th>kind</th><th>what</th><th>record</th></tr>"
                f"</thead><tbody>{''.join(rows)}</tbody></table>"
                if rows
                else '<p class="note">No record mentions this job.</p>'
            )
        # Lost and unexpected jobs are the point: open. Duplicates (allowed) fold away.
        is_open = " open" if why != "duplicated" else ""
        out.append(
            f'<details class="trail" id="{anchor}"{is_open}><summary><b>job {e(job_id)}</b> '
            f'<span class="bad">({e(why)})</span></summary>{body}</details>'
        )
    return "".join(out)


def _invariants(s: Mapping[str, Any]) -> str:
    rows = []
    for v in s.get("invariants") or []:
        scalars = {k: x for k, x in v["figures"].items() if not isinstance(x, dict | list)}
        figures = e(", ".join(f"{k}={_json(x)}" for k, x in sorted(scalars.items())))
        if len(scalars) < len(v["figures"]):
            dump = json.dumps(v["figures"], indent=1, sort_keys=True, default=str)
            figures += f"<details><summary>all figures</summary><pre>{e(dump)}</pre></details>"
        evidence = v["evidence"]
        ev_html = ""
        if evidence:
            shown = "\n".join(_json(x) for x in evidence[:MAX_EVIDENCE])
            more = (
                f"\n… {len(evidence) - MAX_EVIDENCE} more" if len(evidence) > MAX_EVIDENCE else ""
            )
            ev_html = (
                f"<details><summary>evidence ({len(evidence)})</summary>"
                f"<pre>{e(shown + more)}</pre></details>"
            )
        rows.append(
            f"<tr><td>{e(v['name'])}</td><td>{badge(v['status'])}</td>"
            f'<td class="summary">{e(v["summary"])}{ev_html}</td>'
            f'<td class="figs">{figures}</td></tr>'
        )
    if not rows:
        return '<p class="note">No invariant was checked.</p>'
    return (
        "<h4>Invariants</h4><table><thead><tr><th>invariant</th><th>verdict</th>"
        f"<th>summary</th><th>figures</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _recoveries(s: Mapping[str, Any]) -> str:
    recs = s.get("recoveries") or []
    if not recs:
        return ""
    rows = []
    for r in recs:
        lat, bud = r.get("latency"), r.get("budget")
        over = isinstance(lat, int | float) and isinstance(bud, int | float) and lat > bud
        over = over or lat is None
        rows.append(
            f"<tr><td>{e(r.get('what'))}</td><td>{e(r.get('job_id'))}</td>"
            f'<td class="num{" bad" if over else ""}">{_fmt_s(lat) if lat is not None else "never"}'
            "</td>"
            f'<td class="num">{_fmt_s(bud)}</td></tr>'
        )
    chart = charts.recovery_chart(recs, f"chart-recovery-{slug(s['scenario'])}") or ""
    return (
        "<h4>Recovery latency against budget</h4>"
        "<table><thead><tr><th>what</th><th>job</th><th>latency</th><th>budget</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{chart}"
    )


def _backoff(s: Mapping[str, Any]) -> str:
    delays = s.get("retry_delays") or []
    early = next(
        (
            v["figures"].get("early_tolerance")
            for v in s.get("invariants") or []
            if v["name"] == "retry_schedule"
        ),
        None,
    )
    chart = charts.backoff_chart(
        delays,
        f"chart-backoff-{slug(s['scenario'])}",
        early_tolerance=early if isinstance(early, int | float) else 0.0,
    )
    if chart is None:
        return ""
    return (
        "<h4>Retry schedule: observed delays against min(base × 2^k, max)</h4>"
        '<p class="note">Green band: accepted range (formula plus tolerance for polling and '
        f"scheduling slack). Points: each observed delay ({len(delays)}).</p>{chart}"
    )


def _scenario_section(s: Mapping[str, Any], history: History | None) -> str:
    name = s["scenario"]
    mutation = s.get("expected_verdict") == "fail"
    head_badge = badge(
        s["outcome"],
        {"caught": "defect caught", "missed": "defect missed"}.get(s["outcome"], s["verdict"]),
    )
    parts = [
        f'<section class="scenario sc-{slug(s["outcome"] if not mutation else "none")}" '
        f'id="{scenario_anchor(name)}">',
        f"<h3>{e(s.get('title') or name)} <code>{e(name)}</code> {head_badge}</h3>",
    ]
    if mutation:
        parts.append(
            f'<p class="note">Mutation run with defect <code>{e(s.get("defect"))}</code>: '
            "this scenario is expected to fail.</p>"
        )
    if s.get("error"):
        parts.append(f'<div class="error">{e(s["error"])}</div>')
    parts.append(
        f"<p>seed <code>{e(s.get('seed'))}</code> · duration {_fmt_s(s.get('duration'))} · "
        f'replay: <code class="cmd">{e(s.get("replay"))}</code> · history: '
        f'<a href="{e(s.get("history"))}">{e(s.get("history"))}</a></p>'
    )
    parts.append(_invariants(s))
    parts.append(_accounting(s))
    if history is not None:
        lost = (s.get("accounting") or {}).get("lost_ids") or []
        chart = charts.timeline_chart(history, f"chart-timeline-{slug(name)}", highlight=lost)
        if chart:
            parts.append(
                "<h4>Timeline</h4>"
                '<p class="note">Shaded: fault windows. Bars: each job\'s runs, from its '
                "started event to the event that ended the run. Bottom: throughput.</p>" + chart
            )
        if history.bad_lines:
            parts.append(
                f'<p class="note">{history.bad_lines} unreadable line(s) in the history '
                "were skipped.</p>"
            )
    else:
        parts.append('<p class="note">History not available: no timeline.</p>')
    parts.append(_backoff(s))
    parts.append(_recoveries(s))
    parts.append(_trails(s, history))
    parts.append("</section>")
    return "".join(parts)


def _environment(doc: Mapping[str, Any], scenarios: Sequence[Json]) -> str:
    run = doc.get("run") or {}
    versions = run.get("versions") or {}
    rows = [
        ("overall verdict", doc.get("verdict")),
        ("seed", run.get("seed")),
        ("backend", run.get("backend")),
        ("profile", run.get("profile")),
        ("git commit", run.get("git_commit")),
        ("started", _fmt_time(run.get("started_at"))),
        ("finished", _fmt_time(run.get("finished_at"))),
        ("Python", versions.get("python")),
        ("Procrastinate", versions.get("procrastinate")),
        ("PostgreSQL", versions.get("postgresql")),
        ("Toxiproxy flavour", versions.get("toxiproxy")),
        ("command", run.get("command")),
    ]
    body = "".join(
        f"<tr><th>{e(k)}</th><td>{v if k in ('started', 'finished') else e(v)}</td></tr>"
        for k, v in rows
    )
    replays = "".join(
        f'<tr><td><a href="#{scenario_anchor(s["scenario"])}">{e(s["scenario"])}</a></td>'
        f'<td><code class="cmd">{e(s.get("replay"))}</code></td></tr>'
        for s in scenarios
    )
    return (
        '<h2 id="environment">Environment and reproduction</h2>'
        f"<table><tbody>{body}</tbody></table>"
        "<h4>Replay one scenario with the same seed</h4>"
        f"<table><thead><tr><th>scenario</th><th>command</th></tr></thead><tbody>{replays}"
        "</tbody></table>"
        '<p class="note">Re-render this page offline from results and histories: '
        '<code class="cmd">python -m harness.report --reports-dir reports</code></p>'
    )
