"""Recovery latency: after a fault, a job it interrupted runs again within a budget.

The budget comes from the configuration (see :func:`stall_recovery_budget`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.checker.runs import TERMINAL, acknowledged_ids, runs_by_job
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import History, JobEvent

NAME = "recovery_latency"
#: Events that show a job moving: a run starting or ending.
PROGRESS = frozenset({"started", "succeeded", "failed", "deferred_for_retry", "aborted"})


def stall_recovery_budget(
    *,
    heartbeat_interval: float,
    stall_threshold: float,
    check_interval: float,
    poll_interval: float,
    slack: float,
) -> float:
    """Worst case from a worker's death to its job running again: the last heartbeat may be a
    heartbeat interval old, the job looks stalled after the threshold, the recovery check runs
    every check interval, and the re-queued job is picked up within a poll interval."""
    return heartbeat_interval + stall_threshold + check_interval + poll_interval + slack


def check_recovery_latency(
    history: History,
    *,
    budget: float,
    fault_kinds: Iterable[str] = ("kill",),
    target_prefix: str | tuple[str, ...] = "worker",
    measure_from: str = "end",
    jobs: Iterable[int] | None = None,
    progress: bool = False,
) -> Verdict:
    """For each fault of ``fault_kinds`` on a target starting with ``target_prefix`` (one or a
    tuple of prefixes): every job
    in flight at the fault's start that did not finish normally must start a new run within
    ``budget`` seconds of the fault's ``end`` (or ``start``, per ``measure_from``).
    Faults that interrupted no job: unknown.

    With ``progress``, the question is "did the queue resume": every acknowledged job that is
    not terminal when the fault ends must show its next event (a run starting or ending) within
    ``budget`` of the fault's end, or of its scheduled retry time if that is later."""
    kinds = set(fault_kinds)
    faults = [f for f in history.faults if f.kind_ in kinds and f.target.startswith(target_prefix)]
    by_job = runs_by_job(history)
    ids = list(jobs) if jobs is not None else acknowledged_ids(history)
    recoveries: list[dict[str, Any]] = []
    evidence: list[str] = []
    events = history.events_by_job() if progress else {}
    for fault in faults:
        reference = fault.start if measure_from == "start" or fault.end is None else fault.end
        what = f"{fault.kind_} {fault.target}"
        if progress:
            for job_id in ids:
                late = _progress(events.get(job_id, []), reference, budget, job_id, what)
                if late is not None:
                    recoveries.append(late[0])
                    if late[1]:
                        evidence.append(late[1])
            continue
        for job_id in ids:
            runs = by_job.get(job_id, [])
            hit = next(
                (
                    r
                    for r in runs
                    if r.start <= fault.start and (r.end is None or r.end > fault.start)
                ),
                None,
            )
            if hit is None or hit.end_type in ("succeeded", "failed") or hit.scheduled_retry:
                continue  # finished by itself (or failed and retried on schedule): not stalled
            again = next((r for r in runs if r.number > hit.number), None)
            if again is None:
                recoveries.append(
                    {"what": what, "job_id": job_id, "latency": None, "budget": budget}
                )
                evidence.append(
                    f"job {job_id}, in flight at {what}, never ran again "
                    f"(run {hit.number} ended {hit.end_type or 'never'})"
                )
                continue
            latency = max(0.0, again.start - reference)
            recoveries.append(
                {"what": what, "job_id": job_id, "latency": round(latency, 4), "budget": budget}
            )
            if latency > budget:
                evidence.append(
                    f"job {job_id} ran again {latency:.3f}s after {what}, budget {budget:.3f}s"
                )
    figures: dict[str, Any] = {"recoveries": recoveries, "budget": budget, "faults": len(faults)}
    if evidence:
        return Verdict(
            NAME, FAIL, f"{len(evidence)} of {len(recoveries)} recoveries failed", figures, evidence
        )
    if not recoveries:
        return Verdict(NAME, UNKNOWN, "no fault interrupted a job: nothing to recover", figures)
    worst = max(r["latency"] for r in recoveries)
    done = "pending jobs moved again" if progress else "interrupted jobs ran again"
    return Verdict(
        NAME,
        PASS,
        f"{len(recoveries)} {done}, slowest after {worst:.3f}s (budget {budget:.3f}s)",
        figures,
    )


def _progress(
    events: list[JobEvent], reference: float, budget: float, job_id: int, what: str
) -> tuple[dict[str, Any], str | None] | None:
    """(recovery row, evidence or None) for a job pending at ``reference``; None otherwise."""
    before = [e for e in events if e.at <= reference and e.type != "scheduled"]
    if not before or before[-1].type in TERMINAL:
        return None  # not submitted yet, or already finished
    after = [e for e in events if e.at > reference and e.type in PROGRESS]
    if not after:
        row = {"what": what, "job_id": job_id, "latency": None, "budget": budget}
        return row, f"job {job_id}, pending when {what} ended, never progressed"
    # A retry scheduled (before the next progress) after the fault's end is due at its time.
    last_start = max((e.id for e in before if e.type == "started"), default=0)
    due = max(
        [reference]
        + [e.at for e in events if e.type == "scheduled" and last_start < e.id < after[0].id]
    )
    latency = max(0.0, after[0].at - due)
    row = {"what": what, "job_id": job_id, "latency": round(latency, 4), "budget": budget}
    if latency > budget:
        return row, f"job {job_id} progressed {latency:.3f}s after {what}, budget {budget:.3f}s"
    return row, None
