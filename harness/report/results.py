"""Per-scenario results in, one normalised ``results.json`` out (schema: ``schema.md``).

Loading never raises on bad input: a results file that cannot be read becomes a scenario entry
with verdict ``unknown`` and an ``error`` naming the file, so the report still renders.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
VERDICTS = ("pass", "fail", "unknown")
INVARIANTS = (
    "queue_accounting",
    "no_duplicate_effects",
    "retry_schedule",
    "attempt_count",
    "job_timeout",
    "recovery_latency",
    "health_transitions",
    "graceful_shutdown",
)
ACCOUNTING_COUNTS = (
    "acknowledged",
    "succeeded",
    "failed",
    "lost",
    "unexpected",
    "recovered",
    "unknown",
    "duplicated_executions",
    "duplicate_effects",
)
ACCOUNTING_IDS = ("lost_ids", "duplicated_ids", "unexpected_ids")
DEFECT_MARK = "__defect_"

Json = dict[str, Any]


def merge_verdicts(verdicts: Iterable[str]) -> str:
    """Any ``fail`` -> fail; else any ``unknown`` (or nothing at all) -> unknown; else pass."""
    seen = list(verdicts)
    if "fail" in seen:
        return "fail"
    if not seen or any(v != "pass" for v in seen):
        return "unknown"
    return "pass"


def outcome_of(
    verdict: str,
    expected: str,
    failed: Iterable[str] = (),
    expected_failing: Iterable[str] = (),
) -> str:
    """What a verdict means: ``pass|fail|unknown`` or, for a mutation, ``caught|missed|unknown``.

    A mutation is caught when its verdict is fail and, if ``expected_failing`` names
    invariants, at least one of them is among the ``failed`` ones.
    """
    if expected != "fail":
        return verdict
    if verdict == "fail":
        wanted = set(expected_failing)
        return "caught" if not wanted or wanted & set(failed) else "missed"
    return "missed" if verdict == "pass" else "unknown"


def outcome_counts_as(outcome: str) -> str:
    """The outcome's weight in the overall verdict (a caught defect is good news)."""
    return {"caught": "pass", "missed": "fail"}.get(outcome, outcome)


def scenario_module(name: str) -> str:
    """``worker_crash__defect_x`` -> ``scenarios/test_worker_crash.py``."""
    return f"scenarios/test_{name.split(DEFECT_MARK)[0]}.py"


def replay_command(name: str, seed: object, backend: str, profile: str) -> str:
    """The exact command that replays one scenario with the same seed, backend and profile."""
    target = scenario_module(name)
    if DEFECT_MARK in name:
        target = f"{target} -k {name}"
    parts = ["pytest", *shlex.split(target), "--seed", str(seed)]
    if backend != "local":
        parts += ["--backend", backend]
    if profile != "fast":
        parts += ["--profile", profile]
    return shlex.join(parts)


def _as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def normalise_invariant(raw: object) -> Json:
    """A Verdict as a dict with every key present (unknown status when malformed)."""
    data = raw if isinstance(raw, Mapping) else {}
    status = data.get("status")
    return {
        "name": str(data.get("name") or "unnamed"),
        "status": status if status in VERDICTS else "unknown",
        "summary": str(data.get("summary") or ""),
        "figures": dict(data["figures"]) if isinstance(data.get("figures"), Mapping) else {},
        "evidence": _as_list(data.get("evidence")),
    }


def normalise_accounting(raw: object) -> Json:
    """Accounting counts (``None`` when not measured) and id lists."""
    data = raw if isinstance(raw, Mapping) else {}
    out: Json = dict(data)  # extra keys (e.g. ``rejected``, ``statuses``) are kept
    out.update({key: data.get(key) for key in ACCOUNTING_COUNTS})
    for key in ACCOUNTING_IDS:
        out[key] = _as_list(data.get(key))
    return out


