"""Calibration: is this machine, right now, precise enough to judge the scenario's timings?

The bug it guards against is in the instrument, not the system: a tolerance so wide that a
wrong delay passes. The scheduling tolerance comes from the calibration observation (see
:mod:`harness.calibration`); when it exceeds half the smallest quantity the scenario judges,
the scenario's timing verdicts cannot be trusted and this answers ``unknown`` with the reason.
"""

from __future__ import annotations

from harness.budgets import MAX_TOLERANCE_FRACTION, Calibration, too_coarse
from harness.checker.verdict import PASS, UNKNOWN, Verdict
from harness.history.records import History
from harness.vocabulary import Invariant, ObservationName

NAME = Invariant.CALIBRATION
OBSERVATION = ObservationName.CALIBRATION


def calibration_of(history: History) -> Calibration | None:
    """The calibration recorded in ``history``, if any."""
    value = history.calibration
    if isinstance(value, dict) and "pickup_max" in value:
        return Calibration(
            samples=int(value.get("samples", 0)),
            pickup_p50=float(value.get("pickup_p50", 0.0)),
            pickup_max=float(value["pickup_max"]),
            job_ids=tuple(int(j) for j in value.get("job_ids", ())),
            rounds=tuple(float(r) for r in value.get("rounds", ())),
        )
    return None


def check_calibration(history: History, *, smallest: float, what: str) -> Verdict:
    """Pass when the calibrated tolerance is at most half of ``smallest`` (seconds) and the
    machine never froze (``machine_stall``, see :mod:`harness.sentinel`) for that long while
    the scenario ran."""
    cal = calibration_of(history)
    if cal is None:
        return Verdict(NAME, UNKNOWN, "no calibration recorded: timings cannot be judged")
    stalls = [
        o.value
        for o in history.observations(ObservationName.MACHINE_STALL)
        if isinstance(o.value, dict)
    ]
    worst = max(stalls, key=lambda v: float(v.get("duration", 0.0)), default=None)
    figures = {**cal.to_dict(), "smallest_judged": smallest, "machine_stalls": stalls}
    reason = too_coarse(cal, smallest, what)
    if reason is not None:
        return Verdict(NAME, UNKNOWN, reason, figures)
    if worst is not None and float(worst["duration"]) > MAX_TOLERANCE_FRACTION * smallest:
        meta = history.meta
        since = float(worst["start"]) - (meta.started_at if meta else 0.0)
        return Verdict(
            NAME,
            UNKNOWN,
            f"the machine froze for {float(worst['duration']):.3f}s at t+{since:.3f}s (the "
            f"harness could not run): {what} cannot be judged across it",
            figures,
        )
    return Verdict(
        NAME,
        PASS,
        f"tolerance {cal.tolerance:.3f}s (worst pickup {cal.pickup_max:.3f}s, median "
        f"{cal.pickup_p50:.3f}s) <= half of {smallest:.3f}s ({what})",
        figures,
    )
