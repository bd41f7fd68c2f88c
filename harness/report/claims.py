"""Every guarantee the seed document makes, the scenario + invariant that tests it, and its figure.

Honest claims: a claim is proven (``pass``) only when every scenario it names ran in this run
and passed the invariant that states the claim's property; any failure refutes it; a claim
whose named scenarios did not all run is ``unknown`` (some ran) or ``untested`` ("not tested in
this run": none ran), never dropped. "No duplicate task execution" is refuted as stated whenever
a duplicated execution was counted (delivery is at-least-once), next to what is proven instead.
Scenarios may list claim keys in their result's ``claims``; that adds them as evidence.
Mutation scenarios are never evidence: their failure is expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.report.results import is_defect_run, verdict_of

MAX_IDS = 8

Json = dict[str, Any]
Figure = Callable[[Mapping[str, Any], Mapping[str, Any] | None], "str | None"]

NO_DUPLICATE_EXECUTION = "no_duplicate_execution"
STALL_DETECTION = "stall_detection_latency"
#: The seed document's bound on stalled-job detection (10 minutes).
SEED_STALL_BOUND = 600.0
ALL_LOAD_SCENARIOS = (
    "worker_crash",
    "network_cut",
    "system_restart",
    "database_drop",
    "idempotency",
    "backoff_schedule",
    "job_timeout",
    "stalled_recovery",
    "graceful_shutdown",
)


def _fmt_s(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
        return f"{value:.{digits}f} s"
    return "?"


def fig_summary(scenario: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> str | None:
    """The invariant's own one-line summary."""
    if verdict is None:
        return None
    text = str(verdict.get("summary") or "")
    return text if len(text) <= 200 else text[:197] + "..."


def _ids(ids: Sequence[object]) -> str:
    shown = ", ".join(str(i) for i in ids[:MAX_IDS])
    return shown + (f" and {len(ids) - MAX_IDS} more" if len(ids) > MAX_IDS else "")


