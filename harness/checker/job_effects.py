"""Job effects: every succeeded job stored its joke, and no failed job left one behind.

The bug it exists to catch: a task that swallows a transient error while storing and returns
success without its row (the job says succeeded, the effect is missing), and a store that is
not atomic with the job's outcome (a failed job leaves a half-written effect). The system
records which job stored which joke in the same transaction as the joke (``job_effect``).
"""

from __future__ import annotations

from typing import Any

from harness.checker.runs import acknowledged_ids
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import History
from harness.vocabulary import Invariant, JobStatus

NAME = Invariant.JOB_EFFECTS


def check_job_effects(history: History) -> Verdict:
    """Fail when an acknowledged job ended ``succeeded`` without its ``job_effect`` row, when a
    job that ended ``failed`` has one, or when a ``job_effect`` names a joke the jokes table
    does not hold. No ``job_effect`` record and no succeeded job: unknown."""
    jobs = history.jobs
    by_job = {e.job_id: e for e in history.job_effects}
    jokes = {e.joke_id for e in history.effects}
    succeeded = [
        j for j in acknowledged_ids(history) if j in jobs and jobs[j].status == JobStatus.SUCCEEDED
    ]
    evidence: list[str] = []
    missing = [j for j in succeeded if j not in by_job]
    evidence.extend(f"job {j} succeeded but stored no joke (no job_effect row)" for j in missing)
    failed_with = sorted(j for j in by_job if j in jobs and jobs[j].status == JobStatus.FAILED)
    evidence.extend(
        f"job {j} ended failed but left its effect (joke {by_job[j].joke_id})" for j in failed_with
    )
    dangling = sorted(j for j, e in by_job.items() if e.joke_id not in jokes)
    evidence.extend(
        f"job {j} recorded joke {by_job[j].joke_id}, which is not in the jokes table"
        for j in dangling
    )
    figures: dict[str, Any] = {
        "succeeded_jobs": len(succeeded),
        "job_effects": len(by_job),
        "missing_ids": missing,
        "failed_with_effect_ids": failed_with,
        "dangling_ids": dangling,
    }
    if evidence:
        return Verdict(
            NAME,
            FAIL,
            f"{evidence[0]} ({len(evidence)} problems over {len(succeeded)} succeeded jobs)",
            figures,
            evidence,
        )
    if not by_job and not succeeded:
        return Verdict(NAME, UNKNOWN, "no job succeeded and no effect was recorded", figures)
    return Verdict(
        NAME,
        PASS,
        f"{len(succeeded)} succeeded jobs, each with its stored joke; no failed job left one",
        figures,
    )
