"""Effects of a user's task, one row per effect (a target's ``effect_sql``): exactly once per job.

Generic counterparts of ``job_effects`` and ``no_duplicate_effects`` for apps whose effect is
not the reference system's jokes table. Each ``job_effect`` record is one row the target's
query returned, ``(job_id, key)``.

The bugs they exist to catch: a task re-run after a crash or a stall that writes its effect a
second time (a plain ``INSERT``, no idempotency key): two rows for one job; a task that
reports success without writing (the job says succeeded, the row is missing); a failed job
that left a row behind.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from harness.checker.runs import acknowledged_ids
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Verdict
from harness.history.records import History
from harness.vocabulary import Invariant, JobStatus


def check_effect_once(history: History) -> Verdict:
    """Fail when one job's effect appears in more than one row."""
    rows = Counter(e.job_id for e in history.job_effects)
    twice = {job: n for job, n in sorted(rows.items()) if n > 1}
    figures: dict[str, Any] = {
        "effect_rows": sum(rows.values()),
        "jobs_with_effects": len(rows),
        "duplicated": {str(k): v for k, v in twice.items()},
    }
    name = Invariant.NO_DUPLICATE_EFFECTS
    if twice:
        evidence = [f"job {job} wrote its effect {n} times" for job, n in twice.items()]
        return Verdict(
            name,
            FAIL,
            f"{evidence[0]} ({len(twice)} jobs with duplicated effects)",
            figures,
            evidence,
        )
    if not rows:
        return Verdict(name, UNKNOWN, "no effect row was written: nothing to compare", figures)
    return Verdict(name, PASS, f"{len(rows)} jobs wrote their effect exactly once", figures)


def check_effect_per_job(history: History) -> Verdict:
    """Fail when a succeeded job has no effect row, or a job that ended failed has one."""
    jobs = history.jobs
    with_rows = {e.job_id for e in history.job_effects}
    acked = [j for j in acknowledged_ids(history) if j in jobs]
    succeeded = [j for j in acked if jobs[j].status == JobStatus.SUCCEEDED]
    missing = [j for j in succeeded if j not in with_rows]
    failed_with = [j for j in acked if jobs[j].status == JobStatus.FAILED and j in with_rows]
    evidence = [f"job {j} succeeded but wrote no effect row" for j in missing]
    evidence += [f"job {j} ended failed but left an effect row" for j in failed_with]
    figures: dict[str, Any] = {
        "succeeded_jobs": len(succeeded),
        "missing_ids": missing,
        "failed_with_effect_ids": failed_with,
    }
    name = Invariant.JOB_EFFECTS
    if evidence:
        return Verdict(name, FAIL, f"{evidence[0]} ({len(evidence)} problems)", figures, evidence)
    if not succeeded:
        return Verdict(name, UNKNOWN, "no job succeeded: no effect to look for", figures)
    return Verdict(name, PASS, f"each of {len(succeeded)} succeeded jobs wrote its effect", figures)
