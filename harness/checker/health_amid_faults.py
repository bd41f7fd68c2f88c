"""Health amid faults: while the database is out of reach, or every worker is stopped, long
enough to notice, ``/health`` says so (a non-200 answer) within its budget.

The bugs it exists to catch: a ``/health`` that always says 200 (``health-always-ok``) and
one that checks the database but not the workers' heartbeats (``health-ignores-heartbeat``),
where a monitor would route work to, or keep alive, a system doing nothing.

:mod:`harness.checker.health` judges every transition of a scripted run (detection, recovery,
no false alarm). Here faults overlap, so only detection is judged, and only where it is owed:
an outage is judged when it lasted at least its budget, the API process that answers
``/health`` was up from its start to the budget's end, and ``/health`` answered in that time.
Outages: PostgreSQL killed or restarted, the database link down, blackholed or reset (the
API reaches the database through it too); and every worker stopped at once (killed,
SIGTERMed or paused), from the moment the last one stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.checker.runs import DATABASE_STOPPING, DBLINK_STOPPING
from harness.checker.verdict import FAIL, PASS, Verdict
from harness.history.records import History
from harness.vocabulary import FaultKind, Invariant, ObservationName, Target, worker_of

NAME = Invariant.HEALTH_AMID_FAULTS
OK = 200
#: Faults that stop a worker's heartbeat (the window lasts until it beats again).
_STOPS_WORKER = frozenset({FaultKind.KILL, FaultKind.SIGTERM, FaultKind.PAUSE})


@dataclass(frozen=True)
class Outage:
    """A stretch ``/health`` must notice: ``what`` from ``start`` to ``end``."""

    what: str
    start: float
    end: float
    budget: float


def check_health_amid_faults(
    history: History,
    *,
    workers: Sequence[str],
    database_budget: float,
    workers_budget: float,
    shutdown_allowance: float,
) -> Verdict:
    """Fail when a judged outage (see the module) saw only 200 answers from ``/health``
    between its start and its budget's end. Budgets: from harness/budgets.py (the API's own
    database timeout, the heartbeat freshness limit, plus a sample and the tolerance). A
    SIGTERMed worker may beat until it exits: its stop counts from ``shutdown_allowance``
    after the signal."""
    horizon = history.end.finished_at if history.end else float("inf")
    obs = [(o.t, o.value) for o in history.observations(ObservationName.HEALTH_STATUS)]
    api_down = [
        (f.start, f.end if f.end is not None else horizon)
        for f in history.faults
        if f.target == Target.API
    ]
    outages = [*database_outages(history, database_budget, horizon)]
    outages += all_workers_stopped(
        history, workers, workers_budget, horizon, shutdown_allowance=shutdown_allowance
    )
    evidence: list[str] = []
    judged: list[dict[str, Any]] = []
    skipped: dict[str, int] = {"shorter than budget": 0, "API down": 0, "no answer": 0}
    for o in sorted(outages, key=lambda o: o.start):
        until = o.start + o.budget
        if o.end - o.start < o.budget:
            skipped["shorter than budget"] += 1
            continue
        if any(a <= until and o.start <= b for a, b in api_down):
            skipped["API down"] += 1
            continue
        answers = [(t, v) for t, v in obs if o.start <= t <= until and v is not None]
        if not answers:
            skipped["no answer"] += 1
            continue
        first_bad = next((t for t, v in answers if v != OK), None)
        label = f"{o.what} [{o.start:.3f}, {o.end:.3f}]"
        judged.append(
            {
                "outage": label,
                "budget": round(o.budget, 4),
                "answers": len(answers),
                "detected_after": None if first_bad is None else round(first_bad - o.start, 4),
            }
        )
        if first_bad is None:
            evidence.append(
                f"{label}: /health answered 200 {len(answers)} times in the first "
                f"{o.budget:.3f}s (its budget) and nothing else"
            )
    figures: dict[str, Any] = {
        "samples": len(obs),
        "database_budget": database_budget,
        "workers_budget": workers_budget,
        "judged": judged,
        "not_judged": skipped,
    }
    if evidence:
        return Verdict(
            NAME,
            FAIL,
            f"{evidence[0]} ({len(evidence)} of {len(judged)} outages not noticed)",
            figures,
            evidence,
        )
    if not judged:
        return Verdict(
            NAME,
            PASS,
            f"nothing to judge: no outage long enough with the API up "
            f"({sum(skipped.values())} not judged)",
            figures,
        )
    return Verdict(
        NAME,
        PASS,
        f"{len(judged)} outages noticed by /health within budget "
        f"({sum(skipped.values())} not judged)",
        figures,
    )


def database_outages(history: History, budget: float, horizon: float) -> Iterable[Outage]:
    """PostgreSQL down, or the database link down, blackholed or reset."""
    for f in history.faults:
        down = f.kind_ in DATABASE_STOPPING and f.kind_ != FaultKind.HEARTBEAT_REJECTED
        cut = f.target == Target.DBLINK and f.kind_ in DBLINK_STOPPING
        if down or cut:
            end = f.end if f.end is not None else horizon
            yield Outage(f"{f.kind_} {f.target}", f.start, end, budget)


def all_workers_stopped(
    history: History,
    workers: Sequence[str],
    budget: float,
    horizon: float,
    *,
    shutdown_allowance: float = 0.0,
) -> list[Outage]:
    """The stretches during which every one of ``workers`` was stopped (a SIGTERMed one from
    ``shutdown_allowance`` after the signal)."""
    if not workers:
        return []
    stopped: dict[str, list[tuple[float, float]]] = {w: [] for w in workers}
    for f in history.faults:
        name = worker_of(f.target)
        if name in stopped and f.kind_ in _STOPS_WORKER:
            start = f.start + (shutdown_allowance if f.kind_ == FaultKind.SIGTERM else 0.0)
            stopped[name].append((start, f.end if f.end is not None else horizon))
    common = _merged(stopped[workers[0]])
    for name in workers[1:]:
        common = _intersect(common, _merged(stopped[name]))
    return [Outage("every worker stopped", a, b, budget) for a, b in common if b > a]


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _intersect(
    xs: list[tuple[float, float]], ys: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in xs:
        for c, d in ys:
            lo, hi = max(a, c), min(b, d)
            if lo < hi:
                out.append((lo, hi))
    return out
