"""Processes alive: every SUT process the nemesis did not stop for good is still running.

The bug it catches: a worker that gives up (a supervisor that stops retrying the database
after a few attempts, an unhandled error in a side task) exits while the queue still needs
it. Jobs submitted later may be run by another process, so accounting alone can miss it.
Reads the ``process_status`` observations the scenario records at the end.
"""

from __future__ import annotations

from typing import Any

from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import History
from harness.vocabulary import Invariant, ObservationName

NAME = Invariant.PROCESSES_ALIVE
OBSERVATION = ObservationName.PROCESS_STATUS


def check_processes_alive(history: History) -> Verdict:
    """Fail for each process that is not running at the end though no fault stopped it."""
    statuses = [o.value for o in history.observations(OBSERVATION) if isinstance(o.value, dict)]
    figures: dict[str, Any] = {"processes": statuses}
    if not statuses:
        return Verdict(NAME, UNKNOWN, "no process status recorded at the end", figures)
    dead = [s for s in statuses if not s.get("running") and not s.get("stopped_by_nemesis", False)]
    if dead:
        evidence = [
            f"{s.get('process')} exited (code {s.get('exit_code')}) though no fault stopped it "
            "for good"
            for s in dead
        ]
        return Verdict(NAME, FAIL, evidence[0], figures, evidence)
    running = sum(1 for s in statuses if s.get("running"))
    return Verdict(
        NAME,
        PASS,
        f"{running} of {len(statuses)} processes running; the others stopped by faults",
        figures,
    )
