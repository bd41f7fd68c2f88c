"""The verdicts over a random run's history: what must hold whatever the faults did.

No job lost (every acknowledged job terminal by the deadline; a 404 job ``failed``), no effect
duplicated, every succeeded job tied to its stored row, every re-run justified by a fault that
could stop it, no job run more often than its retry strategy allows (beyond justified
re-runs), and every process alive that the schedule did not stop. Retry delays are not judged
here: faults move them, the scripted scenarios judge them.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.checker import PASS, UNKNOWN, Verdict, acknowledged_ids, check_attempt_count
from harness.checks import baseline
from harness.history.records import History
from harness.profiles import Profile
from harness.vocabulary import Invariant

#: The invariants a random run judges (a shrink keeps the one that failed).
INVARIANTS = (
    "calibration",
    "queue_accounting",
    "no_duplicate_effects",
    "job_effects",
    "justified_reruns",
    "processes_alive",
    "attempt_count",
)


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


def random_checks(history: History, profile: Profile, *, not_found: Sequence[int]) -> list[Verdict]:
    """Every verdict of a random run; ``not_found`` are the jobs that must end ``failed``."""
    expected = {job_id: "failed" for job_id in not_found}
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
            jobs=[j for j in acknowledged_ids(history) if j not in set(not_found)],
        ),
    ]
