"""Health transitions: /health says 503 during an outage and 200 again soon after it ends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import History

NAME = "health_transitions"
OBSERVATION = "health_status"


def check_health_transitions(
    history: History,
    *,
    detect_budget: float | Mapping[str, float],
    recover_budget: float,
    fault_kinds: Iterable[str] | None = None,
) -> Verdict:
    """From ``health_status`` observations (HTTP status, or null when /health did not answer):

    - a fault window lasting at least ``detect_budget`` shows a non-200 inside it (one budget,
      or one per fault kind with ``"*"`` as the default);
    - after the window ends, a 200 comes within ``recover_budget``;
    - once healthy, a non-200 outside every [start, end + recover_budget] window is a false alarm;
    - the last observation is 200 (unless it falls inside a recovery window).
    """
    kinds = None if fault_kinds is None else set(fault_kinds)
    faults = [
        f for f in history.faults if (kinds is None or f.kind_ in kinds) and f.end is not None
    ]
    obs = [(o.t, o.value) for o in history.observations(OBSERVATION)]
    figures: dict[str, Any] = {
        "samples": len(obs),
        "detect_budget": detect_budget
        if isinstance(detect_budget, float | int)
        else dict(detect_budget),
        "recover_budget": recover_budget,
        "transitions": [],
    }
    if not obs:
        return Verdict(NAME, UNKNOWN, "no /health observation recorded", figures)
    evidence: list[str] = []
    for f in faults:
        assert f.end is not None
        label = f"{f.kind_} {f.target} [{f.start:.3f}, {f.end:.3f}]"
        during = [t for t, v in obs if f.start <= t <= f.end and v != 200]
        if during:
            figures["transitions"].append(
                {"fault": label, "to_unhealthy": round(during[0] - f.start, 4)}
            )
        elif f.end - f.start >= _budget(detect_budget, f.kind_):
            evidence.append(
                f"{label}: /health never left 200 during the fault "
                f"(detection budget {_budget(detect_budget, f.kind_):.3f}s)"
            )
        healthy = [t for t, v in obs if t >= f.end and v == 200]
        if not healthy or healthy[0] - f.end > recover_budget:
            late = "never" if not healthy else f"after {healthy[0] - f.end:.3f}s"
            evidence.append(f"{label}: /health back to 200 {late}, budget {recover_budget:.3f}s")
        else:
            figures["transitions"].append(
                {"fault": label, "to_healthy": round(healthy[0] - f.end, 4)}
            )
    first_ok = next((t for t, v in obs if v == 200), None)
    if first_ok is None:
        evidence.append("/health never said 200")
    else:
        windows = [(f.start, (f.end or f.start) + recover_budget) for f in history.faults]
        for t, v in obs:
            if t > first_ok and v != 200 and not any(a <= t <= b for a, b in windows):
                evidence.append(f"/health said {v} at {t:.3f} with no fault open: false alarm")
                break
    settled = max(((f.end or f.start) + recover_budget for f in history.faults), default=0.0)
    if obs[-1][1] != 200 and obs[-1][0] > settled:
        evidence.append(f"/health ended at {obs[-1][1]}, not 200")
    if evidence:
        return Verdict(NAME, FAIL, evidence[0], figures, evidence)
    if not faults:
        return Verdict(NAME, PASS, f"/health stayed 200 over {len(obs)} samples", figures)
    return Verdict(
        NAME,
        PASS,
        f"/health went 503 during {len(faults)} faults and back to 200 within "
        f"{recover_budget:.3f}s ({len(obs)} samples)",
        figures,
    )


def _budget(budget: float | Mapping[str, float], kind: str) -> float:
    if isinstance(budget, int | float):
        return float(budget)
    return float(budget.get(kind, budget.get("*", 0.0)))