def normalise_scenario(raw: Mapping[str, Any], run: Mapping[str, Any]) -> Json:
    """Fill defaults so every documented key is present; derive verdict and outcome."""
    name = str(raw.get("scenario") or "unnamed")
    invariants = [normalise_invariant(v) for v in _as_list(raw.get("invariants"))]
    verdict = raw.get("verdict")
    if verdict not in VERDICTS:
        verdict = merge_verdicts(v["status"] for v in invariants)
    error = raw.get("error")
    if error and verdict == "pass":
        verdict = "unknown"
    expected = raw.get("expected_verdict")
    if expected not in VERDICTS:
        expected = "fail" if DEFECT_MARK in name else "pass"
    expected_failing = [str(x) for x in _as_list(raw.get("expected_failing"))]
    failed = [v["name"] for v in invariants if v["status"] == "fail"]
    outcome = outcome_of(str(verdict), str(expected), failed, expected_failing)
    if error and outcome == "caught":  # the test itself says something went wrong
        outcome = "unknown"
    seed = raw.get("seed", run.get("seed"))
    backend = str(run.get("backend") or "local")
    profile = str(run.get("profile") or "fast")
    return {
        "scenario": name,
        "title": str(raw.get("title") or name.replace("_", " ")),
        "seed": seed,
        "verdict": verdict,
        "expected_verdict": expected,
        "outcome": outcome,
        "expected_failing": expected_failing,
        "defect": name.split(DEFECT_MARK, 1)[1] if DEFECT_MARK in name else raw.get("defect"),
        "error": str(error) if error else None,
        "duration": _num(raw.get("duration")),
        "history": str(raw.get("history") or f"histories/{name}.jsonl"),
        "replay": str(raw.get("replay") or replay_command(name, seed, backend, profile)),
        "invariants": invariants,
        "accounting": normalise_accounting(raw.get("accounting")),
        "retry_delays": [d for d in _as_list(raw.get("retry_delays")) if isinstance(d, Mapping)],
        "recoveries": [r for r in _as_list(raw.get("recoveries")) if isinstance(r, Mapping)],
        "claims": [str(c) for c in _as_list(raw.get("claims"))],
    }


def _error_entry(name: str, error: str) -> Json:
    return {"scenario": name, "verdict": "unknown", "error": error}


def load_result_file(path: Path) -> tuple[Json, list[Json]]:
    """Read one ``results/<scenario>.json``: its ``run`` block and its raw scenario entries.

    Accepts the full document shape (``{"run":…, "scenarios": [...]}``) or a bare scenario.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, [_error_entry(path.stem, f"{path.name}: unreadable results file ({exc})")]
    if not isinstance(data, Mapping):
        return {}, [_error_entry(path.stem, f"{path.name}: expected a JSON object")]
    run = dict(data["run"]) if isinstance(data.get("run"), Mapping) else {}
    if "scenarios" in data:
        entries = [dict(s) for s in _as_list(data["scenarios"]) if isinstance(s, Mapping)]
        if not entries:
            entries = [_error_entry(path.stem, f"{path.name}: no scenario entries")]
        return run, entries
    raw = dict(data)
    raw.setdefault("scenario", path.stem)
    return run, [raw]


def load_results(results_dir: Path, since: float | None = None) -> tuple[list[Json], list[Json]]:
    """Every result file in ``results_dir`` (modified at or after ``since`` when given).

    Returns the run blocks found and the raw scenario entries, sorted by scenario name.
    """
    runs: list[Json] = []
    entries: list[Json] = []
    if not results_dir.is_dir():
        return runs, entries
    for path in sorted(results_dir.glob("*.json")):
        if since is not None and path.stat().st_mtime < since:
            continue
        run, found = load_result_file(path)
        if run:
            runs.append(run)
        entries.extend(found)
    entries.sort(key=lambda e: str(e.get("scenario")))
    return runs, entries


def overall_verdict(scenarios: Iterable[Mapping[str, Any]]) -> str:
    """The run's verdict: caught defects count as passes, missed ones as failures."""
    return merge_verdicts(outcome_counts_as(str(s["outcome"])) for s in scenarios)


def counts(scenarios: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many scenarios ended in each outcome."""
    out = {k: 0 for k in ("pass", "fail", "unknown", "caught", "missed")}
    for s in scenarios:
        out[str(s["outcome"])] = out.get(str(s["outcome"]), 0) + 1
    return out


def aggregate(run: Mapping[str, Any], raw_scenarios: Iterable[Mapping[str, Any]]) -> Json:
    """Build the ``results.json`` document (without claims; see :mod:`harness.report.claims`)."""
    scenarios = [normalise_scenario(raw, run) for raw in raw_scenarios]
    return {
        "schema_version": SCHEMA_VERSION,
        "run": dict(run),
        "verdict": overall_verdict(scenarios),
        "counts": counts(scenarios),
        "scenarios": scenarios,
    }
