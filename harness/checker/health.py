"""Health transitions: /health answers 503 soon after an outage starts and 200 soon after it
ends, and never cries wolf.

The bugs it exists to catch: a /health that always says 200, one that checks the database but
ignores the workers' heartbeats, one that notices too late (a freshness rule looser than the
budget), one that hangs instead of answering (a monitor sees a timeout, not "unhealthy"), and
one that stays 503 after the system recovered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import Fault, History
from harness.vocabulary import Invariant, ObservationName

NAME = Invariant.HEALTH_TRANSITIONS
OBSERVATION = ObservationName.HEALTH_STATUS
OK = 200

#: Outcomes of one fault's detection.
DETECTED = "detected"
LATE = "late"
NO_ANSWER = "no answer"
MISSED = "missed"
NOT_REQUIRED = "not required"  # the window was shorter than the detection budget


def check_health_transitions(
    history: History,
    *,
    detect_budget: float | Mapping[str, float],
    recover_budget: float | Mapping[str, float],
    fault_kinds: Iterable[str] | None = None,
) -> Verdict:
    """From ``health_status`` observations (HTTP status, or null when /health did not answer),
    for each closed fault window of ``fault_kinds`` (all when None):

    - the first non-200 *answer* after the fault's start comes within ``detect_budget`` (one
      budget, or one per fault kind with ``"*"`` as the default). A later one is ``late``; a
      window with only non-answers is ``no answer`` (never counted as detection); a window with
      only 200s is ``missed``. A window shorter than its budget need not be detected;
    - after the window ends, a 200 comes within ``recover_budget`` (one budget, or one per
      fault kind as above: a fault that ends the workers' database sessions may be followed
      by their teardown);
    - once healthy, a non-200 outside every [start, end + recover_budget] window is a false
      alarm, and the last observation is 200 (unless it falls inside a recovery window).

    Budgets come from harness/budgets.py (the system's own freshness rule). No observation:
    unknown."""
    kinds = None if fault_kinds is None else set(fault_kinds)
    faults = [
        f for f in history.faults if (kinds is None or f.kind_ in kinds) and f.end is not None
    ]
    obs = [(o.t, o.value) for o in history.observations(OBSERVATION)]
    transitions: list[dict[str, Any]] = []
    figures: dict[str, Any] = {
        "samples": len(obs),
        "no_answers": sum(1 for _, v in obs if v is None),
        "detect_budget": detect_budget
        if isinstance(detect_budget, float | int)
        else dict(detect_budget),
        "recover_budget": recover_budget
        if isinstance(recover_budget, float | int)
        else dict(recover_budget),
        "transitions": transitions,
    }
    if not obs:
        return Verdict(NAME, UNKNOWN, "no /health observation recorded", figures)
    evidence: list[str] = []
    for f in faults:
        row, problems = _transition(
            f, obs, _budget(detect_budget, f.kind_), _budget(recover_budget, f.kind_)
        )
        transitions.append(row)
        evidence.extend(problems)
    # only the judged kinds excuse a non-200 (a joke API fault never should)
    excusing = [f for f in history.faults if kinds is None or f.kind_ in kinds]
    first_ok = next((t for t, v in obs if v == OK), None)
    if first_ok is None:
        evidence.append("/health never said 200")
    else:
        windows = [
            (f.start, (f.end or f.start) + _budget(recover_budget, f.kind_)) for f in excusing
        ]
        for t, v in obs:
            if t > first_ok and v != OK and not any(a <= t <= b for a, b in windows):
                evidence.append(f"/health said {v} at {t:.3f} with no fault open: false alarm")
                break
    settled = max(
        ((f.end or f.start) + _budget(recover_budget, f.kind_) for f in excusing), default=0.0
    )
    if obs[-1][1] != OK and obs[-1][0] > settled:
        evidence.append(f"/health ended at {obs[-1][1]}, not 200")
    if evidence:
        return Verdict(NAME, FAIL, evidence[0], figures, evidence)
    if not faults:
        return Verdict(NAME, PASS, f"/health stayed 200 over {len(obs)} samples", figures)
    detected = sum(1 for r in transitions if r["outcome"] == DETECTED)
    return Verdict(
        NAME,
        PASS,
        f"/health answered non-200 within budget during {detected} of {len(faults)} faults "
        f"(the others shorter than their budget) and 200 within its recovery budget after "
        f"each ({len(obs)} samples)",
        figures,
    )


def _transition(
    f: Fault, obs: list[tuple[float, Any]], budget: float, recover_budget: float
) -> tuple[dict[str, Any], list[str]]:
    """One fault's detection and recovery: (figure row, problems)."""
    assert f.end is not None
    label = f"{f.kind_} {f.target} [{f.start:.3f}, {f.end:.3f}]"
    during = [(t, v) for t, v in obs if f.start <= t <= f.end]
    bad = next((t for t, v in during if v is not None and v != OK), None)
    no_answers = sum(1 for _, v in during if v is None)
    problems: list[str] = []
    if bad is not None and bad - f.start <= budget:
        outcome = DETECTED
    elif f.end - f.start < budget:
        outcome = NOT_REQUIRED
    elif bad is not None:
        outcome = LATE
        problems.append(
            f"{label}: first non-200 answer {bad - f.start:.3f}s after the fault started, "
            f"detection budget {budget:.3f}s"
        )
    elif no_answers:
        outcome = NO_ANSWER
        problems.append(
            f"{label}: /health did not answer ({no_answers} samples) and never said 503: "
            f"no answer is not a detection (budget {budget:.3f}s)"
        )
    else:
        outcome = MISSED
        problems.append(
            f"{label}: /health never left 200 during the fault (detection budget {budget:.3f}s)"
        )
    healthy = [t for t, v in obs if t >= f.end and v == OK]
    to_healthy = None if not healthy else round(healthy[0] - f.end, 4)
    if to_healthy is None or to_healthy > recover_budget:
        late = "never" if to_healthy is None else f"after {to_healthy:.3f}s"
        problems.append(f"{label}: /health back to 200 {late}, budget {recover_budget:.3f}s")
    row = {
        "fault": label,
        "outcome": outcome,
        "to_unhealthy": None if bad is None else round(bad - f.start, 4),
        "detect_budget": budget,
        "no_answers": no_answers,
        "to_healthy": to_healthy,
        "recover_budget": recover_budget,
    }
    return row, problems


def _budget(budget: float | Mapping[str, float], kind: str) -> float:
    if isinstance(budget, int | float):
        return float(budget)
    if kind in budget:
        return float(budget[kind])
    if "*" not in budget:
        raise ValueError(f"no budget for fault kind {kind!r} and no '*' default")
    return float(budget["*"])
