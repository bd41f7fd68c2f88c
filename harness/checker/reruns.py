"""Justified re-runs: a job runs again (other than a scheduled retry after a failure) only when
a fault could have stopped its previous run, and never twice at once.

The bug it exists to catch: a stalled-job recovery that ignores its threshold and re-queues jobs
whose worker is alive and running them. The re-queue closes the still-running run in the event
log, so the two executions never look overlapped there; what gives it away is a re-run with no
fault on the worker that ran the first one. At-least-once delivery allows re-runs; it does not
allow them for no reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from harness.checker.runs import runs_by_job, stopping_faults
from harness.checker.verdict import FAIL, PASS, Verdict
from harness.history.records import History
from harness.vocabulary import Invariant

NAME = Invariant.JUSTIFIED_RERUNS


def check_justified_reruns(history: History, *, jobs: Iterable[int] | None = None) -> Verdict:
    """Every re-execution (a run after a run that did not end in a scheduled retry) of every
    job (or of ``jobs``) must be justified by a fault that could have stopped the previous run
    (see :func:`harness.checker.runs.could_stop`): a kill, SIGTERM, restart, pause or
    backend termination of the worker that ran it (any worker when its log does not say), or a
    database-wide fault, with a window meeting [previous start, previous end]. Two runs at once
    always fail. Never unknown: no re-execution is a pass."""
    by_job = runs_by_job(history)
    wanted = None if jobs is None else set(jobs)
    reruns: list[dict[str, Any]] = []
    evidence: list[str] = []
    for job_id, runs in sorted(by_job.items()):
        if wanted is not None and job_id not in wanted:
            continue
        for prev, nxt in itertools.pairwise(runs):
            if prev.scheduled_retry and not prev.overlapped:
                continue
            on = f" on {prev.worker}" if prev.worker else ""
            where = f"job {job_id} run {nxt.number}"
            row: dict[str, Any] = {
                "job_id": job_id,
                "run": nxt.number,
                "previous_worker": prev.worker,
                "previous_end": prev.end_type,
                "justified_by": [],
            }
            reruns.append(row)
            if prev.overlapped:
                row["overlapped"] = True
                evidence.append(
                    f"{where} started while run {prev.number}{on} was still running: "
                    "two executions at once"
                )
                continue
            faults = stopping_faults(history, prev, until=nxt.start)
            row["justified_by"] = [f"{f.kind_} {f.target}" for f in faults]
            if not faults:
                evidence.append(
                    f"{where}: re-executed after run {prev.number}{on} ended "
                    f"{prev.end_type or 'never'} with no fault that could have stopped it"
                )
    figures: dict[str, Any] = {
        "reruns": reruns,
        "unjustified": len(evidence),
    }
    if evidence:
        return Verdict(
            NAME,
            FAIL,
            f"{evidence[0]} ({len(evidence)} of {len(reruns)} re-executions unjustified)",
            figures,
            evidence,
        )
    if not reruns:
        return Verdict(NAME, PASS, "no re-execution: every job ran once per attempt", figures)
    return Verdict(
        NAME,
        PASS,
        f"{len(reruns)} re-executions, each justified by a fault that could stop its run",
        figures,
    )