def fig_accounting(scenario: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> str | None:
    """E.g. ``40 acknowledged: 40 succeeded, 0 failed, 0 lost``; a loss leads."""
    acc = scenario.get("accounting") or {}
    if acc.get("acknowledged") is None:
        return fig_summary(scenario, verdict)
    text = (
        f"{acc['acknowledged']} acknowledged: {acc.get('succeeded', '?')} succeeded, "
        f"{acc.get('failed', '?')} failed explicitly, {acc.get('lost', '?')} lost"
    )
    if acc.get("lost"):
        word = "job" if acc["lost"] == 1 else "jobs"
        text = (
            f"{word} {_ids(acc.get('lost_ids') or [])} lost, {acc['lost']} of "
            f"{acc['acknowledged']} acknowledged; {acc.get('succeeded', '?')} succeeded"
        )
    if acc.get("unexpected"):
        text += f", {acc['unexpected']} unexpected"
    if acc.get("recovered"):
        text += f", {acc['recovered']} unknown submissions ran anyway"
    return text


def fig_duplicates(scenario: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> str | None:
    """Duplicate effects (must be 0) beside duplicate executions (allowed, counted)."""
    acc = scenario.get("accounting") or {}
    if acc.get("duplicate_effects") is None:
        return fig_summary(scenario, verdict)
    return (
        f"{acc['duplicate_effects']} duplicate effects; "
        f"{acc.get('duplicated_executions', '?')} duplicate executions (at-least-once: counted)"
    )


def fig_recovery(scenario: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> str | None:
    """The failures first ("job 6 never ran again, 1 of 5"), else the slowest recovery against
    its budget, e.g. ``recovered in 2.4 s, budget 3.5 s``."""
    every = list(scenario.get("recoveries") or [])
    never = [r for r in every if not isinstance(r.get("latency"), int | float)]
    late = [
        r
        for r in every
        if isinstance(r.get("latency"), int | float)
        and isinstance(r.get("budget"), int | float)
        and r["latency"] > r["budget"]
    ]
    if never or late:
        parts = []
        if never:
            ids = [r.get("job_id") for r in never]
            word = "job" if len(ids) == 1 else "jobs"
            parts.append(f"{word} {_ids(ids)} never ran again")
        for r in late[:3]:
            parts.append(
                f"job {r.get('job_id')} recovered in {_fmt_s(r['latency'])}, over its "
                f"{_fmt_s(r['budget'])} budget"
            )
        return f"{'; '.join(parts)}, {len(never) + len(late)} of {len(every)}"
    recs = [r for r in every if isinstance(r.get("latency"), int | float)]
    if not recs:
        return fig_summary(scenario, verdict)
    worst = max(recs, key=lambda r: r["latency"])
    what = str(worst.get("what") or "job")
    text = f"{what} recovered in {_fmt_s(worst['latency'])}, budget {_fmt_s(worst.get('budget'))}"
    if len(recs) > 1:
        text = f"slowest of {len(recs)}: {text}"
    return text


def fig_backoff(scenario: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> str | None:
    """How far observed retry delays strayed from the formula."""
    delays = [
        d
        for d in scenario.get("retry_delays") or []
        if isinstance(d.get("observed"), int | float) and isinstance(d.get("expected"), int | float)
    ]
    if not delays:
        return fig_summary(scenario, verdict)
    worst = max(delays, key=lambda d: abs(d["observed"] - d["expected"]))
    dev = worst["observed"] - worst["expected"]
    return (
        f"{len(delays)} retry delays; worst {_fmt_s(worst['observed'])} vs "
        f"{_fmt_s(worst['expected'])} expected ({dev:+.2f} s, tolerance "
        f"{_fmt_s(worst.get('tolerance'))})"
    )


def fig_backoff_cap(scenario: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> str | None:
    """The largest delay the formula asked for and the largest one observed."""
    delays = [d for d in scenario.get("retry_delays") or [] if "expected" in d and "observed" in d]
    if not delays:
        return fig_summary(scenario, verdict)
    top_e = max(float(d["expected"]) for d in delays)
    top_o = max(float(d["observed"]) for d in delays)
    return f"largest expected delay {_fmt_s(top_e)}, largest observed {_fmt_s(top_o)}"


def fig_retry_window(scenario: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> str | None:
    """Per job, the sum of retry delays: the observed retry window against the formula's."""
    per_job: dict[object, tuple[float, float]] = {}
    for d in scenario.get("retry_delays") or []:
        if isinstance(d.get("observed"), int | float) and isinstance(
            d.get("expected"), int | float
        ):
            obs, exp = per_job.get(d.get("job_id"), (0.0, 0.0))
            per_job[d.get("job_id")] = (obs + d["observed"], exp + d["expected"])
    if not per_job:
        return fig_summary(scenario, verdict)
    obs, exp = max(per_job.values(), key=lambda p: p[1])
    return f"longest retry window {_fmt_s(obs)} observed, {_fmt_s(exp)} by the formula"


#: Figures that lead with the failure themselves when there is one.
FAILURE_FIRST: tuple[Figure, ...] = (fig_accounting, fig_recovery)
FIGURE_BY_INVARIANT: dict[str, Figure] = {
    "queue_accounting": fig_accounting,
    "no_duplicate_effects": fig_duplicates,
    "recovery_latency": fig_recovery,
    "retry_schedule": fig_backoff,
}


@dataclass(frozen=True)
class Claim:
    """One guarantee, quoted from the seed document, and how it is tested."""

    key: str
    text: str
    section: str
    tests: tuple[tuple[str, str], ...]
    figure: Figure = fig_summary
    note: str = ""


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "backoff_formula",
        "Exponential backoff: delay = min(base_delay × 2^attempts, max_delay); "
        "attempt 2 after 2 s, 3 after 4 s, 4 after 8 s, 5 after 16 s",
        "Key features §1",
        (("backoff_schedule", "retry_schedule"), ("network_cut", "retry_schedule")),
        fig_backoff,
    ),
    Claim(
        "backoff_cap",
        "Retry delays are capped at max_delay (300 s)",
        "Key features §1",
        (("backoff_schedule", "retry_schedule"),),
        fig_backoff_cap,
    ),
    Claim(
        "retry_window",
        "Up to 5 retry attempts; total retry window ~30 seconds",
        "Guarantee 2",
        (("backoff_schedule", "retry_schedule"),),
        fig_retry_window,
    ),
    Claim(
        "max_attempts",
        "A task runs at most max_attempts (5) times, then fails explicitly",
        "Task configuration matrix",
        (("network_cut", "attempt_count"), ("backoff_schedule", "attempt_count")),
        note="Procrastinate's own RetryStrategy(max_attempts=n) means n+1 runs.",
    ),
    Claim(
        "timeout_cancels",
        "Tasks exceeding JOB_TIMEOUT are automatically cancelled",
        "Key features §2",
        (("job_timeout", "job_timeout"),),
    ),
    Claim(
        "timeout_retries",
        "A timeout triggers a retry with exponential backoff",
        "Key features §2",
        (("job_timeout", "job_timeout"), ("job_timeout", "retry_schedule")),
        note="The seed's retry_exceptions list omits TimeoutError.",
    ),
    Claim(
        "stalled_recovery",
        "Stalled jobs ('doing' with a dead worker) are detected and retried automatically",
        "Key features §3",
        (("stalled_recovery", "recovery_latency"), ("worker_crash", "recovery_latency")),
        fig_recovery,
    ),
    Claim(
        STALL_DETECTION,
        "Maximum stalled-job detection latency: 10 minutes (the check interval)",
        "Guarantee 1",
        (("stalled_recovery", "recovery_latency"),),
        fig_recovery,
    ),
    Claim(
        "no_loss_worker_crash",
        "No tasks are lost due to worker crashes",
        "Guarantee 1",
        (("worker_crash", "queue_accounting"),),
        fig_accounting,
    ),
    Claim(
        "no_loss_network",
        "No tasks are lost due to network failures (external API unavailable)",
        "Guarantee 2",
        (("network_cut", "queue_accounting"),),
        fig_accounting,
    ),
    Claim(
        "no_loss_restart",
        "No tasks are lost due to system restarts; jobs resume on startup",
        "Guarantee 3",
        (("system_restart", "queue_accounting"),),
        fig_accounting,
    ),
    Claim(
        "no_loss_database",
        "No tasks are lost when the PostgreSQL connection is temporarily lost; "
        "the worker continues after reconnection",
        "Guarantee 4",
        (("database_drop", "queue_accounting"), ("database_drop", "recovery_latency")),
        fig_accounting,
        note="Not true of Procrastinate 3.10 out of the box: the worker needs supervision.",
    ),
    Claim(
        "complete_or_fail",
        "All tasks eventually complete or fail explicitly",
        "Key features §3, Summary",
        tuple((s, "queue_accounting") for s in ALL_LOAD_SCENARIOS),
        fig_accounting,
    ),
    Claim(
        "no_duplicate_effects",
        "Idempotent operations (INSERT … ON CONFLICT DO UPDATE): no duplicate jokes",
        "Guarantee 5, Test 5",
        (("idempotency", "no_duplicate_effects"), ("worker_crash", "no_duplicate_effects")),
        fig_duplicates,
    ),
    Claim(
        NO_DUPLICATE_EXECUTION,
        "No duplicate task execution",
        "Guarantee 5",
        tuple((s, "queue_accounting") for s in ALL_LOAD_SCENARIOS),
        note="Refuted as stated whenever a run re-executes a job: delivery is at-least-once. "
        "Proven instead: no duplicate effects, every job completes or fails explicitly, and "
        "every re-execution is justified by a fault.",
    ),
    Claim(
        "justified_reruns",
        "Every re-execution is justified by a fault that could have stopped the earlier run; "
        "two runs of a job never overlap",
        "Guarantee 5 (what holds instead of no duplicate execution)",
        (
            ("worker_crash", "justified_reruns"),
            ("stalled_recovery", "justified_reruns"),
            ("graceful_shutdown", "justified_reruns"),
        ),
    ),
    Claim(
        "job_effects",
        "Every succeeded job stored its joke; no job that failed left one",
        "Guarantee 5 (effects tied to jobs)",
        (("idempotency", "job_effects"), ("network_cut", "job_effects")),
    ),
    Claim(
        "queueing_lock_periodic",
        "Queueing locks prevent duplicate periodic tasks",
        "Guarantee 5",
        (),
    ),
    Claim(
        "graceful_shutdown",
        "Graceful shutdown waits up to WORKER_TIMEOUT for running jobs to complete",
        "Key features §5",
        (("graceful_shutdown", "graceful_shutdown"),),
    ),
    Claim(
        "shutdown_stalled_retried",
        "Jobs still running at shutdown are marked stalled and retried on the next worker start",
        "Key features §5",
        (("graceful_shutdown", "queue_accounting"), ("graceful_shutdown", "recovery_latency")),
        fig_accounting,
    ),
    Claim(
        "health_monitoring",
        "Health monitoring detects loss of database connectivity",
        "Key features §6",
        (("health_monitoring", "health_transitions"), ("database_drop", "health_transitions")),
    ),
    Claim(
        "automatic_recovery",
        "Zero manual intervention: fully automated recovery",
        "Summary",
        (
            ("worker_crash", "recovery_latency"),
            ("system_restart", "recovery_latency"),
            ("database_drop", "recovery_latency"),
        ),
        fig_recovery,
    ),
    Claim(
        "listen_notify_latency",
        "Real-time job notifications with listen_notify (low latency)",
        "Key features §4",
        (),
    ),
    Claim(
        "thundering_herd",
        "Exponential backoff prevents the thundering-herd problem",
        "Key features §1",
        (),
    ),
    Claim(
        "traceability",
        "Full traceability: job history preserved (delete_jobs='never')",
        "Key features §4, Summary",
        (),
    ),
)
CLAIMS_BY_KEY = {c.key: c for c in CLAIMS}


def _evidence(claim: Claim, scenario: Mapping[str, Any], invariant: str | None) -> Json | None:
    verdicts = {v["name"]: v for v in scenario.get("invariants") or []}
    if invariant is not None and invariant in verdicts:
        v = verdicts[invariant]
        # The claim's own figure belongs to its main invariant; others show their usual one.
        main = claim.tests[0][1] if claim.tests else None
        figure_of = claim.figure if invariant == main else FIGURE_BY_INVARIANT.get(invariant)
        figure_of = figure_of or fig_summary
        if v["status"] == "fail" and figure_of not in FAILURE_FIRST:
            figure_of = fig_summary  # the checker's summary leads with the failure
        status, figure = v["status"], figure_of(scenario, v)
    elif invariant is None and verdicts:
        status = scenario["verdict"]
        figure = ", ".join(f"{v['name']} {v['status']}" for v in verdicts.values())
    elif scenario.get("error"):
        status, figure = "unknown", f"scenario did not finish: {scenario['error']}"[:200]
    else:
        return None
    return {
        "scenario": scenario["scenario"],
        "invariant": invariant,
        "verdict": status,
        "figure": figure,
    }


def evaluate(scenarios: Sequence[Mapping[str, Any]]) -> list[Json]:
    """Each claim with its evidence from this run and its status (see the module's rule)."""
    real = {s["scenario"]: s for s in scenarios if not is_defect_run(s)}
    declared: dict[str, list[str]] = {}
    for s in real.values():
        for key in s.get("claims") or []:
            declared.setdefault(str(key), []).append(s["scenario"])
    out: list[Json] = []
    for claim in CLAIMS:
        pairs: list[tuple[str, str | None]] = list(claim.tests)
        tested_names = {name for name, _ in claim.tests}
        for name in declared.get(claim.key, []):
            if name not in tested_names:
                own: list[str | None] = list(dict.fromkeys(i for _, i in claim.tests)) or [None]
                pairs.extend((name, inv) for inv in own)
        pairs = list(dict.fromkeys(pairs))
        tested_by = [f"{n}/{i}" if i else n for n, i in pairs]
        if claim.key == NO_DUPLICATE_EXECUTION:
            out.append(_duplicate_execution(claim, real, tested_by))
            continue
        evidence = [
            ev for name, inv in pairs if name in real and (ev := _evidence(claim, real[name], inv))
        ]
        if claim.key == STALL_DETECTION:
            evidence = [_against_seed_bound(ev, real[ev["scenario"]]) for ev in evidence]
        missing = [n for n in dict.fromkeys(n for n, _ in pairs) if n not in real]
        out.append(
            _entry(claim.key, claim.text, claim.section, claim.note, evidence, tested_by, missing)
        )
    for key, names in sorted(declared.items()):
        if key not in CLAIMS_BY_KEY:
            generic = Claim(key, key, "declared by a scenario", ())
            evidence = [e for n in names if (e := _evidence(generic, real[n], None))]
            note = f"claim key {key!r} is not in harness/report/claims.py"
            out.append(_entry(key, key, "declared by a scenario", note, evidence, names, []))
    return out


def _against_seed_bound(evidence: Json, scenario: Mapping[str, Any]) -> Json:
    """The claim states the seed's 10-minute bound: a pass against the run's own budget proves
    it only when the recoveries carry that bound (``seed_bound``, the checker's) and meet it."""
    if evidence["verdict"] != "pass":
        return evidence
    recs = [r for r in scenario.get("recoveries") or [] if isinstance(r, Mapping)]
    bounds = [r.get("seed_bound") for r in recs]
    if not recs or not all(isinstance(b, int | float) for b in bounds):
        return {
            **evidence,
            "verdict": "unknown",
            "figure": f"{evidence['figure']}; measured against the run's budget, not the "
            f"seed's {SEED_STALL_BOUND / 60:.0f}-minute bound: not the property claimed",
        }
    worst = max(float(r["latency"] or 0.0) for r in recs)
    bound = min(float(b) for b in bounds)  # type: ignore[arg-type]
    verdict = (
        "pass" if worst <= bound and all(r.get("latency") is not None for r in recs) else "fail"
    )
    return {
        **evidence,
        "verdict": verdict,
        "figure": f"{evidence['figure']}; seed's bound {_fmt_s(bound)}",
    }


def _duplicate_execution(
    claim: Claim, real: Mapping[str, Mapping[str, Any]], tested_by: Sequence[str]
) -> Json:
    """Refuted as stated by any duplicated execution, with the count per scenario."""
    evidence: list[Json] = []
    names = list(dict.fromkeys(n.split("/", 1)[0] for n in tested_by))
    ran = sorted(real)  # a duplicated execution counts wherever it happened
    total = 0
    for name in ran:
        acc = real[name].get("accounting") or {}
        count = acc.get("duplicated_executions")
        if not isinstance(count, int) or isinstance(count, bool):
            continue
        total += count
        if count:
            ids = _ids(acc.get("duplicated_ids") or [])
            evidence.append(
                {
                    "scenario": name,
                    "invariant": "queue_accounting",
                    "verdict": "fail",
                    "figure": f"{count} duplicated execution{'s' if count != 1 else ''}"
                    + (f" (jobs {ids})" if ids else ""),
                }
            )
    entry = _entry(claim.key, claim.text, claim.section, claim.note, evidence, tested_by, [])
    entry["see_also"] = ["no_duplicate_effects", "complete_or_fail", "justified_reruns"]
    if not ran:
        entry["status"] = "untested"
    elif total:
        entry["status"] = "fail"
        entry["figure"] = f"refuted as stated: {total} duplicated executions in this run"
    else:
        entry["status"] = "unknown"
        entry["figure"] = (
            "0 duplicated executions in this run, but delivery is at-least-once by design: "
            "not proven"
        )
    entry["missing"] = [n for n in names if n not in real]
    return entry


def _entry(
    key: str,
    text: str,
    section: str,
    note: str,
    evidence: Iterable[Json],
    tested_by: Sequence[str],
    missing: Sequence[str],
) -> Json:
    evidence = list(evidence)
    status = verdict_of(e["verdict"] for e in evidence) if evidence else "untested"
    if missing and status == "pass":
        status = "unknown"  # proven only when every scenario it names ran and passed
    return {
        "key": key,
        "text": text,
        "section": section,
        "note": note,
        "status": status,
        "tested_by": list(tested_by),
        "missing": list(missing),
        "evidence": evidence,
    }
