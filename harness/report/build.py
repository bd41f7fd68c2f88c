"""Assemble ``results.json`` and ``index.html`` from ``<reports-dir>/results`` and histories."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report import claims, render, results, runinfo, trends
from harness.report.history import Loaded, load_history
from harness.report.logs import LogLine, read_log

Json = dict[str, Any]


@dataclass(frozen=True)
class Built:
    """What :func:`build` wrote, and the document it wrote."""

    results_json: Path
    index_html: Path
    doc: Json


def apply_failures(raw: list[Json], failures: Mapping[str, tuple[str, str]]) -> list[Json]:
    """Fold pytest failures of scenario tests into the raw entries.

    ``failures`` maps a test's name without ``test_`` and parameters (by the scenarios'
    convention, the scenario's name: ``test_worker_crash__defect_x`` -> ``worker_crash__defect_x``)
    to ``(module, error)``, module being ``worker_crash`` for ``scenarios/test_worker_crash.py``.
    A failed test whose scenario wrote no result gets an entry of its own (verdict unknown, the
    error); a result that says ``pass`` although its test failed gets the error (-> unknown),
    and so does a mutation whose verdict is ``fail`` although its test failed (it failed on
    other invariants than expected: not a clean catch).
    """
    out = [dict(r) for r in raw]
    names = {str(r.get("scenario")) for r in out}
    for stem, (module, error) in sorted(failures.items()):
        if stem in names:
            mine = [r for r in out if r.get("scenario") == stem]
        elif module in names:
            mine = [r for r in out if r.get("scenario") == module]
        elif targeted := [r for r in out if str(r.get("scenario")).endswith(f"__{stem}")]:
            mine = targeted  # a --target run's result is named <target>__<scenario>
        else:
            out.append({"scenario": stem, "verdict": "unknown", "error": error})
            names.add(stem)
            continue
        for r in mine:
            if r.get("error"):
                continue
            mutation = r.get("expected_verdict") == "fail" or bool(r.get("defect"))
            if mutation and r.get("verdict") == "fail":
                r["error"] = f"the mutation's test failed: {error}"
            elif not mutation and r.get("verdict") == "pass":
                r["error"] = f"the scenario's test failed although its verdict is pass: {error}"
    out.sort(key=lambda r: str(r.get("scenario")))
    return out


@dataclass
class Inputs:
    """What the page is drawn from besides the document: histories and process logs."""

    histories: dict[str, Loaded | None]
    logs: dict[str, dict[str, list[LogLine]]]


def _logs(reports_dir: Path, entry: Mapping[str, Any]) -> dict[str, list[LogLine]]:
    out: dict[str, list[LogLine]] = {}
    for name, rel in (entry.get("logs") or {}).items():
        parsed = read_log(str(name), reports_dir / str(rel))
        if parsed is not None:
            out[str(name)] = parsed
    return out


def assemble(
    reports_dir: Path,
    run: Mapping[str, Any] | None = None,
    since: float | None = None,
    failures: Mapping[str, tuple[str, str]] | None = None,
    skipped: list[Json] | None = None,
) -> tuple[Json, Inputs]:
    """The results document plus each scenario's history (``None`` when missing) and logs."""
    recorded_runs, raw = results.load_results(reports_dir / "results", since)
    raw = apply_failures(raw, failures or {})
    base: Json = dict(run or {})
    if "versions" not in base:
        base["versions"] = runinfo.local_versions()
    if "git_commit" not in base:
        base["git_commit"] = runinfo.git_commit()
    merged = runinfo.merge_run(base, recorded_runs)
    doc = results.result_document(merged, raw)
    histories: dict[str, Loaded | None] = {}
    logs: dict[str, dict[str, list[LogLine]]] = {}
    for s in doc["scenarios"]:
        histories[s["scenario"]] = load_history(reports_dir / s["history"])
        logs[s["scenario"]] = _logs(reports_dir, s)
    versions = doc["run"]["versions"]
    if versions.get("toxiproxy") is None:
        flavours = sorted(
            {
                str(h.history.meta.toxiproxy)
                for h in histories.values()
                if h and h.history.meta and h.history.meta.toxiproxy != "unknown"
            }
        )
        versions["toxiproxy"] = " / ".join(flavours) or None
    ran = {s["scenario"] for s in doc["scenarios"]}
    doc["skipped"] = [x for x in skipped or [] if x.get("scenario") not in ran]
    doc["claims"] = claims.evaluate(doc["scenarios"])
    return doc, Inputs(histories, logs)


