"""The self-contained ``index.html``: inline CSS, inline SVG charts, no script, no network.

The top of the page answers "did we lose anything, and why?": verdict, losses over the whole
run, duplicated executions, mutation score, claims, skipped scenarios, failing scenarios first
and linked to their sections and lost jobs' stories. A Content-Security-Policy forbids the page
any request of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.report.history import Loaded
from harness.report.markup import (
    MARKS,
    RANK,
    Json,
    badge,
    esc,
    fmt_s,
    fmt_time,
    job_link,
    link_jobs,
    ordered,
    scenario_anchor,
    slug,
    table,
)
from harness.report.results import ACCOUNTING_COUNTS, is_defect_run, is_known_failure
from harness.report.section import Logs, brief_section, scenario_section
from harness.report.style import CSS

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

#: With more scenarios than this (a soak's runs), those that went as expected (pass, or their
#: defect caught) get a brief section on the index page, and their timeline, charts and job
#: stories a page of their own in :data:`PAGES_DIR`: a 75-run soak's single page was 66 MB,
#: 0.5 to 1.2 MB of chart per run. Failing and undecided scenarios stay whole on the index.
INLINE_SCENARIOS = 30
#: Where those pages go, relative to the reports directory.
PAGES_DIR = "pages"
#: Outcomes that move to a page of their own when the report is split.
AS_EXPECTED = frozenset({"pass", "caught"})


@dataclass(frozen=True)
class Rendered:
    """The index page, and the scenario pages beside it (path relative to the index -> HTML)."""

    index: str
    pages: dict[str, str] = field(default_factory=dict)


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


def render(
    doc: Mapping[str, Any],
    histories: Mapping[str, Loaded | None],
    logs: Mapping[str, Logs] | None = None,
) -> str:
    """The index page for a results document, the scenarios' histories and process logs
    (every scenario whole on it up to :data:`INLINE_SCENARIOS`; see :func:`render_all`)."""
    return render_all(doc, histories, logs).index


def render_all(
    doc: Mapping[str, Any],
    histories: Mapping[str, Loaded | None],
    logs: Mapping[str, Logs] | None = None,
) -> Rendered:
    """The index page and, past :data:`INLINE_SCENARIOS` scenarios, one page per scenario
    that went as expected."""
    logs = logs or {}
    pages: dict[str, str] = {}
    scenarios: list[Json] = ordered(list(doc.get("scenarios") or []))
    # a target's known failures are its app's real verdicts: they stay with the scenarios
    real = [s for s in scenarios if not is_defect_run(s)]
    mutations = [s for s in scenarios if is_defect_run(s)]
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
    split = len(scenarios) > INLINE_SCENARIOS
    if split:
        parts.append(
            f'<p class="note">{len(scenarios)} scenarios: those that went as expected show '
            "their verdicts here, and their timeline, charts and job stories on a page of their "
            f"own in <code>{PAGES_DIR}/</code>.</p>"
        )
    for s in scenarios:
        name = s["scenario"]
        args = (s, histories.get(name), logs.get(name) or {}, known[name])
        if split and s["outcome"] in AS_EXPECTED:
            page = f"{PAGES_DIR}/{slug(name)}.html"
            pages[page] = _scenario_page(s, scenario_section(*args))
            parts.append(brief_section(*args, page))
        else:
            parts.append(scenario_section(*args))
    parts.append(_environment(doc, scenarios))
    parts.append("</main></body></html>")
    return Rendered("\n".join(parts), pages)


#: A relative link (not an anchor, not a URL) in a section, to be read from one level down.
_RELATIVE = re.compile(r'(?<![\w:])href="(?![#/]|[a-z]+:)([^"]*)"')


def _scenario_page(s: Mapping[str, Any], section: str) -> str:
    """A scenario's own page (in :data:`PAGES_DIR`): the whole section, links rebased."""
    index = "../index.html"
    body = _RELATIVE.sub(r'href="../\1"', section).replace(
        'href="#glossary"', f'href="{index}#glossary"'
    )
    name = str(s["scenario"])
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>bulletproof: {esc(name)} {esc(str(s.get('outcome')))}</title>",
            f"<style>{CSS}</style></head><body><main>",
            f'<p><a href="{index}#{scenario_anchor(name)}">← the whole report</a></p>',
            body,
            "</main></body></html>",
        ]
    )


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
    real = [s for s in scenarios if not is_defect_run(s)]
    skipped = doc.get("skipped") or []
    breaks = [s for s in scenarios if is_known_failure(s) and s["outcome"] == "caught"]
    bad = breaks + [s for s in scenarios if s["outcome"] in ("fail", "missed", "unknown")]
    if verdict == "pass" and breaks:
        # the run is green because it matches the target's declaration, but the app is not
        # bulletproof: say so first, with each guarantee it breaks below
        word = "NOT BULLETPROOF"
        why = (
            f"{len(breaks)} of {len(real)} scenario(s) break a guarantee of the app, as its "
            "target declares (known_failures); the others passed every invariant."
        )
    elif verdict == "pass":
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
        mark = badge("fail", "known failure") if s in breaks else badge(s["outcome"])
        items.append(
            f'<li>{mark} <a href="#{scenario_anchor(name)}"><b>{esc(name)}</b></a>: '
            f"{link_jobs(str(reason).splitlines()[0][:240], name, known[name])}{lost_html}</li>"
        )
    for x in skipped:
        items.append(
            f"<li>{badge('untested', 'skipped')} <b>{esc(x.get('scenario'))}</b>: "
            f"{esc(x.get('reason'))}</li>"
        )
    listing = f"<ul>{''.join(items)}</ul>" if items else ""
    shown = "fail" if breaks else verdict  # the banner's colour says what the app is
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
        f'<p class="sub">{fmt_time(run.get("started_at"))} · seed <code>{esc(run.get("seed"))}'
        f"</code> · backend {esc(run.get('backend'))} · profile {esc(run.get('profile'))} · "
        f"commit <code>{esc(str(run.get('git_commit') or '—')[:12])}</code></p>"
        f'<div class="banner {slug(shown)}" id="verdict"><span class="word">'
        f"{badge(shown, '')} {esc(word)}</span><span>{esc(why)}</span>{listing}"
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
        + table(["status", "claim", "where", "evidence: scenario / invariant, figure"], rows)
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
        + table(
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
    return '<h2 id="skipped">Skipped scenarios</h2>' + table(["scenario", "test", "reason"], rows)


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
        + table(head, rows, "verdicts")
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
    shown = table(head, rows) if rows else '<p class="note">No queue accounting recorded.</p>'
    return (
        '<h2 id="accounting">Queue accounting, with a glossary</h2>'
        f'<div class="pair"><div>{shown}</div><div><h4>Glossary</h4>{_glossary()}</div></div>'
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
        + table(
            ["scenario", "passed", "outcomes, oldest first", "wall time", "slowest recovery"],
            rows,
        )
    )


def _environment(doc: Mapping[str, Any], scenarios: Sequence[Json]) -> str:
    run = doc.get("run") or {}
    versions = run.get("versions") or {}
    rows = [
        ("overall verdict", esc(doc.get("verdict"))),
        ("seed", esc(run.get("seed"))),
        ("backend", esc(run.get("backend"))),
        ("profile", esc(run.get("profile"))),
        ("git commit", esc(run.get("git_commit"))),
        ("started", fmt_time(run.get("started_at"))),
        ("finished", fmt_time(run.get("finished_at"))),
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
        + table(["scenario", "command"], replays)
        + '<p class="note">Re-render this page offline from results and histories: '
        '<code class="cmd">python -m harness.report --reports-dir reports</code></p>'
    )
