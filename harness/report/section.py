"""One scenario's section: invariants, accounting, timeline, charts, process exits, stories."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from harness.report import charts, story
from harness.report.history import Loaded
from harness.report.logs import LogLine, ended_with_error, last_problems, mentions
from harness.report.markup import (
    badge,
    chart,
    esc,
    fmt_s,
    job_anchor,
    job_link,
    link_jobs,
    rounded,
    scenario_anchor,
    slug,
    table,
    to_json,
)
from harness.report.results import (
    ACCOUNTING_COUNTS,
    PHASES,
    is_defect_run,
    is_known_failure,
)

Logs = Mapping[str, list[LogLine]]
MAX_EVIDENCE = 40
MAX_STORIES = 200


def _invariants(s: Mapping[str, Any], known: set[int]) -> str:
    name = s["scenario"]
    rows = []
    for v in s.get("invariants") or []:
        figs = rounded(v["figures"])
        scalars = {k: x for k, x in figs.items() if not isinstance(x, dict | list)}
        figures = esc(", ".join(f"{k}={to_json(x)}" for k, x in sorted(scalars.items())))
        if len(scalars) < len(figs):
            dump = json.dumps(figs, indent=1, sort_keys=True, default=str)
            figures += f"<details><summary>all figures</summary><pre>{esc(dump)}</pre></details>"
        evidence = v["evidence"]
        ev_html = ""
        if evidence:
            shown = "<br>".join(
                link_jobs(x if isinstance(x, str) else to_json(x), name, known)
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
    return "<h4>Invariants</h4>" + table(["invariant", "verdict", "summary", "figures"], rows)


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
    svg = charts.recovery_chart(recs, f"chart-recovery-{slug(name)}") or ""
    return (
        "<h4>Recovery latency against budget</h4>"
        + table(["what", "job", "latency", "budget"], rows)
        + chart(svg)
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
    svg = charts.backoff_chart(
        delays,
        f"chart-backoff-{slug(s['scenario'])}",
        early_tolerance=early if isinstance(early, int | float) else 0.0,
    )
    if svg is None:
        return ""
    return (
        "<h4>Retry schedule: observed delays against min(base × 2^k, max)</h4>"
        '<p class="note">Shaded band: accepted range. Round points: within it; crosses: '
        f"outside. {len(delays)} observed delay(s).</p>{chart(svg)}"
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
        cal_html = f"<br>calibration: <code>{esc(to_json(cal))}</code>"
    return (
        f"<p>seed <code>{esc(s.get('seed'))}</code> · duration {fmt_s(s.get('duration'), 1)} · "
        f'replay: <code class="cmd">{esc(s.get("replay"))}</code> · history: '
        f'<a href="{esc(s.get("history"))}">{esc(s.get("history"))}</a>{log_links}'
        f"{phase_html}{cal_html}</p>"
    )


def _schedule_table(value: Mapping[str, Any]) -> str:
    faults = [f for f in value.get("faults") or [] if isinstance(f, Mapping)]
    rows = [
        f"<tr><td>{esc(fmt_s(f.get('start'), 2))}</td><td>{esc(fmt_s(f.get('duration'), 2))}</td>"
        f"<td>{esc(f.get('fault'))}</td><td><code>{esc(f.get('target'))}</code></td></tr>"
        for f in faults
    ]
    load = value.get("workload") or {}
    head = (
        f"<p>{len(faults)} faults over {esc(load.get('jobs'))} jobs at {esc(load.get('rate'))}/s"
        f" on {esc(value.get('workers'))} workers (schedule seed "
        f"<code>{esc(value.get('seed'))}</code>)</p>"
    )
    return head + table(["start", "duration", "fault", "target"], rows)


def _schedules(loaded: Loaded) -> str:
    """A random run's fault schedule, and the minimal one its shrink found (with replay)."""
    found = {o.name: o.value for o in loaded.history.observations() if isinstance(o.value, Mapping)}
    out = []
    if isinstance(found.get("schedule"), Mapping):
        out.append("<h4>Fault schedule</h4>" + _schedule_table(found["schedule"]))
    minimal = found.get("minimal_schedule")
    if isinstance(minimal, Mapping) and isinstance(minimal.get("schedule"), Mapping):
        out.append(
            "<h4>Minimal failing schedule (shrunk)</h4>"
            f"<p>{esc(minimal.get('summary'))} · replay: "
            f'<code class="cmd">{esc(minimal.get("replay"))}</code></p>'
            + _schedule_table(minimal["schedule"])
        )
    return "".join(out)


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


def _head(s: Mapping[str, Any]) -> list[str]:
    """The section's opening: title with its badge, what a mutation or known failure had to
    do, the test's error."""
    name = s["scenario"]
    mutation = is_defect_run(s)
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
    elif is_known_failure(s):
        wanted = ", ".join(s.get("expected_failing") or []) or "none named"
        parts.append(
            "<p>The target declares that its app breaks "
            f"{esc(wanted)} here (<code>known_failures</code>); failed as declared: "
            f"{esc(', '.join(s.get('caught_by') or []) or 'none')}."
            + (
                f" <b>{esc(s['miss_reason'])}</b>: if the app now keeps this guarantee, "
                "update the target's known_failures."
                if s.get("miss_reason")
                else ""
            )
            + "</p>"
        )
    if s.get("error"):
        parts.append(f'<div class="error">{esc(s["error"])}</div>')
    return parts


def _verdicts(s: Mapping[str, Any], logs: Logs, known: set[int]) -> list[str]:
    """What every section shows: its opening, run facts, process problems, invariants and
    accounting."""
    return [
        *_head(s),
        _meta(s),
        _process_problems(s, logs),
        _invariants(s, known),
        _accounting(s),
    ]


def brief_section(
    s: Mapping[str, Any], loaded: Loaded | None, logs: Logs, known: set[int], page: str
) -> str:
    """A scenario's section without its charts and job stories, which are on ``page`` (a path
    relative to the index): verdicts, accounting and fault schedule stay; job links lead to
    the stories on ``page``."""
    parts = _verdicts(s, logs, known)
    if loaded is not None:
        parts.append(_schedules(loaded))
    parts.append(
        f'<p class="note">Timeline, charts and job stories: <a href="{esc(page)}">'
        f"{esc(page)}</a>.</p></section>"
    )
    return "".join(parts).replace('href="#job-', f'href="{esc(page)}#job-')


def scenario_section(
    s: Mapping[str, Any], loaded: Loaded | None, logs: Logs, known: set[int]
) -> str:
    name = s["scenario"]
    parts = _verdicts(s, logs, known)
    if loaded is not None:
        lost = (s.get("accounting") or {}).get("lost_ids") or []
        svg = charts.timeline_chart(
            loaded,
            f"chart-timeline-{slug(name)}",
            highlight=lost,
            link=lambda j: f"#{job_anchor(name, j)}",
        )
        if svg:
            parts.append(
                "<h4>Timeline</h4>"
                '<p class="note">Hatched bands: fault windows (labelled). Bars: each submitted '
                "job's runs as the checker derives them; pattern and legend tell how each "
                "ended. Grey: the system's internal periodic tasks. Below: cumulative counts"
                " and /health answers. Click a job id for its story.</p>" + chart(svg)
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
    if loaded is not None:
        parts.append(_schedules(loaded))
    parts.append(_backoff(s))
    parts.append(_recoveries(s, known))
    parts.append(_stories(s, loaded, logs))
    parts.append("</section>")
    return "".join(parts)
