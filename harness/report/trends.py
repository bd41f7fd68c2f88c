"""Trends across runs: ``<reports-dir>/trends.jsonl`` gets one line per run (rewritten, not
repeated, when the same run is rendered again) and the report shows, per scenario, the pass
rate and the drift of its key figures over the last runs, flagging flaky scenarios."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.report.results import outcome_counts_as, write_atomic

Json = dict[str, Any]
FILE = "trends.jsonl"
LAST_N = 10


def _max_latency(s: Mapping[str, Any]) -> float | None:
    values = [
        float(r["latency"])
        for r in s.get("recoveries") or []
        if isinstance(r.get("latency"), int | float) and not isinstance(r.get("latency"), bool)
    ]
    return max(values) if values else None


def snapshot(doc: Mapping[str, Any]) -> Json:
    """This run's line: when, which commit, and per scenario its outcome and key figures."""
    run = doc.get("run") or {}
    return {
        "run": f"{run.get('started_at')}|{run.get('command')}",
        "started_at": run.get("started_at"),
        "git_commit": run.get("git_commit"),
        "profile": run.get("profile"),
        "scenarios": {
            s["scenario"]: {
                "outcome": s["outcome"],
                "duration": s.get("duration"),
                "max_recovery_latency": _max_latency(s),
                "lost": (s.get("accounting") or {}).get("lost"),
                "duplicated_executions": (s.get("accounting") or {}).get("duplicated_executions"),
            }
            for s in doc.get("scenarios") or []
        },
    }


def read(path: Path) -> list[Json]:
    """Earlier lines (unreadable lines are skipped)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out: list[Json] = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and isinstance(value.get("scenarios"), dict):
            out.append(value)
    return out


def record(reports_dir: Path, doc: Mapping[str, Any]) -> list[Json]:
    """Append this run to ``trends.jsonl`` (replacing its earlier line) and return all lines."""
    path = reports_dir / FILE
    mine = snapshot(doc)
    lines = [x for x in read(path) if x.get("run") != mine["run"]] + [mine]
    write_atomic(path, "".join(json.dumps(x, default=str) + "\n" for x in lines))
    return lines


def _drift(values: Sequence[float | None]) -> Json | None:
    seen = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not seen:
        return None
    ordered = sorted(seen)
    return {
        "first": seen[0],
        "last": seen[-1],
        "median": ordered[len(ordered) // 2],
        "max": ordered[-1],
    }


def summarise(lines: Sequence[Mapping[str, Any]], last_n: int = LAST_N) -> Json:
    """Per scenario over the last ``last_n`` runs that ran it: ``runs``, ``passed``, the
    outcome sequence, ``flaky`` (both passed and failed) and the drift of duration and of the
    slowest recovery latency."""
    recent = list(lines)[-last_n:]
    names = sorted({n for x in recent for n in x.get("scenarios", {})})
    out: Json = {}
    for name in names:
        seen = [x["scenarios"][name] for x in recent if name in x.get("scenarios", {})]
        weights = [outcome_counts_as(str(s.get("outcome"))) for s in seen]
        out[name] = {
            "runs": len(seen),
            "passed": weights.count("pass"),
            "outcomes": [str(s.get("outcome")) for s in seen],
            "flaky": "pass" in weights and "fail" in weights,
            "duration": _drift([s.get("duration") for s in seen]),
            "max_recovery_latency": _drift([s.get("max_recovery_latency") for s in seen]),
        }
    return {"window": len(recent), "scenarios": out}
