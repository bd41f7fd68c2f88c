"""The one builder of the result document (schema: ``schema.md``) and its normalisation.

Scenarios call :func:`scenario_entry`, :func:`run_block` and :func:`result_document` to write
``results/<scenario>.json``; ``python -m harness.report`` reads those files back through
:func:`normalise_scenario` (the same code path) and :func:`result_document`. Verdicts merge with
:func:`harness.checker.merge`: there is no second merge rule here.

Loading never raises on bad input: a results file that cannot be read becomes a scenario entry
with verdict ``unknown`` and an ``error`` naming the file, so the report still renders.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.checker import UNKNOWN, Verdict, merge
from harness.report import runinfo
from harness.vocabulary import DEFECT_MARK

SCHEMA_VERSION = 2
VERDICTS = ("pass", "fail", "unknown")
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
PHASES = ("stack_start", "calibration", "faults", "settle", "collect", "check")

Json = dict[str, Any]


def _as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def verdict_of(statuses: Iterable[str]) -> str:
    """The checker's merge of ``statuses``; nothing checked is ``unknown``, never a pass
    (as ``harness.checker.merge([])`` answers once C6 lands; said here so an empty entry is
    never shown passing meanwhile)."""
    seen = [s if s in VERDICTS else UNKNOWN for s in statuses]
    return str(merge(seen)) if seen else UNKNOWN  # type: ignore[arg-type]


def outcome_of(
    verdict: str,
    expected: str,
    failed: Iterable[str] = (),
    expected_failing: Iterable[str] = (),
) -> str:
    """What a verdict means: ``pass|fail|unknown`` or, for a mutation, ``caught|missed|unknown``.

    A mutation is caught only when at least one of its ``expected_failing`` invariants is among
    the ``failed`` ones: a failure elsewhere, or a mutation naming no invariant, is a miss.
    """
    if expected != "fail":
        return verdict
    if set(expected_failing) & set(failed):
        return "caught"
    return "unknown" if verdict == "unknown" and not failed else "missed"


def miss_reason(entry: Mapping[str, Any]) -> str | None:
    """Why a mutation entry was not caught, in one line (``None`` when it was)."""
    if entry.get("outcome") == "caught" or entry.get("expected_verdict") != "fail":
        return None
    wanted = list(entry.get("expected_failing") or [])
    failed = [v["name"] for v in entry.get("invariants") or [] if v.get("status") == "fail"]
    if entry.get("error") and not failed:
        return f"no verdict: {str(entry['error']).splitlines()[0][:160]}"
    if not wanted:
        return "the entry names no invariant that must fail (expected_failing is empty)"
    if not failed:
        return f"every invariant passed; expected {', '.join(wanted)} to fail"
    return f"failed only on {', '.join(failed)}; expected {', '.join(wanted)} to fail"


def is_defect_run(entry: Mapping[str, Any]) -> bool:
    """A mutation entry: the system with a deliberate defect switched on, expected to fail."""
    return entry.get("expected_verdict") == "fail" and bool(entry.get("defect"))


def is_known_failure(entry: Mapping[str, Any]) -> bool:
    """A scenario against a user's app (``--target``) whose ``known_failures`` name invariants
    the app is known to break: its failures are the app's real ones, not a planted defect."""
    return entry.get("expected_verdict") == "fail" and not entry.get("defect")


def known_failures(scenarios: Iterable[Mapping[str, Any]]) -> Json:
    """``{still_failing, total, fixed: [scenario]}`` over the known-failure entries: ``fixed``
    are those whose declared invariants all passed (the app improved: update the target)."""
    known = [s for s in scenarios if is_known_failure(s)]
    fixed = [s["scenario"] for s in known if s.get("outcome") == "missed"]
    still = sum(1 for s in known if s.get("outcome") == "caught")
    return {"still_failing": still, "total": len(known), "fixed": fixed}


def outcome_counts_as(outcome: str) -> str:
    """The outcome's weight in the overall verdict (a caught defect is good news)."""
    return {"caught": "pass", "missed": "fail"}.get(outcome, outcome)


def scenario_module(name: str) -> str:
    """``worker_crash__defect_x`` -> ``scenarios/test_worker_crash.py``."""
    return f"scenarios/test_{name.split(DEFECT_MARK)[0]}.py"


def replay_command(name: str, seed: object, backend: str, profile: str) -> str:
    """The exact command that replays one scenario with the same seed, backend and profile."""
    parts = ["pytest", scenario_module(name)]
    if DEFECT_MARK in name:
        parts += ["-k", name]
    parts += ["--seed", str(seed)]
    if backend != "local":
        parts += ["--backend", backend]
    if profile != "fast":
        parts += ["--profile", profile]
    return shlex.join(parts)


