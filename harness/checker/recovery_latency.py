"""Recovery latency: after a fault, a job it interrupted runs again within a budget
(:func:`check_recovery_latency`), and the queue as a whole moves again within a budget
(:func:`check_queue_resumes`). Both report under the invariant ``recovery_latency``.

The bugs they exist to catch: a stalled-job recovery that never runs, or runs too late (a
threshold ignored or doubled, a check interval not honoured), and a worker that does not resume
after the database comes back (a supervisor that gave up, a pool that never reconnects).
Budgets come from harness/budgets.py; the checker never derives them from the run it judges.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from harness.checker.runs import Run, acknowledged_ids, runs_by_job
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import Fault, History, JobEvent
from harness.vocabulary import (
    TERMINAL_EVENTS,
    EventType,
    FaultKind,
    Invariant,
    ObservationName,
    worker_of,
)

NAME = Invariant.RECOVERY_LATENCY
INF = float("inf")
T = TypeVar("T")
#: Events that show a job moving: a run starting or ending.
PROGRESS = frozenset(
    {
        EventType.STARTED,
        EventType.SUCCEEDED,
        EventType.FAILED,
        EventType.DEFERRED_FOR_RETRY,
        EventType.ABORTED,
    }
)


def _faults(
    history: History, fault_kinds: Iterable[str], target_prefix: str | tuple[str, ...]
) -> list[Fault]:
    kinds = set(fault_kinds)
    return [f for f in history.faults if f.kind_ in kinds and f.target.startswith(target_prefix)]


def _reference(fault: Fault, measure_from: str) -> float:
    if measure_from not in ("start", "end"):
        raise ValueError(f"measure_from must be 'start' or 'end', not {measure_from!r}")
    return fault.start if measure_from == "start" or fault.end is None else fault.end


def check_recovery_latency(
    history: History,
    *,
    budget: float,
    fault_kinds: Iterable[str] = (FaultKind.KILL,),
    target_prefix: str | tuple[str, ...] = "worker",
    measure_from: str = "end",
    jobs: Iterable[int] | None = None,
    seed_bound: float | None = None,
) -> Verdict:
    """For each fault of ``fault_kinds`` on a target starting with ``target_prefix`` (one or a
    tuple of prefixes): every job in flight at the fault's start (on the faulted worker, when
    the fault hit a worker and the run's worker is known) that did not finish normally must
    start a new run within ``budget`` seconds (the bound our configuration implies) of
    the fault's ``end`` (or ``start``, per ``measure_from``). ``seed_bound`` (the bound the
    seed states, when it states one) is shown next to it: each recovery says whether it met
    it, and the summary names the slowest against both; the verdict is judged on ``budget``.

    Rows in ``figures["recoveries"]`` lead with the failures. Faults that interrupted no job:
    unknown."""
    faults = _faults(history, fault_kinds, target_prefix)
    by_job = runs_by_job(history)
    ids = list(jobs) if jobs is not None else acknowledged_ids(history)
    positions = _positions(ids)
    # the runs in flight at each fault's start: start <= fault start < end (never ended: inf)
    in_flight = _stab(
        [
            (r.start, INF if r.end is None else r.end, r)
            for job_id in positions
            for r in by_job.get(job_id, [])
        ],
        [f.start for f in faults],
    )
    rows: list[dict[str, Any]] = []
    for fault, flying in zip(faults, in_flight, strict=True):
        reference = _reference(fault, measure_from)
        what = f"{fault.kind_} {fault.target}"
        first: dict[int, Run] = {}  # job -> its first run in flight
        for r in flying:
            if r.job_id not in first or r.number < first[r.job_id].number:
                first[r.job_id] = r
        for job_id in _in_order(first, positions):
            runs = by_job[job_id]
            hit = first[job_id]
            if hit.end_type in (EventType.SUCCEEDED, EventType.FAILED) or hit.scheduled_retry:
                continue  # finished by itself (or failed and retried on schedule): not stalled
            victim = worker_of(fault.target)
            if victim is not None and hit.worker not in (None, victim):
                continue  # ran on another worker than the one the fault hit
            again = next((r for r in runs if r.number > hit.number), None)
            problem: str | None = None
            if again is None:
                problem = f"job {job_id} never ran again after {what}"
                latency = None
            else:
                latency = round(max(0.0, again.start - reference), 4)
                if latency > budget:
                    problem = (
                        f"job {job_id} ran again {latency:.3f}s after {what}, budget {budget:.3f}s"
                    )
            rows.append(_row(what, job_id, latency, budget, seed_bound, problem))
    return _verdict(rows, budget, seed_bound, len(faults), "interrupted jobs ran again")


def check_queue_resumes(
    history: History,
    *,
    budget: float,
    fault_kinds: Iterable[str],
    target_prefix: str | tuple[str, ...],
    measure_from: str = "end",
    jobs: Iterable[int] | None = None,
    seed_bound: float | None = None,
    session_teardown: float | None = None,
) -> Verdict:
    """Did the queue resume: for each fault of ``fault_kinds`` on a target starting with
    ``target_prefix``, every acknowledged job that is not terminal at the fault's ``end`` (or
    ``start``) must show its next event (a run starting or ending) within ``budget`` of that
    time, or of its scheduled retry time if that is later. Verdict name ``recovery_latency``;
    rows lead with the failures. Nothing pending at any fault: unknown.

    ``session_teardown`` (the system's limit on ending a lost session, seconds): a worker whose
    session was lost from the fault's start to ``budget`` after its end reconnects only once
    the teardown is over, so the part of that teardown after the reference time is added to the
    fault's budget: up to the ``session_ended`` the worker logged, never past the loss plus the
    limit (a teardown that overruns its limit shows as a late job). Rows name the teardown."""
    faults = _faults(history, fault_kinds, target_prefix)
    teardowns = _teardowns(history) if session_teardown is not None else []
    ids = list(jobs) if jobs is not None else acknowledged_ids(history)
    events = history.events_by_job()
    positions = _positions(ids)
    references = [_reference(f, measure_from) for f in faults]
    # a job can be pending at a time only between its first event and its terminal one
    maybe_pending = _stab(
        [span for job_id in positions if (span := _pending_span(job_id, events)) is not None],
        references,
    )
    rows: list[dict[str, Any]] = []
    starts = sorted(f.start for f in faults)
    for fault, reference, candidates in zip(faults, references, maybe_pending, strict=True):
        what = f"{fault.kind_} {fault.target}"
        extra, because = 0.0, ""
        if session_teardown is not None:
            # a loss after the next judged fault began is that fault's doing
            until = min([reference + budget, *(t for t in starts if t > fault.start)])
            extra, because = _teardown_after(
                teardowns, fault.start, until, reference, session_teardown
            )
        allowed = round(budget + extra, 4)
        for job_id in _in_order(candidates, positions):
            pending, latency = _progress(events.get(job_id, []), reference)
            if not pending:
                continue
            if latency is None:
                problem: str | None = f"job {job_id}, pending when {what} ended, never moved again"
            elif latency > allowed:
                problem = (
                    f"job {job_id} moved again {latency:.3f}s after {what}, "
                    f"budget {allowed:.3f}s{because}"
                )
            else:
                problem = None
            row = _row(what, job_id, latency, allowed, seed_bound, problem)
            if because:
                row["teardown"] = round(extra, 4)
            rows.append(row)
    return _verdict(rows, budget, seed_bound, len(faults), "pending jobs moved again")


#: A lost session: (worker, lost at, its teardown's end as the worker logged it, or None).
Teardown = tuple[str, float, float | None]


def _teardowns(history: History) -> list[Teardown]:
    """Each ``session_lost`` observation paired with the same worker's next ``session_ended``."""
    ended: dict[str, list[float]] = {}  # observations come in time order
    for o in history.observations(ObservationName.SESSION_ENDED):
        if isinstance(o.value, dict) and isinstance(o.value.get("worker"), str):
            ended.setdefault(o.value["worker"], []).append(o.t)
    out: list[Teardown] = []
    for o in history.observations(ObservationName.SESSION_LOST):
        worker = o.value.get("worker") if isinstance(o.value, dict) else None
        if not isinstance(worker, str):
            continue
        end = next((t for t in ended.get(worker, []) if t >= o.t), None)
        out.append((worker, o.t, end))
    return out


def _teardown_after(
    teardowns: list[Teardown], start: float, until: float, reference: float, limit: float
) -> tuple[float, str]:
    """(seconds of lost-session teardown left at ``reference``, the words naming it) for the
    sessions lost from ``start`` to before ``until``: the longest one counts."""
    extra, because = 0.0, ""
    for worker, lost_at, ended_at in teardowns:
        if not start <= lost_at < until:
            continue
        bound = lost_at + limit
        over = bound if ended_at is None else min(ended_at, bound)
        left = over - reference
        if left > extra:
            took = "not seen ending" if ended_at is None else f"ended {ended_at - lost_at:.2f}s"
            extra = left
            because = (
                f" + {left:.3f}s of {worker}'s lost-session teardown ({took} after the loss; "
                f"limit {limit:.3f}s)"
            )
    return extra, because


def _positions(ids: list[int]) -> dict[int, list[int]]:
    """Job id -> its positions in ``ids`` (a job named twice is judged twice, as named)."""
    out: dict[int, list[int]] = {}
    for i, job_id in enumerate(ids):
        out.setdefault(job_id, []).append(i)
    return out


def _in_order(found: Iterable[int], positions: dict[int, list[int]]) -> list[int]:
    """The jobs ``found``, each once per position in the judged ids, in their order."""
    return [job_id for _, job_id in sorted((p, j) for j in set(found) for p in positions[j])]


def _stab(intervals: list[tuple[float, float, T]], points: list[float]) -> list[list[T]]:
    """For each point, the items whose interval ``[lo, hi)`` holds it (in ``lo`` order).

    A sweep over the points in time order: each interval enters once and leaves once, so the
    cost is the sorting plus what is found, not intervals x points (a history of 10,000 jobs
    and 100 faults is checked in well under a second).
    """
    ordered = sorted(intervals, key=lambda iv: iv[0])
    out: list[list[T]] = [[] for _ in points]
    active: list[tuple[float, float, T]] = []
    nxt = 0
    for index in sorted(range(len(points)), key=points.__getitem__):
        point = points[index]
        while nxt < len(ordered) and ordered[nxt][0] <= point:
            active.append(ordered[nxt])
            nxt += 1
        active = [iv for iv in active if iv[1] > point]  # ended: ended for every later point
        out[index] = [item for _, _, item in active]
    return out


def _pending_span(
    job_id: int, events: dict[int, list[JobEvent]]
) -> tuple[float, float, int] | None:
    """``[lo, hi)`` outside which :func:`_progress` finds the job not pending: before its first
    event (other than ``scheduled``), or after all of them when the last is terminal."""
    moves = [e for e in events.get(job_id, []) if e.type != EventType.SCHEDULED]
    if not moves:
        return None
    hi = max(e.at for e in moves) if moves[-1].type in TERMINAL_EVENTS else INF
    return min(e.at for e in moves), hi, job_id


def _row(
    what: str,
    job_id: int,
    latency: float | None,
    budget: float,
    seed_bound: float | None,
    problem: str | None,
) -> dict[str, Any]:
    return {
        "what": what,
        "job_id": job_id,
        "latency": latency,
        "budget": budget,
        "seed_bound": seed_bound,
        "within_seed_bound": None
        if seed_bound is None or latency is None
        else latency <= seed_bound,
        "ok": problem is None,
        "problem": problem,
    }


def _verdict(
    rows: list[dict[str, Any]],
    budget: float,
    seed_bound: float | None,
    faults: int,
    done: str,
) -> Verdict:
    failed = [r for r in rows if not r["ok"]]
    figures: dict[str, Any] = {
        # failures first: a figure must never show the recoveries and hide the one that failed
        "recoveries": failed + [r for r in rows if r["ok"]],
        "failed": len(failed),
        "budget": budget,
        "seed_bound": seed_bound,
        "faults": faults,
    }
    if failed:
        return Verdict(
            NAME,
            FAIL,
            f"{failed[0]['problem']} ({len(failed)} of {len(rows)} recoveries failed)",
            figures,
            [r["problem"] for r in failed],
        )
    if not rows:
        return Verdict(NAME, UNKNOWN, "no fault interrupted a job: nothing to recover", figures)
    worst = max(r["latency"] for r in rows)
    notes = ""
    if seed_bound is not None:
        beyond = sum(1 for r in rows if r["within_seed_bound"] is False)
        notes = f"; seed bound {seed_bound:.3f}s: " + (
            "met" if not beyond else f"{beyond} of {len(rows)} beyond it"
        )
    waited = [r["teardown"] for r in rows if "teardown" in r]
    if waited:
        notes += (
            f"; plus a lost session's teardown for {len(waited)} of them (up to {max(waited):.3f}s)"
        )
    return Verdict(
        NAME,
        PASS,
        f"{len(rows)} {done}, slowest after {worst:.3f}s (budget {budget:.3f}s{notes})",
        figures,
    )


def _progress(events: list[JobEvent], reference: float) -> tuple[bool, float | None]:
    """(pending at ``reference``, seconds from ``reference`` or the job's later retry time to
    its next progress event, None when it never moved again)."""
    before = [e for e in events if e.at <= reference and e.type != EventType.SCHEDULED]
    if not before or before[-1].type in TERMINAL_EVENTS:
        return False, None  # not submitted yet, or already finished
    after = [e for e in events if e.at > reference and e.type in PROGRESS]
    if not after:
        return True, None
    # A retry scheduled (before the next progress) after the fault's end is due at its time.
    last_start = max((e.id for e in before if e.type == EventType.STARTED), default=0)
    due = max(
        [reference]
        + [
            e.at
            for e in events
            if e.type == EventType.SCHEDULED and last_start < e.id < after[0].id
        ]
    )
    return True, round(max(0.0, after[0].at - due), 4)
