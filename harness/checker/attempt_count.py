"""Attempt count: a permanently failed job ran exactly ``max_attempts`` times, none ran more,
except where an interrupted run was given another.

The bug it exists to catch: an off-by-one in the retry strategy (Procrastinate's own
``max_attempts=n`` means n+1 runs), giving up too early, or retrying forever.

Every run counts (Procrastinate adds 1 to ``attempts`` for each), interrupted ones too. An
interruption is not the job's failure: a run its worker aborted (shutdown past
``WORKER_TIMEOUT``, lost database session) is re-queued whatever its number, and a stalled
run may be re-queued. So a run beyond ``max_attempts`` is allowed only right after an
interrupted run from ``max_attempts`` on; a run that ended by its own failure there is the
bug.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.checker.runs import acknowledged_ids, runs_by_job
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import History
from harness.vocabulary import Invariant, JobStatus

NAME = Invariant.ATTEMPT_COUNT


def check_attempt_count(
    history: History,
    *,
    max_attempts: int,
    jobs: Iterable[int] | None = None,
    require_failures: bool = False,
) -> Verdict:
    """Fail when a job ran more than ``max_attempts`` times with a run from ``max_attempts``
    on that was not interrupted before its last, or ended ``failed`` after fewer runs. With
    ``require_failures``, no permanently failed job means unknown."""
    by_job = runs_by_job(history)
    all_jobs = history.jobs
    ids = list(jobs) if jobs is not None else acknowledged_ids(history)
    evidence: list[str] = []
    failed_runs: dict[str, int] = {}
    most = 0
    for job_id in ids:
        runs = by_job.get(job_id, [])
        n = len(runs)
        most = max(most, n)
        job = all_jobs.get(job_id)
        # runs max_attempts .. n-1 were each followed by another: each must be interrupted
        extra = [r for r in runs[max_attempts - 1 : n - 1] if not r.interrupted]
        if n > max_attempts and extra:
            evidence.append(
                f"job {job_id} ran {n} times, more than max_attempts={max_attempts}; run "
                f"{extra[0].number} ended {extra[0].end_type or 'never'} by itself and was "
                "run again"
            )
        elif job is not None and job.status == JobStatus.FAILED:
            failed_runs[str(job_id)] = n
            if n < max_attempts:
                evidence.append(
                    f"job {job_id} failed for good after {n} runs, expected {max_attempts}"
                )
    figures = {"max_attempts": max_attempts, "most_runs": most, "failed_job_runs": failed_runs}
    if evidence:
        return Verdict(
            NAME,
            FAIL,
            f"{evidence[0]} ({len(evidence)} jobs broke the attempt count)",
            figures,
            evidence,
        )
    if require_failures and not failed_runs:
        return Verdict(NAME, UNKNOWN, "no job failed for good: attempt count untested", figures)
    return Verdict(
        NAME,
        PASS,
        f"{len(failed_runs)} failed jobs ran {max_attempts} times; no job ran more than "
        f"{max_attempts} times but after an interrupted run (most: {most})",
        figures,
    )
