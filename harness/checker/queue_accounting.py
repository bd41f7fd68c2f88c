"""Queue accounting, like Jepsen's total-queue: every acknowledged job ends terminal.

The bugs it exists to catch: an API that acknowledges a job it never queues, a job left
``doing`` by a dead worker or ``todo`` by a worker that stopped polling, and jobs that appear
without a submission. A submission whose answer was lost (``unknown``) may have created its job:
that job counts as recovered only once it is terminal.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from harness.checker.effects import duplicate_rows, joke_fetches
from harness.checker.runs import acknowledged_ids, runs_by_job
from harness.checker.verdict import FAIL, PASS, Verdict
from harness.history.records import History
from harness.vocabulary import (
    SUBMITTED_TASK,
    TERMINAL_STATUSES,
    Invariant,
    JobStatus,
    ObservationName,
    SubmitOutcome,
)

NAME = Invariant.QUEUE_ACCOUNTING


def accounting(history: History, *, task_name: str) -> dict[str, Any]:
    """The accounting table of docs/DESIGN.md for jobs of ``task_name`` (suffix match).

    ``recovered`` counts jobs of unknown submissions (ours, never acknowledged) that ended
    terminal; such a job still pending at the deadline is ``lost`` (in ``lost_ids``).
    ``duplicated_executions`` counts runs that repeat a run which did not end in a scheduled
    retry (a stalled-job re-queue, a shutdown re-queue, or two runs at once): the executions
    at-least-once delivery duplicated. Retries after a reported failure are not duplicates.
    ``repeated_writes`` counts fetches of an already fetched joke (the same effect written
    again); ``duplicate_effects`` counts extra rows for one joke (must be 0).
    """
    jobs = history.jobs
    runs = runs_by_job(history)
    acked = acknowledged_ids(history)
    acked_set = set(acked)
    submits = history.submits
    unknown_ops = [s for s in submits if s.outcome == SubmitOutcome.UNKNOWN]
    error_ops = [s for s in submits if s.outcome == SubmitOutcome.ERROR]

    succeeded: list[int] = []
    failed: list[int] = []
    lost: list[int] = []
    statuses: dict[int, str] = {}
    for job_id in acked:
        job = jobs.get(job_id)
        status = job.status if job is not None else JobStatus.MISSING
        statuses[job_id] = status
        if status == JobStatus.SUCCEEDED:
            succeeded.append(job_id)
        elif status in TERMINAL_STATUSES:
            failed.append(job_id)
        else:
            lost.append(job_id)

    ours = sorted(
        j.id for j in jobs.values() if j.task_name.endswith(task_name) and j.id not in acked_set
    )
    from_unknown = ours[: len(unknown_ops)]
    unexpected = ours[len(unknown_ops) :]
    recovered = [j for j in from_unknown if jobs[j].status in TERMINAL_STATUSES]
    for job_id in from_unknown:
        if job_id not in recovered:
            lost.append(job_id)
            statuses[job_id] = jobs[job_id].status

    duplicated_ids: list[int] = []
    duplicated = 0
    executions: dict[int, int] = {}
    for job_id in acked + from_unknown:
        job_runs = runs.get(job_id, [])
        executions[job_id] = len(job_runs)
        dups = sum(
            1
            for prev, _ in itertools.pairwise(job_runs)
            if prev.overlapped or not prev.scheduled_retry
        )
        if dups:
            duplicated += dups
            duplicated_ids.append(job_id)

    return {
        "acknowledged": len(acked),
        "succeeded": len(succeeded),
        "failed": len(failed),
        "lost": len(lost),
        "unexpected": len(unexpected),
        "recovered": len(recovered),
        "unknown": len(unknown_ops),
        "rejected": len(error_ops),
        "duplicated_executions": duplicated,
        "duplicate_effects": sum(n - 1 for n in duplicate_rows(history).values()),
        "repeated_writes": sum(n - 1 for n in joke_fetches(history).values() if n > 1),
        "lost_ids": lost,
        "duplicated_ids": duplicated_ids,
        "unexpected_ids": unexpected,
        "failed_ids": failed,
        "statuses": {str(k): v for k, v in statuses.items()},
        "executions": {str(k): v for k, v in executions.items()},
    }


def check_queue_accounting(
    history: History,
    *,
    task_name: str = SUBMITTED_TASK,
    expected_status: str | Mapping[int, str] | None = None,
) -> Verdict:
    """Fail when an acknowledged job is lost (not terminal at the deadline), a job nobody
    submitted appears, or a job ends in another status than ``expected_status`` (one status
    for every job, or one per job id)."""
    acc = accounting(history, task_name=task_name)
    acked = set(acknowledged_ids(history))
    evidence: list[Any] = []
    problems: list[str] = []
    if acc["lost"]:
        problems.append(f"{acc['lost']} lost")
        when = "at the deadline"
        for o in history.observations(ObservationName.NO_WORKER_LEFT):
            if isinstance(o.value, dict):
                codes = ", ".join(f"{w} exit code {c}" for w, c in sorted(o.value.items()))
                when = f"at the end, when no worker was left to run it ({codes})"
        for job_id in acc["lost_ids"]:
            status = acc["statuses"][str(job_id)]
            how = "acknowledged" if job_id in acked else "created by an unknown submission"
            evidence.append(f"job {job_id} {how} but {status} {when}")
    if acc["unexpected"]:
        problems.append(f"{acc['unexpected']} unexpected")
        evidence.extend(f"job {j} was never submitted" for j in acc["unexpected_ids"])
    if expected_status is not None:
        wanted = (
            {int(k): expected_status for k in acc["statuses"]}
            if isinstance(expected_status, str)
            else {int(k): v for k, v in expected_status.items()}
        )
        wrong = {
            int(k): v
            for k, v in acc["statuses"].items()
            if int(k) in wanted and v != wanted[int(k)] and int(k) not in acc["lost_ids"]
        }
        if wrong:
            problems.append(f"{len(wrong)} ended otherwise than expected")
            evidence.extend(f"job {k} ended {v}, expected {wanted[k]}" for k, v in wrong.items())
    line = (
        f"{acc['acknowledged']} acknowledged: {acc['succeeded']} succeeded, "
        f"{acc['failed']} failed, {acc['lost']} lost; "
        f"{acc['unknown']} unknown, {acc['recovered']} recovered, "
        f"{acc['unexpected']} unexpected; {acc['duplicated_executions']} duplicated executions"
    )
    if acc["acknowledged"] == 0:
        return Verdict(NAME, FAIL, "no job was acknowledged: nothing was tested", acc, evidence)
    status = FAIL if problems else PASS
    summary = f"{evidence[0]}; {'; '.join(problems)} ({line})" if problems else line
    return Verdict(NAME, status, summary, acc, evidence)