def run_block(
    *,
    seed: object,
    backend: str,
    profile: str,
    started_at: float,
    finished_at: float | None = None,
    postgresql: str | None = None,
    toxiproxy: str | None = None,
    command: str | None = None,
) -> Json:
    """The ``run`` object: what ran, where, from which commit (``+dirty`` when modified)."""
    return {
        "seed": seed,
        "backend": backend,
        "profile": profile,
        "started_at": started_at,
        "finished_at": time.time() if finished_at is None else finished_at,
        "git_commit": runinfo.git_commit(),
        "versions": {
            "python": platform.python_version(),
            "procrastinate": runinfo.package_version("procrastinate"),
            "postgresql": postgresql,
            "toxiproxy": toxiproxy,
        },
        "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def _verdict_dict(v: Verdict | Mapping[str, Any]) -> Json:
    return v.to_dict() if isinstance(v, Verdict) else dict(v)


def scenario_entry(
    *,
    name: str,
    title: str,
    seed: object,
    verdicts: Sequence[Verdict | Mapping[str, Any]],
    expected_verdict: str | None = None,
    defect: str | None = None,
    expected_failing: Sequence[str] = (),
    error: str | None = None,
    duration: float | None = None,
    backend: str = "local",
    profile: str = "fast",
    claims: Sequence[str] = (),
    phases: Mapping[str, float | None] | None = None,
    calibration: Mapping[str, Any] | None = None,
    logs: Mapping[str, str] | None = None,
    replay: str | None = None,
) -> Json:
    """One scenario's entry, every documented key present (``schema.md``).

    ``verdicts`` are the checker's; accounting, retry delays and recoveries are read from the
    figures of ``queue_accounting``, ``retry_schedule`` and ``recovery_latency``. An entry with
    an ``error`` or no verdict is ``unknown``. ``expected_verdict`` defaults to ``fail`` when a
    ``defect`` is given. ``logs`` maps a process name to its log, relative to the reports dir.
    """
    if expected_verdict not in (None, "pass", "fail"):
        raise ValueError(f"expected_verdict must be 'pass' or 'fail', not {expected_verdict!r}")
    invariants = [_verdict_dict(v) for v in verdicts]
    by_name = {str(v.get("name")): v for v in invariants}

    def figures(invariant: str) -> Mapping[str, Any]:
        found = by_name.get(invariant, {}).get("figures")
        return found if isinstance(found, Mapping) else {}

    raw: Json = {
        "scenario": name,
        "title": title,
        "seed": seed,
        "expected_verdict": expected_verdict or ("fail" if defect else "pass"),
        "defect": defect,
        "expected_failing": list(expected_failing),
        "error": error,
        "duration": duration,
        "invariants": invariants,
        "accounting": dict(figures("queue_accounting")),
        "retry_delays": _as_list(figures("retry_schedule").get("retry_delays")),
        "recoveries": _as_list(figures("recovery_latency").get("recoveries")),
        "claims": list(claims),
        "phases": dict(phases or {}),
        "calibration": dict(calibration) if calibration is not None else None,
        "logs": dict(logs or {}),
    }
    if replay is not None:  # else derived from the name (scenarios/test_<name>.py)
        raw["replay"] = replay
    return normalise_scenario(raw, {"seed": seed, "backend": backend, "profile": profile})


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


def _phases(raw: object) -> Json:
    data = raw if isinstance(raw, Mapping) else {}
    out: Json = {key: _num(data.get(key)) for key in PHASES}
    out.update({str(k): _num(v) for k, v in data.items() if k not in out})
    return out


def normalise_scenario(raw: Mapping[str, Any], run: Mapping[str, Any]) -> Json:
    """Fill defaults so every documented key is present; derive verdict and outcome."""
    name = str(raw.get("scenario") or "unnamed")
    invariants = [normalise_invariant(v) for v in _as_list(raw.get("invariants"))]
    error = raw.get("error")
    verdict = verdict_of(v["status"] for v in invariants)
    if not invariants and raw.get("verdict") == "fail":
        verdict = "fail"  # an entry that recorded a failure but no invariant: never a pass
    if error and verdict == "pass":
        verdict = "unknown"
    defect = raw.get("defect")
    expected = raw.get("expected_verdict")
    if expected not in ("pass", "fail"):
        expected = "fail" if defect else "pass"
    expected_failing = [str(x) for x in _as_list(raw.get("expected_failing"))]
    failed = [v["name"] for v in invariants if v["status"] == "fail"]
    outcome = outcome_of(verdict, str(expected), failed, expected_failing)
    if error and outcome == "caught":  # the test itself says something went wrong
        outcome = "unknown"
    seed = raw.get("seed", run.get("seed"))
    backend = str(run.get("backend") or "local")
    profile = str(run.get("profile") or "fast")
    logs = raw.get("logs") if isinstance(raw.get("logs"), Mapping) else {}
    calibration = raw.get("calibration")
    entry: Json = {
        "scenario": name,
        "title": str(raw.get("title") or name.replace("_", " ")),
        "seed": seed,
        "verdict": verdict,
        "expected_verdict": expected,
        "outcome": outcome,
        "expected_failing": expected_failing,
        "caught_by": [n for n in expected_failing if n in failed],
        "defect": str(defect) if defect else None,
        "error": str(error) if error else None,
        "duration": _num(raw.get("duration")),
        "history": str(raw.get("history") or f"histories/{name}.jsonl"),
        "replay": str(raw.get("replay") or replay_command(name, seed, backend, profile)),
        "invariants": invariants,
        "accounting": normalise_accounting(raw.get("accounting")),
        "retry_delays": [d for d in _as_list(raw.get("retry_delays")) if isinstance(d, Mapping)],
        "recoveries": [r for r in _as_list(raw.get("recoveries")) if isinstance(r, Mapping)],
        "claims": [str(c) for c in _as_list(raw.get("claims"))],
        "phases": _phases(raw.get("phases")),
        "calibration": dict(calibration) if isinstance(calibration, Mapping) else None,
        "logs": {str(k): str(v) for k, v in (logs or {}).items()},
    }
    entry["miss_reason"] = miss_reason(entry)
    return entry


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
    return verdict_of(outcome_counts_as(str(s["outcome"])) for s in scenarios)


def counts(scenarios: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many scenarios ended in each outcome."""
    out = {k: 0 for k in ("pass", "fail", "unknown", "caught", "missed")}
    for s in scenarios:
        out[str(s["outcome"])] = out.get(str(s["outcome"]), 0) + 1
    return out


def mutation_score(scenarios: Iterable[Mapping[str, Any]]) -> Json:
    """``{caught, total, missed: [{scenario, defect, expected_failing, failed, reason}]}``
    over the mutation entries (:func:`is_defect_run`)."""
    mutations = [s for s in scenarios if is_defect_run(s)]
    missed = [
        {
            "scenario": s["scenario"],
            "defect": s.get("defect"),
            "expected_failing": list(s.get("expected_failing") or []),
            "failed": [v["name"] for v in s.get("invariants") or [] if v["status"] == "fail"],
            "reason": s.get("miss_reason") or miss_reason(s) or "",
        }
        for s in mutations
        if s.get("outcome") != "caught"
    ]
    return {"caught": len(mutations) - len(missed), "total": len(mutations), "missed": missed}


def run_totals(scenarios: Iterable[Mapping[str, Any]]) -> Json:
    """Whole-run queue figures over the non-mutation scenarios (a target's known failures are
    its app's real losses, so they count): acknowledged, lost, duplicated executions and
    duplicate effects (``None`` when no scenario measured them), with per-scenario counts of
    lost jobs and duplicated executions."""
    real = [s for s in scenarios if not is_defect_run(s)]
    out: Json = {}
    for key in ("acknowledged", "lost", "duplicated_executions", "duplicate_effects"):
        values = [
            int(v)
            for s in real
            if isinstance(v := (s.get("accounting") or {}).get(key), int)
            and not isinstance(v, bool)
        ]
        out[key] = sum(values) if values else None
    for key in ("lost", "duplicated_executions"):
        out[f"{key}_by_scenario"] = {
            s["scenario"]: (s.get("accounting") or {}).get(key)
            for s in real
            if (s.get("accounting") or {}).get(key)
        }
    return out


def result_document(run: Mapping[str, Any], entries: Iterable[Mapping[str, Any]]) -> Json:
    """The result document for ``entries`` (built by :func:`scenario_entry` or read from files):
    schema version, run, overall verdict, outcome counts, whole-run totals, mutation score and
    the normalised entries sorted by name. Claims are added by the report (``results.json``)."""
    scenarios = sorted(
        (normalise_scenario(raw, run) for raw in entries), key=lambda s: s["scenario"]
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "run": dict(run),
        "verdict": overall_verdict(scenarios),
        "counts": counts(scenarios),
        "totals": run_totals(scenarios),
        "mutations": mutation_score(scenarios),
        "known_failures": known_failures(scenarios),
        "scenarios": scenarios,
    }


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory, so a reader
    never sees half a file; readable by all (reports are artifacts meant to be shared)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_result(path: Path, document: Mapping[str, Any]) -> Path:
    """Write a result document (from :func:`result_document`) as JSON, atomically."""
    return write_atomic(path, json.dumps(document, indent=1, default=str) + "\n")
