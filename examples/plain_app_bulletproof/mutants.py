"""The bulletproof example broken on purpose, one defect each: the generic scenarios must see it.

Each target runs the example with one of the reference worker's deliberate defects
(``BULLETPROOF_DEFECTS``, see ``system/defects.py``) and lists, in ``known_failures``, the
scenarios that must catch it and the invariants that may turn red. ``nox -s examples`` runs
only those scenarios (``-k``); a defect the scenarios miss fails the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from bulletproof.chaos import Target
from examples.plain_app_bulletproof import target


def _broken(defect: str, catch: Mapping[str, Sequence[str]]) -> Target:
    return replace(
        target,
        name=f"{target.name}-{defect}",
        env={**target.env, "BULLETPROOF_DEFECTS": defect},
        known_failures=catch,
    )


#: Nothing re-queues a dead worker's job.
no_stall_recovery = _broken(
    "no-stall-recovery",
    {
        "worker_crash": ["queue_accounting", "recovery_latency"],
        "stalled_recovery": ["queue_accounting", "recovery_latency"],
    },
)
#: The worker exits when its session fails (Procrastinate's own behaviour).
no_db_supervision = _broken(
    "no-db-supervision",
    {
        "database_drop": ["processes_alive", "queue_accounting", "recovery_latency"],
        "postgres_restart": ["processes_alive", "queue_accounting", "recovery_latency"],
    },
)
#: SIGTERM waits for running jobs without a bound.
no_shutdown_abort = _broken("no-shutdown-abort", {"graceful_shutdown": ["graceful_shutdown"]})

#: The worker's /health says 200 whatever happens.
health_always_ok = _broken("health-always-ok", {"database_drop": ["health_transitions"]})

#: Every mutant target by attribute name (``nox -s examples`` runs each).
MUTANTS = ("no_stall_recovery", "no_db_supervision", "no_shutdown_abort", "health_always_ok")