def build(
    reports_dir: Path,
    run: Mapping[str, Any] | None = None,
    since: float | None = None,
    failures: Mapping[str, tuple[str, str]] | None = None,
    skipped: list[Json] | None = None,
) -> Built:
    """Write ``results.json`` and ``index.html`` into ``reports_dir`` and record the run in
    ``trends.jsonl``.

    ``run`` carries what the caller knows (seed, backend, profile, times, command); missing
    values come from the scenarios' own result files and from this machine. ``since`` keeps
    only result files written at or after that epoch time (the current pytest session);
    ``failures``: see :func:`apply_failures`; ``skipped``: ``{scenario, test, reason}`` of
    scenario tests pytest skipped.
    """
    doc, inputs = assemble(reports_dir, run, since, failures, skipped)
    reports_dir.mkdir(parents=True, exist_ok=True)
    if doc["scenarios"]:
        doc["trends"] = trends.summarise(trends.record(reports_dir, doc))
    else:
        doc["trends"] = trends.summarise(trends.read(reports_dir / trends.FILE))
    results_json = reports_dir / "results.json"
    index_html = reports_dir / "index.html"
    results.write_atomic(
        results_json, json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n"
    )
    rendered = render.render_all(doc, inputs.histories, inputs.logs)
    pages_dir = reports_dir / render.PAGES_DIR
    for stale in pages_dir.glob("*.html") if pages_dir.is_dir() else []:
        if f"{render.PAGES_DIR}/{stale.name}" not in rendered.pages:
            stale.unlink()  # a page of an earlier report
    for rel, html in rendered.pages.items():
        results.write_atomic(reports_dir / rel, html)
    results.write_atomic(index_html, rendered.index)
    return Built(results_json, index_html, doc)


def summary_lines(built: Built) -> list[str]:
    """A few terminal lines: overall verdict, failing scenarios, claims, the report's path."""
    doc = built.doc
    c = doc["counts"]
    line = (
        f"bulletproof: {doc['verdict'].upper()} - {len(doc['scenarios'])} scenario(s): "
        f"{c['pass']} pass, {c['fail']} fail, {c['unknown']} unknown"
    )
    m = doc["mutations"]
    if m["total"]:
        line += f"; defects caught {m['caught']}/{m['total']}"
    known = doc.get("known_failures") or {}
    if known.get("total"):
        line += f"; known failures still failing {known['still_failing']}/{known['total']}"
    lines = [line]
    t = doc["totals"]
    if t["acknowledged"] is not None:
        lines.append(
            f"  lost {t['lost']} of {t['acknowledged']} acknowledged jobs; "
            f"{t['duplicated_executions']} duplicated executions"
        )
    for x in doc.get("skipped") or []:
        lines.append(f"  skipped {x.get('scenario')}: {x.get('reason')}")
    for s in doc["scenarios"]:
        # a target's known failure: a guarantee its app breaks, each with its evidence
        if results.is_known_failure(s) and s["outcome"] == "caught":
            for v in s["invariants"]:
                if v["status"] == "fail":
                    text = f"{v['name']}: {str(v['summary']).splitlines()[0]}"
                    lines.append(f"  known   {s['scenario']}: {text[:140]}")
        if s["outcome"] in ("fail", "missed", "unknown"):
            failed = [v["name"] for v in s["invariants"] if v["status"] != "pass"]
            why = s["error"] or s.get("miss_reason") or ", ".join(failed) or "no verdict"
            lines.append(f"  {s['outcome']:<7} {s['scenario']}: {why.splitlines()[0][:120]}")
            lines.append(f"          replay: {s['replay']}")
    statuses = [cl["status"] for cl in doc["claims"]]
    lines.append(
        f"  claims: {statuses.count('pass')} proven, {statuses.count('fail')} refuted, "
        f"{statuses.count('unknown')} undecided, {statuses.count('untested')} untested"
    )
    lines.append(f"  report: {built.index_html.resolve()}")
    lines.append(f"  results: {built.results_json.resolve()}")
    return lines
