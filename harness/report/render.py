"""The self-contained ``index.html``: inline CSS, inline SVG charts, no script, no network.

Every value that comes from outside (scenario names, summaries, errors, evidence, history
records, log lines) goes through :func:`esc` (``html.escape``); markup is only ever built from
literals. A Content-Security-Policy forbids the page any request of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from harness.report import charts, story
from harness.report.history import Loaded
from harness.report.logs import LogLine, ended_with_error, last_problems, mentions
from harness.report.results import ACCOUNTING_COUNTS, PHASES

Json = dict[str, Any]
Logs = Mapping[str, list[LogLine]]
MAX_EVIDENCE = 40
MAX_STORIES = 200
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
#: status -> (symbol, word): every status reads as text, never as colour alone
MARKS = {
    "pass": ("✓", "pass"),
    "fail": ("✗", "fail"),
    "unknown": ("?", "unknown"),
    "untested": ("–", "not tested in this run"),
    "caught": ("✓", "defect caught"),
    "missed": ("✗", "defect missed"),
    "none": ("·", "not checked"),
}
RANK = {"fail": 0, "missed": 0, "unknown": 1, "pass": 2, "caught": 3}
GLOSSARY = (
    ("acknowledged", "the API answered 202 with a job id: the system promised to run it."),
    (
        "succeeded / failed",
        "the job's final status; failed means it failed explicitly, after "
        "its retries, and is counted, not lost.",
    ),
    ("lost", "acknowledged but never reached a final status by the deadline (or vanished)."),
    (
        "unknown",
        "a submission whose answer never arrived (timeout, reset): the job may or may not exist.",
    ),
    ("recovered", "an unknown submission whose job exists and reached a final status."),
    ("unexpected", "a job in the queue that no acknowledged or unknown submission explains."),
    (
        "duplicated execution",
        "a job run again after a run that did not end in a scheduled "
        "retry (stalled-job recovery, shutdown re-queue, or two runs at once). Allowed: delivery "
        "is at-least-once; each must be justified by a fault.",
    ),
    ("duplicate effect", "the same joke stored twice: what idempotency forbids (must be 0)."),
)

CSS = """
:root{--ok:#00694d;--ok-bg:#e3f4ee;--bad:#a13f00;--bad-bg:#fde9dc;--unk:#7a5200;
--unk-bg:#fdf3d7;--none:#57606a;--none-bg:#eaeef2;--line:#d0d7de;--ink:#1f2328;
--muted:#59636e;--link:#0b5cad}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--ink);margin:0;background:#f6f8fa;overflow-wrap:anywhere}
main{max-width:1280px;margin:0 auto;padding:20px 24px 60px;background:#fff;min-height:100vh}
h1{font-size:24px;margin:0 0 4px}h2{font-size:20px;margin:34px 0 10px;padding-bottom:6px;
border-bottom:1px solid var(--line)}h3{font-size:17px;margin:10px 0 8px}
h4{font-size:15px;margin:18px 0 6px}
.sub{color:var(--muted);margin:0 0 12px}
.banner{border-radius:10px;padding:14px 18px;margin:12px 0 14px;border:3px solid}
.banner .word{font-size:30px;font-weight:800;letter-spacing:.03em;display:block}
.banner.pass{background:var(--ok-bg);border-color:var(--ok)}
.banner.fail{background:var(--bad-bg);border-color:var(--bad);border-style:double;
border-width:6px}
.banner.unknown{background:var(--unk-bg);border-color:var(--unk);border-style:dashed}
.banner.pass .word{color:var(--ok)}.banner.fail .word{color:var(--bad)}
.banner.unknown .word{color:var(--unk)}
.banner ul{margin:6px 0 0;padding-left:20px}.banner li{margin:3px 0}
.stats{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0 4px}
.stat{border:1px solid var(--line);border-radius:8px;padding:6px 12px;background:#fff;
min-width:0;flex:1 1 150px}
.stat b{display:block;font-size:20px}.stat.bad{border:2px solid var(--bad)}
nav{font-size:14px;margin:10px 0;display:flex;flex-wrap:wrap;gap:4px 14px}
.wrap{max-width:100%;overflow-x:auto;margin:6px 0 12px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:999px;padding:0 9px;font-weight:700;font-size:12px;
white-space:nowrap;border:1px solid}
.badge.pass,.badge.caught,td.pass{color:var(--ok);background:var(--ok-bg);border-color:var(--ok)}
.badge.fail,.badge.missed,td.fail{color:var(--bad);background:var(--bad-bg);
border-color:var(--bad);border-width:2px}
.badge.unknown,td.unknown{color:var(--unk);background:var(--unk-bg);border-color:var(--unk);
border-style:dashed}
.badge.untested,.badge.none,td.none{color:var(--none);background:var(--none-bg);
border-color:var(--none);border-style:dotted}
td.cell{text-align:center;white-space:nowrap}
.bad{color:var(--bad);font-weight:700}
.error{background:var(--bad-bg);border-left:5px solid var(--bad);padding:8px 12px;
white-space:pre-wrap;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.note{color:var(--muted);font-size:13px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:8px 10px;
max-height:360px;overflow-y:auto;white-space:pre-wrap;overflow-wrap:anywhere}
code.cmd{background:#f6f8fa;border:1px solid var(--line);border-radius:4px;padding:1px 5px;
user-select:all}
section.scenario{border-top:4px solid var(--line);margin-top:30px;padding-top:6px}
section.sc-fail,section.sc-missed{border-top:6px double var(--bad)}
section.sc-unknown{border-top:4px dashed var(--unk)}section.sc-pass{border-top-color:var(--ok)}
svg.chart{width:100%;height:auto;max-width:1150px;min-width:640px;display:block;
margin:6px 0 14px}
svg.chart.narrow{max-width:720px;min-width:420px}
.pair{display:flex;flex-wrap:wrap;gap:12px 28px;align-items:flex-start}
.pair>*{min-width:0;flex:1 1 320px}
dl.glossary{margin:6px 0;font-size:13px}dl.glossary dt{font-weight:700}
dl.glossary dd{margin:0 0 6px 0;color:var(--muted)}
details{margin:6px 0}details>summary{cursor:pointer;color:var(--link)}
details.story{border:1px solid var(--line);border-radius:8px;padding:6px 10px;margin:8px 0}
details.story.lost,details.story.unexpected{border:2px solid var(--bad)}
details.story.duplicated{border:2px dashed var(--unk)}
details.story:target{outline:3px solid var(--link);outline-offset:3px}
ol.story{list-style:none;padding:0;margin:6px 0;font-size:13px}
ol.story li{display:grid;grid-template-columns:7.5em 5.5em minmax(0,1fr);gap:2px 8px;
padding:2px 0;border-bottom:1px solid #eef1f4}
ol.story li.bad{background:var(--bad-bg)}
ol.story .t{font-variant-numeric:tabular-nums;white-space:nowrap;color:var(--muted)}
ol.story .k{font-weight:700;font-size:11px;text-transform:uppercase;letter-spacing:.03em}
ol.story li.log .x{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
a{color:var(--link)}
@media (max-width:600px){
main{padding:12px 10px 40px}.banner .word{font-size:24px}
ol.story li{grid-template-columns:6.5em minmax(0,1fr)}ol.story .k{grid-column:2}
ol.story .x{grid-column:1/-1}
}
"""


def esc(value: object) -> str:
    """Escape any outside value for HTML text or a quoted attribute; ``None`` shows as a dash."""
    return "—" if value is None else escape(str(value), quote=True)


def slug(text: object) -> str:
    """A safe fragment for ids and anchors."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


def badge(status: object, text: object = None) -> str:
    """A status as symbol + word (shape and text, not hue alone)."""
    key = str(status)
    mark, word = MARKS.get(key, ("·", key))
    label = text if text is not None else word
    return f'<span class="badge {slug(key)}">{mark} {esc(label)}</span>'


def fmt_s(value: object, digits: int = 2) -> str:
    """Seconds, rounded: ``1.23 s``; ``—`` when not a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.{digits}f} s" if abs(value) < 100 else f"{value:.0f} s"
    return "—"


def _fmt_time(ts: object) -> str:
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return esc(ts)


def rounded(value: Any) -> Any:
    """``value`` with every float rounded to 3 decimals (3.0500000000000003 -> 3.05)."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, Mapping):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def _json(value: object) -> str:
    return json.dumps(rounded(value), ensure_ascii=False, sort_keys=True, default=str)


def job_anchor(scenario: str, job_id: object) -> str:
    return f"job-{slug(scenario)}-{slug(job_id)}"


def scenario_anchor(scenario: str) -> str:
    return f"s-{slug(scenario)}"


def job_link(scenario: str, job_id: object, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<a{c} href="#{job_anchor(scenario, job_id)}">{esc(job_id)}</a>'


_JOBS = re.compile(r"\b([Jj]obs?)((?:\s*(?:,|and)?\s*\d+\b)+)")


def link_jobs(text: object, scenario: str, known: set[int]) -> str:
    """Escape ``text`` and turn ``job 9`` / ``jobs 9, 10`` into links to the stories."""
    escaped = esc(text)

    def one(number: re.Match[str]) -> str:
        n = int(number.group(0))
        return job_link(scenario, n) if n in known else number.group(0)

    def sub(match: re.Match[str]) -> str:
        return match.group(1) + re.sub(r"\d+", one, match.group(2))

    return _JOBS.sub(sub, escaped)


def _table(head: Sequence[str], rows: Iterable[str], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    c = f' class="{cls}"' if cls else ""
    return (
        f'<div class="wrap"><table{c}><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _chart(svg: str) -> str:
    """A chart in its own scroll box: on a phone the chart scrolls sideways, never the text."""
    return f'<div class="wrap chartbox">{svg}</div>' if svg else ""


def ordered(scenarios: Sequence[Json]) -> list[Json]:
    """Failing first (fail, missed), then undecided, then passing, then caught defects."""
    return sorted(scenarios, key=lambda s: (RANK.get(str(s["outcome"]), 1), s["scenario"]))


def render(
    doc: Mapping[str, Any],
    histories: Mapping[str, Loaded | None],
    logs: Mapping[str, Logs] | None = None,
) -> str:
    """The whole page for a results document, the scenarios' histories and process logs."""
    logs = logs or {}
    scenarios: list[Json] = ordered(list(doc.get("scenarios") or []))
    real = [s for s in scenarios if s.get("expected_verdict") != "fail"]
    mutations = [s for s in scenarios if s.get("expected_verdict") == "fail"]
    known = {s["scenario"]: _story_ids(s, histories.get(s["scenario"])) for s in scenarios}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>bulletproof: {esc(str(doc.get('verdict', 'unknown')).upper())}</title>",
        f"<style>{CSS}</style></head><body><main>",
        _header(doc, scenarios, mutations, known),
        _claims_table(doc.get("claims") or [], (doc.get("run") or {}).get("profile")),
    ]
    if mutations:
        parts.append(_mutation_table(doc, mutations))
    parts.append(_skipped(doc.get("skipped") or []))
    parts.append(_verdict_table(real))
    parts.append(_accounting_overview(real))
    parts.append(_trends(doc.get("trends") or {}))
    parts.append('<h2 id="scenarios">Scenarios (failing first)</h2>')
    if not scenarios:
        parts.append('<p class="note">No scenario results were found.</p>')
    for s in scenarios:
        name = s["scenario"]
        parts.append(_scenario_section(s, histories.get(name), logs.get(name) or {}, known[name]))
    parts.append(_environment(doc, scenarios))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _story_ids(s: Mapping[str, Any], loaded: Loaded | None) -> set[int]:
    acc = s.get("accounting") or {}
    ids = {
        int(j)
        for key in ("lost_ids", "duplicated_ids", "unexpected_ids")
        for j in acc.get(key) or []
        if isinstance(j, int)
    }
    if loaded is not None:
        ids |= loaded.submitted | {j for j in loaded.runs if j in loaded.submitted}
    return ids


def _header(
    doc: Mapping[str, Any],
    scenarios: Sequence[Json],
    mutations: Sequence[Json],
    known: Mapping[str, set[int]],
) -> str:
    run = doc.get("run") or {}
    verdict = str(doc.get("verdict") or "unknown")
    word = {"pass": "BULLETPROOF", "fail": "NOT BULLETPROOF"}.get(verdict, "UNDECIDED")
    totals = doc.get("totals") or {}
    score = doc.get("mutations") or {"caught": 0, "total": 0, "missed": []}
    claims = doc.get("claims") or []
    n_claims = {k: sum(1 for c in claims if c["status"] == k) for k in MARKS}
    real = [s for s in scenarios if s.get("expected_verdict") != "fail"]
    skipped = doc.get("skipped") or []
    bad = [s for s in scenarios if s["outcome"] in ("fail", "missed", "unknown")]
    if verdict == "pass":
        why = f"All {len(real)} scenario(s) passed every invariant"
        why += f"; the checker caught all {len(mutations)} defect(s)." if mutations else "."
    elif not scenarios:
        why = "No scenario results: nothing was checked."
    else:
        n_fail = sum(1 for s in bad if s["outcome"] != "unknown")
        n_unk = len(bad) - n_fail
        why = f"{n_fail} of {len(scenarios)} scenario(s) failed" + (
            f", {n_unk} undecided." if n_unk else "."
        )
    if skipped:
        why += f" {len(skipped)} skipped (see below)."
    items = []
    for s in bad:
        name = s["scenario"]
        acc = s.get("accounting") or {}
        failed = [v for v in s.get("invariants") or [] if v["status"] != "pass"]
        reason = (
            s.get("miss_reason")
            or s.get("error")
            or (f"{failed[0]['name']}: {failed[0]['summary']}" if failed else "no verdict")
        )
        lost_ids = [j for j in acc.get("lost_ids") or [] if isinstance(j, int)]
        lost_html = (
            " · lost: " + ", ".join(f"job {job_link(name, j, 'bad')}" for j in lost_ids[:10])
            if lost_ids
            else ""
        )
        items.append(
            f'<li>{badge(s["outcome"])} <a href="#{scenario_anchor(name)}"><b>{esc(name)}</b></a>: '
            f"{link_jobs(str(reason).splitlines()[0][:240], name, known[name])}{lost_html}</li>"
        )
    for x in skipped:
        items.append(
            f"<li>{badge('untested', 'skipped')} <b>{esc(x.get('scenario'))}</b>: "
            f"{esc(x.get('reason'))}</li>"
        )
    listing = f"<ul>{''.join(items)}</ul>" if items else ""
    lost, acked = totals.get("lost"), totals.get("acknowledged")
    dup = totals.get("duplicated_executions")
    dup_by = totals.get("duplicated_executions_by_scenario") or {}
    stats = [
        (
            f"{esc(lost)} of {esc(acked)}",
            "acknowledged jobs lost (whole run)",
            bool(lost),
        ),
        (
            esc(dup),
            "duplicated executions"
            + (
                " (" + ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted(dup_by.items())) + ")"
                if dup_by
                else ""
            ),
            False,
        ),
        (
            f"{score['caught']} of {score['total']}" if score["total"] else "—",
            "defects caught (mutation score)"
            + (f"; {len(score['missed'])} missed" if score["missed"] else ""),
            bool(score["missed"]),
        ),
        (
            f"{n_claims['pass']} of {len(claims)}",
            f"claims proven; {n_claims['fail']} refuted, {n_claims['unknown']} undecided, "
            f"{n_claims['untested']} not tested in this run",
            False,
        ),
        (
            f"{sum(1 for s in real if s['outcome'] == 'pass')} of {len(real)}",
            "scenarios passed" + (f"; {len(skipped)} skipped" if skipped else ""),
            False,
        ),
    ]
    stat_html = "".join(
        f'<div class="stat{" bad" if is_bad else ""}"><b>{n}</b>{label}</div>'
        for n, label, is_bad in stats
    )
    return (
        "<h1>Bulletproof Procrastinate: reliability report</h1>"
        f'<p class="sub">{_fmt_time(run.get("started_at"))} · seed <code>{esc(run.get("seed"))}'
        f"</code> · backend {esc(run.get('backend'))} · profile {esc(run.get('profile'))} · "
        f"commit <code>{esc(str(run.get('git_commit') or '—')[:12])}</code></p>"
        f'<div class="banner {slug(verdict)}" id="verdict"><span class="word">'
        f"{badge(verdict, '')} {esc(word)}</span><span>{esc(why)}</span>{listing}"
        f'<div class="stats">{stat_html}</div></div>'
        '<nav><a href="#claims">Claims</a>'
        + ('<a href="#mutations">Mutation score</a>' if mutations else "")
        + '<a href="#verdicts">Verdicts</a><a href="#accounting">Accounting &amp; glossary</a>'
        '<a href="#trends">Trends</a><a href="#scenarios">Scenarios</a>'
        '<a href="#environment">Environment &amp; reproduction</a>'
        '<a href="results.json">results.json</a><a href="junit.xml">junit.xml</a></nav>'
    )


def _claims_table(claims: Sequence[Mapping[str, Any]], profile: object = None) -> str:
    rows = []
    for c in sorted(claims, key=lambda c: RANK.get(str(c["status"]), 1)):
        parts = []
        if c.get("figure"):
            parts.append(f"<b>{esc(c['figure'])}</b>")
        for x in c["evidence"]:
            inv = f" / {esc(x['invariant'])}" if x.get("invariant") else ""
            parts.append(
                f'<a href="#{scenario_anchor(x["scenario"])}">{esc(x["scenario"])}</a>{inv}: '
                f"{badge(x['verdict'])} {esc(x.get('figure') or '')}"
            )
        missing = c.get("missing") or []
        if missing and c["evidence"]:
            parts.append(
                f'<span class="note">not tested in this run: {esc(", ".join(missing))}</span>'
            )
        if not c["evidence"] and not c.get("figure"):
            would = ", ".join(c.get("tested_by") or []) or "no scenario tests this claim"
            parts.append(
                f'<span class="note">not tested in this run; tested by: {esc(would)}</span>'
            )
        if c.get("see_also"):
            links = ", ".join(f'<a href="#claim-{slug(k)}">{esc(k)}</a>' for k in c["see_also"])
            parts.append(f"proven instead: {links}")
        note = f'<br><span class="note">{esc(c["note"])}</span>' if c.get("note") else ""
        rows.append(
            f'<tr id="claim-{slug(c["key"])}"><td>{badge(c["status"])}</td>'
            f'<td>{esc(c["text"])}{note}</td><td class="note">{esc(c["section"])}</td>'
            f"<td>{'<br>'.join(parts)}</td></tr>"
        )
    return (
        '<h2 id="claims">Claims from the seed document</h2>'
        '<p class="note">A claim is proven only when every scenario it names ran and passed the '
        "invariant stating it. Figures are measured under the run's timing profile "
        f"(<code>{esc(profile)}</code>). Refuted and undecided claims come first.</p>"
        + _table(["status", "claim", "where", "evidence: scenario / invariant, figure"], rows)
    )


def _mutation_table(doc: Mapping[str, Any], mutations: Sequence[Json]) -> str:
    score = doc.get("mutations") or {}
    rows = []
    for s in mutations:
        failed = [v["name"] for v in s.get("invariants") or [] if v["status"] == "fail"]
        word = {"caught": "checker caught the defect", "missed": "DEFECT NOT DETECTED"}.get(
            s["outcome"], "undecided"
        )
        wanted = ", ".join(s.get("expected_failing") or []) or "none named"
        reason = (
            f'<br><span class="note">{esc(s["miss_reason"])}</span>' if s.get("miss_reason") else ""
        )
        rows.append(
            f'<tr><td><a href="#{scenario_anchor(s["scenario"])}">{esc(s["scenario"])}</a></td>'
            f"<td><code>{esc(s.get('defect'))}</code></td><td>{esc(wanted)}</td>"
            f"<td>{badge(s['verdict'])}</td>"
            f"<td>{esc(', '.join(failed) or '—')}</td>"
            f"<td>{badge(s['outcome'], word)}{reason}</td></tr>"
        )
    misses = "".join(
        f"<li><b>{esc(m['scenario'])}</b> (<code>{esc(m.get('defect'))}</code>): "
        f"{esc(m.get('reason'))}</li>"
        for m in score.get("missed") or []
    )
    return (
        f'<h2 id="mutations">Mutation score: {esc(score.get("caught"))} of '
        f"{esc(score.get('total'))} deliberate defects caught</h2>"
        '<p class="note">Each row runs a scenario against the system with one defect switched '
        "on (BULLETPROOF_DEFECTS). A defect is caught only when at least one of the invariants "
        "it must break failed.</p>"
        + (f"<p><b>Missed:</b></p><ul>{misses}</ul>" if misses else "")
        + _table(
            ["scenario", "defect", "must fail", "verdict", "invariants that failed", "result"],
            rows,
        )
    )


def _skipped(skipped: Sequence[Mapping[str, Any]]) -> str:
    if not skipped:
        return ""
    rows = [
        f"<tr><td>{esc(x.get('scenario'))}</td><td><code>{esc(x.get('test'))}</code></td>"
        f"<td>{esc(x.get('reason'))}</td></tr>"
        for x in skipped
    ]
    return '<h2 id="skipped">Skipped scenarios</h2>' + _table(["scenario", "test", "reason"], rows)


def _verdict_table(real: Sequence[Json]) -> str:
    cols = list(dict.fromkeys(v["name"] for s in real for v in s.get("invariants") or []))
    head = ["scenario", "verdict", *(esc(c.replace("_", " ")) for c in cols), "duration"]
    rows = []
    for s in real:
        by_name = {v["name"]: v for v in s.get("invariants") or []}
        cells = []
        for col in cols:
            v = by_name.get(col)
            if v is None:
                cells.append('<td class="cell none">·</td>')
            else:
                mark = MARKS.get(v["status"], ("?", ""))[0]
                cells.append(f'<td class="cell {slug(v["status"])}">{mark} {esc(v["status"])}</td>')
        rows.append(
            f'<tr><td><a href="#{scenario_anchor(s["scenario"])}">{esc(s["scenario"])}</a></td>'
            f"<td>{badge(s['verdict'], s['verdict'])}</td>{''.join(cells)}"
            f'<td class="num">{fmt_s(s.get("duration"), 1)}</td></tr>'
        )
    if not rows:
        rows = [f'<tr><td colspan="{len(cols) + 3}">no scenarios ran</td></tr>']
    return (
        '<h2 id="verdicts">Verdicts: scenario × invariant</h2>'
        + _table(head, rows, "verdicts")
        + '<p class="note">· = not checked by that scenario. Merge rule (the checker\'s): any '
        "fail → fail, else any unknown → unknown; nothing checked is unknown.</p>"
    )


def _glossary() -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in GLOSSARY)
    return f'<dl class="glossary" id="glossary">{items}</dl>'


def _accounting_overview(real: Sequence[Json]) -> str:
    rows = []
    for s in real:
        acc = s.get("accounting") or {}
        if all(acc.get(k) is None for k in ACCOUNTING_COUNTS):
            continue
        must_be_zero = {"lost", "unexpected", "duplicate_effects"}
        cells = "".join(
            f'<td class="num{" bad" if k in must_be_zero and acc.get(k) else ""}">'
            f"{esc(acc.get(k))}</td>"
            for k in ACCOUNTING_COUNTS
        )
        rows.append(
            f'<tr><td><a href="#{scenario_anchor(s["scenario"])}">{esc(s["scenario"])}</a></td>'
            f"{cells}</tr>"
        )
    head = ["scenario", *(esc(k.replace("_", " ")) for k in ACCOUNTING_COUNTS)]
    table = _table(head, rows) if rows else '<p class="note">No queue accounting recorded.</p>'
    return (
        '<h2 id="accounting">Queue accounting, with a glossary</h2>'
        f'<div class="pair"><div>{table}</div><div><h4>Glossary</h4>{_glossary()}</div></div>'
    )


def _trends(trend: Mapping[str, Any]) -> str:
    per = trend.get("scenarios") or {}
    window = trend.get("window") or 0
    head = '<h2 id="trends">Trends across runs</h2>'
    if window < 2:
        return head + (
            '<p class="note">This is the first run recorded in <code>trends.jsonl</code> in this '
            "reports directory: pass rates and drifts appear from the next run on.</p>"
        )

    def drift(d: Mapping[str, Any] | None) -> str:
        if not d:
            return "—"
        return f"median {fmt_s(d['median'])}; first {fmt_s(d['first'])} → last {fmt_s(d['last'])}"

    rows = []
    for name, t in sorted(per.items(), key=lambda kv: (not kv[1]["flaky"], kv[0])):
        seq = " ".join(MARKS.get(o, ("?", ""))[0] for o in t["outcomes"])
        flag = badge("unknown", "flaky") if t["flaky"] else ""
        rows.append(
            f'<tr><td>{esc(name)} {flag}</td><td class="num">{t["passed"]} of {t["runs"]}</td>'
            f"<td><code>{esc(seq)}</code></td><td>{drift(t.get('duration'))}</td>"
            f"<td>{drift(t.get('max_recovery_latency'))}</td></tr>"
        )
    return (
        head + f'<p class="note">The last {window} runs recorded in <code>trends.jsonl</code>; '
        "flaky = both passed and failed in that window (✓ pass, ✗ fail, ? unknown).</p>"
        + _table(
            ["scenario", "passed", "outcomes, oldest first", "wall time", "slowest recovery"],
            rows,
        )
    )


def _invariants(s: Mapping[str, Any], known: set[int]) -> str:
    name = s["scenario"]
    rows = []
    for v in s.get("invariants") or []:
        figs = rounded(v["figures"])
        scalars = {k: x for k, x in figs.items() if not isinstance(x, dict | list)}
        figures = esc(", ".join(f"{k}={_json(x)}" for k, x in sorted(scalars.items())))
        if len(scalars) < len(figs):
            dump = json.dumps(figs, indent=1, sort_keys=True, default=str)
            figures += f"<details><summary>all figures</summary><pre>{esc(dump)}</pre></details>"
        evidence = v["evidence"]
        ev_html = ""
        if evidence:
            shown = "<br>".join(
                link_jobs(x if isinstance(x, str) else _json(x), name, known)
                for x in evidence[:MAX_EVIDENCE]
            )
            more = (
                f"<br>… {len(evidence) - MAX_EVIDENCE} more" if len(evidence) > MAX_EVIDENCE else ""
            )
            is_open = " open" if v["status"] != "pass" else ""
            ev_html = (
                f"<details{is_open}><summary>evidence ({len(evidence)})</summary>"
                f'<div class="note">{shown}{more}</div></details>'
            )
        rows.append(
            f"<tr><td>{esc(v['name'])}</td><td>{badge(v['status'])}</td>"
            f"<td>{link_jobs(v['summary'], name, known)}{ev_html}</td>"
            f"<td><code>{figures}</code></td></tr>"
        )
    if not rows:
        return '<p class="note">No invariant was checked.</p>'
    return "<h4>Invariants</h4>" + _table(["invariant", "verdict", "summary", "figures"], rows)


def _id_links(scenario: str, ids: Sequence[object]) -> str:
    if not ids:
        return "—"
    return ", ".join(job_link(scenario, j, "bad") for j in ids[:200]) + (
        f" … and {len(ids) - 200} more" if len(ids) > 200 else ""
    )


def _accounting(s: Mapping[str, Any]) -> str:
    acc = s.get("accounting") or {}
    if all(acc.get(k) is None for k in ACCOUNTING_COUNTS):
        return '<p class="note">No queue accounting recorded.</p>'
    name = s["scenario"]
    rows = [
        f'<tr><th>{esc(k.replace("_", " "))}</th><td class="num">{esc(acc.get(k))}</td></tr>'
        for k in ACCOUNTING_COUNTS
    ]
    rows += [
        f"<tr><th>lost jobs</th><td>{_id_links(name, acc.get('lost_ids') or [])}</td></tr>",
        "<tr><th>duplicated executions</th>"
        f"<td>{_id_links(name, acc.get('duplicated_ids') or [])}</td></tr>",
        f"<tr><th>unexpected jobs</th><td>{_id_links(name, acc.get('unexpected_ids') or [])}"
        "</td></tr>",
    ]
    return (
        '<h4>Queue accounting <a class="note" href="#glossary">(terms)</a></h4>'
        f'<div class="wrap"><table><tbody>{"".join(rows)}</tbody></table></div>'
    )


def _recoveries(s: Mapping[str, Any], known: set[int]) -> str:
    recs = s.get("recoveries") or []
    if not recs:
        return ""
    name = s["scenario"]
    rows = []
    for r in recs:
        lat, bud = r.get("latency"), r.get("budget")
        over = lat is None or (
            isinstance(lat, int | float) and isinstance(bud, int | float) and lat > bud
        )
        job = r.get("job_id")
        job_html = job_link(name, job) if isinstance(job, int) and job in known else esc(job)
        shown = fmt_s(lat) if lat is not None else "never ran again"
        word = " ✗ over budget" if over and lat is not None else (" ✗" if over else "")
        rows.append(
            f"<tr><td>{esc(r.get('what'))}</td><td>{job_html}</td>"
            f'<td class="num{" bad" if over else ""}">{shown}{word}</td>'
            f'<td class="num">{fmt_s(bud)}</td></tr>'
        )
    chart = charts.recovery_chart(recs, f"chart-recovery-{slug(name)}") or ""
    return (
        "<h4>Recovery latency against budget</h4>"
        + _table(["what", "job", "latency", "budget"], rows)
        + _chart(chart)
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
        '<p class="note">Shaded band: accepted range. Round points: within it; crosses: '
        f"outside. {len(delays)} observed delay(s).</p>{_chart(chart)}"
    )


def _process_problems(s: Mapping[str, Any], logs: Logs) -> str:
    out = []
    for name, lines in sorted(logs.items()):
        if not ended_with_error(lines):
            continue
        shown = "\n".join(f"{ln.text}" for ln in (last_problems(lines) or lines[-5:]))
        path = (s.get("logs") or {}).get(name)
        out.append(
            f'<p class="bad">✗ {esc(name)} exited unexpectedly (its log ends on an error). '
            f'Last warning/error lines (<a href="{esc(path)}">{esc(path)}</a>):</p>'
            f'<pre class="error">{esc(shown)}</pre>'
        )
    return "".join(out)


def _meta(s: Mapping[str, Any]) -> str:
    logs = s.get("logs") or {}
    log_links = (
        " · logs: " + ", ".join(f'<a href="{esc(p)}">{esc(n)}</a>' for n, p in sorted(logs.items()))
        if logs
        else ""
    )
    phases = s.get("phases") or {}
    shown = [f"{k.replace('_', ' ')} {fmt_s(phases[k], 1)}" for k in PHASES if phases.get(k)]
    phase_html = f"<br>phases: {esc(' · '.join(shown))}" if shown else ""
    cal = s.get("calibration")
    cal_html = ""
    if isinstance(cal, Mapping) and cal:
        cal_html = f"<br>calibration: <code>{esc(_json(cal))}</code>"
    return (
        f"<p>seed <code>{esc(s.get('seed'))}</code> · duration {fmt_s(s.get('duration'), 1)} · "
        f'replay: <code class="cmd">{esc(s.get("replay"))}</code> · history: '
        f'<a href="{esc(s.get("history"))}">{esc(s.get("history"))}</a>{log_links}'
        f"{phase_html}{cal_html}</p>"
    )


def _stories(s: Mapping[str, Any], loaded: Loaded | None, logs: Logs) -> str:
    acc = s.get("accounting") or {}
    why: dict[int, str] = {}
    for key, word in (
        ("lost_ids", "lost"),
        ("unexpected_ids", "unexpected"),
        ("duplicated_ids", "duplicated"),
    ):
        for j in acc.get(key) or []:
            if isinstance(j, int):
                why.setdefault(j, word)
    if loaded is None:
        if not why:
            return ""
        missing = "".join(
            f'<details class="story {w}" id="{job_anchor(s["scenario"], j)}" open><summary>'
            f'<b>job {esc(j)}</b> ({esc(w)})</summary><p class="note">History not available.'
            "</p></details>"
            for j, w in why.items()
        )
        return f"<h4>Job stories</h4>{missing}"
    jobs = list(why) + sorted(j for j in loaded.submitted if j not in why)
    paths = {str(k): str(v) for k, v in (s.get("logs") or {}).items()}
    out = [
        "<h4>Job stories</h4>",
        '<p class="note">Everything about each job in time order, relative to the scenario '
        "start: its events, the faults around it, the worker of each run and how it ended, "
        "stalled-job sweeps, process starts and exits, and every log line naming it. Lost and "
        "duplicated jobs are open.</p>",
    ]
    t0 = loaded.t0
    named = mentions(logs)
    for j in jobs[:MAX_STORIES]:
        verdict = why.get(j)
        lines = story.story(loaded, j, logs, paths, verdict, named)
        items = []
        for ln in lines:
            t = f"t+{ln.t - t0:.3f} s" if ln.t is not None else ""
            src = f" {esc(ln.source)}" if ln.source else ""
            text = esc(ln.text)
            if ln.ref:
                text = f'{text} <a class="note" href="{esc(ln.ref)}">[log]</a>'
            bad = " bad" if ln.bad else ""
            items.append(
                f'<li class="{esc(ln.kind)}{bad}"><span class="t">{t}</span>'
                f'<span class="k">{"✗ " if ln.bad else ""}{esc(ln.kind)}{src}</span>'
                f'<span class="x">{text}</span></li>'
            )
        is_open = " open" if verdict in ("lost", "duplicated", "unexpected") else ""
        runs = loaded.runs.get(j, [])
        label = f" ({esc(verdict)})" if verdict else ""
        out.append(
            f'<details class="story {esc(verdict or "ok")}" id="{job_anchor(s["scenario"], j)}"'
            f"{is_open}><summary><b>job {esc(j)}</b>{label}: {len(runs)} run(s), "
            f"{esc(loaded.jobs[j].status if j in loaded.jobs else 'no row')}"
            f'</summary><ol class="story">{"".join(items)}</ol></details>'
        )
    if len(jobs) > MAX_STORIES:
        out.append(f'<p class="note">… {len(jobs) - MAX_STORIES} more jobs not shown.</p>')
    return "".join(out)


def _scenario_section(
    s: Mapping[str, Any], loaded: Loaded | None, logs: Logs, known: set[int]
) -> str:
    name = s["scenario"]
    mutation = s.get("expected_verdict") == "fail"
    parts = [
        f'<section class="scenario sc-{slug(s["outcome"])}" id="{scenario_anchor(name)}">',
        f"<h3>{badge(s['outcome'])} {esc(s.get('title') or name)} <code>{esc(name)}</code></h3>",
    ]
    if mutation:
        wanted = ", ".join(s.get("expected_failing") or []) or "none named"
        caught = ", ".join(s.get("caught_by") or []) or "none"
        parts.append(
            f"<p>Mutation run with defect <code>{esc(s.get('defect'))}</code>: must fail "
            f"{esc(wanted)}; failed on the expected ones: {esc(caught)}."
            + (f" <b>{esc(s['miss_reason'])}</b>" if s.get("miss_reason") else "")
            + "</p>"
        )
    if s.get("error"):
        parts.append(f'<div class="error">{esc(s["error"])}</div>')
    parts.append(_meta(s))
    parts.append(_process_problems(s, logs))
    parts.append(_invariants(s, known))
    parts.append(_accounting(s))
    if loaded is not None:
        lost = (s.get("accounting") or {}).get("lost_ids") or []
        chart = charts.timeline_chart(
            loaded,
            f"chart-timeline-{slug(name)}",
            highlight=lost,
            link=lambda j: f"#{job_anchor(name, j)}",
        )
        if chart:
            parts.append(
                "<h4>Timeline</h4>"
                '<p class="note">Hatched bands: fault windows (labelled). Bars: each submitted '
                "job's runs as the checker derives them; pattern and legend tell how each "
                "ended. Grey: the system's internal periodic tasks. Below: cumulative counts"
                " and /health answers. Click a job id for its story.</p>" + _chart(chart)
            )
        if loaded.bad_lines or loaded.unknown_kinds:
            kinds = ", ".join(f"{k} ×{n}" for k, n in sorted(loaded.unknown_kinds.items()))
            parts.append(
                f'<p class="note">{loaded.bad_lines} unreadable line(s) in the history were '
                "skipped"
                + (f"; record kinds this report does not know: {esc(kinds)}" if kinds else "")
                + ".</p>"
            )
    else:
        parts.append('<p class="note">History not available: no timeline.</p>')
    parts.append(_backoff(s))
    parts.append(_recoveries(s, known))
    parts.append(_stories(s, loaded, logs))
    parts.append("</section>")
    return "".join(parts)


def _environment(doc: Mapping[str, Any], scenarios: Sequence[Json]) -> str:
    run = doc.get("run") or {}
    versions = run.get("versions") or {}
    rows = [
        ("overall verdict", esc(doc.get("verdict"))),
        ("seed", esc(run.get("seed"))),
        ("backend", esc(run.get("backend"))),
        ("profile", esc(run.get("profile"))),
        ("git commit", esc(run.get("git_commit"))),
        ("started", _fmt_time(run.get("started_at"))),
        ("finished", _fmt_time(run.get("finished_at"))),
        ("Python", esc(versions.get("python"))),
        ("Procrastinate", esc(versions.get("procrastinate"))),
        ("PostgreSQL", esc(versions.get("postgresql"))),
        ("Toxiproxy flavour", esc(versions.get("toxiproxy"))),
        ("command", esc(run.get("command"))),
    ]
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    replays = [
        f'<tr><td><a href="#{scenario_anchor(s["scenario"])}">{esc(s["scenario"])}</a></td>'
        f'<td><code class="cmd">{esc(s.get("replay"))}</code></td></tr>'
        for s in scenarios
    ]
    return (
        '<h2 id="environment">Environment and reproduction</h2>'
        f'<div class="wrap"><table><tbody>{body}</tbody></table></div>'
        "<h4>Replay one scenario with the same seed</h4>"
        + _table(["scenario", "command"], replays)
        + '<p class="note">Re-render this page offline from results and histories: '
        '<code class="cmd">python -m harness.report --reports-dir reports</code></p>'
    )
