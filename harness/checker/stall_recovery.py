"""Stalled-job recovery amid faults: a run whose worker was killed runs again within the
stall-recovery budget, when another worker was there to recover it.

The bug it exists to catch: a recovery that comes too late (``slow-stall-recovery``: twice
the threshold; a check interval not honoured), which loses no job and so passes every other
check of a random run, while the job waits for minutes in production.

:func:`harness.checker.recovery_latency.check_recovery_latency` judges the scripted
scenarios. Here faults overlap, so a kill is judged only when recovery was possible all
along: from the kill to the budget's end, at least one other worker was running (not killed,
SIGTERMed or paused) and nothing held the database up (PostgreSQL down, a database-link
fault of any kind). Runs that ended by themselves (succeeded, failed, or scheduled a retry)
were not stalled. A run of the recovery task itself cut short in the window (its worker died
with it: stalled-job recovery later re-queued it) costs the system up to two check intervals
(the next copy is deferred at the first schedule tick one interval after the lost one began),
so each such run adds ``lost_recovery_allowance`` to that kill's budget, said in the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.checker.runs import DATABASE_STOPPING, acknowledged_ids, meets, runs_by_job
from harness.checker.verdict import FAIL, PASS, Verdict
from harness.history.records import Fault, History
from harness.vocabulary import RECOVERY_TASK, EventType, FaultKind, Invariant, Target, worker_of

NAME = Invariant.RECOVERY_LATENCY
_STOPS_WORKER = frozenset({FaultKind.KILL, FaultKind.SIGTERM, FaultKind.PAUSE})


def check_stall_recovery_amid_faults(
    history: History,
    *,
    workers: Sequence[str],
    budget: float,
    lost_recovery_allowance: float = 0.0,
) -> Verdict:
    """Fail when a run in flight on a killed worker (judged kills only, see the module) did
    not start again within ``budget`` of the kill. Budget: harness/budgets.py's
    ``stall_recovery`` (heartbeat interval + threshold + check interval + poll + tolerance)."""
    horizon = history.end.finished_at if history.end else float("inf")
    by_job = runs_by_job(history)
    ids = acknowledged_ids(history)
    evidence: list[str] = []
    rows: list[dict[str, Any]] = []
    skipped = 0
    kills = [f for f in history.faults if f.kind_ == FaultKind.KILL and worker_of(f.target)]
    jobs = history.jobs
    lost_runs = [
        run.start
        for job_id, runs in by_job.items()
        if job_id in jobs and jobs[job_id].task_name.endswith(RECOVERY_TASK)
        for run in runs
        if run.recovered
    ]
    for kill in kills:
        victim = worker_of(kill.target)
        until = kill.start + budget
        if not _recoverable(history, kill, workers, until, horizon):
            skipped += 1
            continue
        lost = sum(1 for start in lost_runs if kill.start <= start <= until)
        allowed = budget + lost * lost_recovery_allowance
        for job_id in ids:
            runs = by_job.get(job_id, [])
            for run in runs:
                in_flight = run.start <= kill.start and (run.end is None or run.end > kill.start)
                if not in_flight or run.worker != victim:
                    continue
                if run.end_type in (EventType.SUCCEEDED, EventType.FAILED) or (run.scheduled_retry):
                    continue  # ended by itself: not stalled
                again = next((r for r in runs if r.number > run.number), None)
                latency = None if again is None else round(again.start - kill.start, 4)
                rows.append(
                    {
                        "kill": f"{kill.target} at {kill.start:.3f}",
                        "job_id": job_id,
                        "latency": latency,
                        "budget": round(allowed, 4),
                        "lost_recovery_runs": lost,
                    }
                )
                if latency is None or latency > allowed:
                    late = "never ran again" if latency is None else f"ran again {latency:.3f}s"
                    lost_note = f" ({lost} recovery runs lost in it)" if lost else ""
                    evidence.append(
                        f"job {job_id} run {run.number}, in flight on {victim} killed at "
                        f"{kill.start:.3f}: {late} after the kill, budget {allowed:.3f}s"
                        f"{lost_note}"
                    )
    figures: dict[str, Any] = {
        "budget": budget,
        "kills": len(kills),
        "not_judged": skipped,
        "recoveries": rows,
    }
    if evidence:
        return Verdict(
            NAME,
            FAIL,
            f"{evidence[0]} ({len(evidence)} of {len(rows)} stalled runs recovered late)",
            figures,
            evidence,
        )
    if not rows:
        return Verdict(
            NAME,
            PASS,
            f"nothing to judge: no run stalled by a judged kill ({len(kills)} kills, "
            f"{skipped} met another fault)",
            figures,
        )
    slowest = max(r["latency"] for r in rows)
    lost_total = sum(r["lost_recovery_runs"] for r in rows)
    return Verdict(
        NAME,
        PASS,
        f"{len(rows)} stalled runs ran again within {slowest:.3f}s of their worker's kill, "
        f"budget {budget:.3f}s ({skipped} kills not judged"
        + (
            f"; {lost_total} recovery runs lost, +{lost_recovery_allowance:.3f}s each"
            if lost_total
            else ""
        )
        + ")",
        figures,
    )


def _recoverable(
    history: History, kill: Fault, workers: Sequence[str], until: float, horizon: float
) -> bool:
    """Another worker ran all along [kill, until] and nothing held the database up."""
    victim = worker_of(kill.target)
    others = [w for w in workers if w != victim]
    down: dict[str, bool] = {w: False for w in others}
    for f in history.faults:
        if not meets(kill.start, until, f, horizon):
            continue
        if f.kind_ in DATABASE_STOPPING or f.target in (Target.POSTGRES, Target.DBLINK):
            return False
        name = worker_of(f.target)
        if name in down and f.kind_ in _STOPS_WORKER:
            down[name] = True
    return any(not stopped for stopped in down.values())
