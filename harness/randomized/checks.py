"""The verdicts over a random run's history: what must hold whatever the faults did.

No job lost (every acknowledged job terminal by the deadline; a 404 job ``failed``), no effect
duplicated, every succeeded job tied to its stored row, every re-run justified by a fault that
could stop it, no job run more often than its retry strategy allows (beyond justified
re-runs), no run outliving ``JOB_TIMEOUT`` and every timed-out run retried, no run going
on past ``WORKER_TIMEOUT`` after a SIGTERM, every retry asked for at its backoff delay, and
every process alive that the schedule did not stop. When a retry *started* is not judged
here (faults move it; the scripted scenarios judge it); when it was *asked for* is
(:mod:`harness.checker.retry_decisions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness import budgets
from harness.checker import (
    PASS,
    UNKNOWN,
    Verdict,
    acknowledged_ids,
    check_attempt_count,
    check_health_amid_faults,
    check_job_timeout,
    check_retry_decisions,
    check_shutdown_aborts,
    check_stall_recovery_amid_faults,
)
from harness.checks import baseline, judged_jobs
from harness.history.records import History
from harness.profiles import Profile
from harness.vocabulary import Invariant
from system.promises import api_db_timeout, heartbeat_freshness_limit

#: The invariants a random run judges (a shrink keeps the one that failed).
INVARIANTS = (
    "calibration",
    "queue_accounting",
    "no_duplicate_effects",
    "job_effects",
    "justified_reruns",
    "processes_alive",
    "attempt_count",
    "job_timeout",
    "shutdown_aborts",
    "health_amid_faults",
    "recovery_latency",
    "retry_decisions",
)


def random_settings(profile: Profile) -> dict[str, Any]:
    """The profile values a random run overrides.

    - The retry cap at 4 x base, so a job failing for good (5 runs) has its last delay capped
      (0.3, 0.6, 1.2, then 1.2 instead of 2.4 in the fast profile): an ignored cap shows, as
      does a constant or linear backoff.
    - ``WORKER_TIMEOUT`` at a third of ``JOB_TIMEOUT`` (0.5 s in the fast profile), so a
      SIGTERM in the first two thirds of a run that ends by its timeout (a ``stuck`` job) shows
      a worker that waits for it instead of aborting it. At the fast profile's 1.0 s of 1.5 s,
      only a SIGTERM in a run's first 0.46 s could: no-shutdown-abort passed 10 of 10 runs.
    """
    return {
        "retry_max_delay": 4 * profile.retry_base_delay,
        "worker_timeout": round(profile.job_timeout / 3, 3),
    }


def check_schedule_executed(errors: Sequence[str], faults_done: int, planned: int) -> Verdict:
    """``unknown`` when the nemesis could not carry out the schedule as written (a process it
    could not start again, a fault that raised): the other verdicts would judge another run
    than the schedule says, so the run proves nothing either way."""
    figures = {"planned": planned, "done": faults_done, "errors": list(errors)}
    if errors:
        return Verdict(
            Invariant.SCHEDULE,
            UNKNOWN,
            f"the schedule was not carried out as written: {errors[0][:300]}",
            figures,
            list(errors),
        )
    summary = f"{faults_done} of {planned} faults carried out"
    return Verdict(Invariant.SCHEDULE, PASS, summary, figures)


def random_checks(
    history: History,
    profile: Profile,
    *,
    not_found: Sequence[int],
    tolerance: float,
    failing: Sequence[int] = (),
    workers: Sequence[str] = (),
) -> list[Verdict]:
    """Every verdict of a random run; ``not_found`` are the jobs that must end ``failed`` at
    once, ``failing`` those that must end ``failed`` after their last allowed run;
    ``tolerance`` is the run's calibrated one; ``workers`` the schedule's workers."""
    sample = budgets.health_interval(profile) + tolerance
    expected = {job_id: "failed" for job_id in (*not_found, *failing)}
    permanent = set(not_found)
    return [
        *baseline(
            history,
            expected_status=expected,
            smallest=profile.worker_timeout,
            what="a random schedule's recoveries",
        ),
        # a 404 fails at once by design: its single run is not an attempt-count bug
        check_attempt_count(
            history,
            max_attempts=profile.max_retries,
            jobs=[j for j in acknowledged_ids(history) if j not in permanent],
        ),
        check_job_timeout(
            history,
            job_timeout=profile.job_timeout,
            tolerance=tolerance,
            max_attempts=profile.max_retries,
        ),
        check_shutdown_aborts(history, worker_timeout=profile.worker_timeout, tolerance=tolerance),
        check_health_amid_faults(
            history,
            workers=workers,
            database_budget=api_db_timeout(profile.db_pool_timeout) + sample,
            workers_budget=heartbeat_freshness_limit(profile.worker_heartbeat_interval) + sample,
            # a SIGTERMed worker beats until it exits
            shutdown_allowance=profile.worker_timeout + budgets.EXIT_MARGIN + tolerance,
        ),
        check_stall_recovery_amid_faults(
            history,
            workers=workers,
            budget=profile.worker_heartbeat_interval
            + profile.stalled_job_threshold
            + profile.stalled_job_check_interval
            + profile.worker_poll_interval
            + tolerance,
            # the next recovery after one lost with its worker (system/worker.py, _PENDING_SQL)
            lost_recovery_allowance=2 * profile.stalled_job_check_interval,
        ),
        check_retry_decisions(
            history,
            base_delay=profile.retry_base_delay,
            max_delay=profile.retry_max_delay,
            tolerance=tolerance,
            jobs=[j for j in judged_jobs(history) if j not in permanent],
        ),
    ]
