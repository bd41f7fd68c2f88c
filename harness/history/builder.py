"""Build synthetic histories in a few lines: for checker tests and report tests.

Times are seconds relative to ``t0``. Job events and the final job snapshots follow what
Procrastinate writes (see harness/checker/runs.py), so the checker reads them like real ones.
"""

from __future__ import annotations

from typing import Any

from harness.history.records import (
    ApiRequest,
    Effect,
    End,
    Fault,
    History,
    Job,
    JobEffect,
    JobEvent,
    Meta,
    Observation,
    Submit,
)
from harness.vocabulary import EventType, JobStatus, ObservationName, SubmitOutcome

TASK = "system.tasks.fetch_and_cache_joke"


class HistoryBuilder:
    """Accumulate submissions, runs, faults, effects and observations; :meth:`build` them."""

    def __init__(self, t0: float = 1_700_000_000.0, scenario: str = "synthetic") -> None:
        self.t0 = t0
        self.history = History(
            [
                Meta(
                    scenario=scenario,
                    seed=0,
                    profile="fast",
                    backend="local",
                    settings={},
                    started_at=t0,
                )
            ]
        )
        self._event_id = 0
        self._op_id = 0
        self._fault_id = 0
        self._status: dict[int, str] = {}
        self._attempts: dict[int, int] = {}
        self._runs: dict[int, int] = {}
        self._task: dict[int, str] = {}

    def _event(self, job_id: int, type_: str, at: float) -> None:
        self._event_id += 1
        self.history.add(JobEvent(id=self._event_id, job_id=job_id, type=type_, at=self.t0 + at))

    def submit(
        self,
        job_id: int | None,
        at: float = 0.0,
        *,
        outcome: str = SubmitOutcome.OK,
        task: str = TASK,
    ) -> int | None:
        """A submission; for ``ok`` and for an ``unknown`` with a job id, the job is deferred."""
        self._op_id += 1
        recorded_id = job_id if outcome == SubmitOutcome.OK else None
        self.history.add(
            Submit(
                op_id=self._op_id,
                t_invoke=self.t0 + at,
                t_complete=self.t0 + at + 0.01,
                outcome=outcome,
                job_id=recorded_id,
                error=None if outcome == SubmitOutcome.OK else "synthetic",
            )
        )
        if job_id is not None and outcome != SubmitOutcome.ERROR:
            self.job(job_id, at, task=task)
        return job_id

    def job(self, job_id: int, at: float = 0.0, *, task: str = TASK) -> None:
        """A job row appears (deferred) without a submission."""
        self._status[job_id] = JobStatus.TODO
        self._attempts[job_id] = 0
        self._task[job_id] = task
        self._event(job_id, EventType.DEFERRED, at + 0.005)

    def run(
        self,
        job_id: int,
        start: float,
        end: float | None = None,
        outcome: str = "succeeded",
        *,
        retry_in: float | None = None,
        recovered: bool = False,
        worker: str | None = None,
    ) -> None:
        """One run from ``start``; ``outcome``: succeeded, failed, aborted, retry (re-queued;
        a ``scheduled`` retry time when ``retry_in`` is given; with ``recovered`` the SUT
        records it as a stalled-job recovery, which re-queues with ``retry_at=now()``).
        ``worker``: the worker whose log shows the run (a ``run_worker`` observation)."""
        self._event(job_id, EventType.STARTED, start)
        self._status[job_id] = JobStatus.DOING
        self._runs[job_id] = self._runs.get(job_id, 0) + 1
        if worker is not None:
            self.observe(
                ObservationName.RUN_WORKER,
                {"job_id": job_id, "run": self._runs[job_id], "worker": worker},
                start + 0.001,
            )
        if end is None:
            return
        if outcome == "retry":
            if recovered:
                retry_in = 0.003 if retry_in is None else retry_in
                self.observe(
                    ObservationName.STALLED_RECOVERY,
                    {"job_id": job_id, "attempts": self._attempts[job_id], "worker_id": 1},
                    end,
                )
            if retry_in is not None:
                self._event(job_id, EventType.SCHEDULED, end + retry_in)
            self._event(job_id, EventType.DEFERRED_FOR_RETRY, end)
            self._status[job_id] = JobStatus.TODO
            self._attempts[job_id] += 1
        else:
            self._event(job_id, outcome, end)
            self._status[job_id] = outcome
            self._attempts[job_id] += 1

    def fault(self, kind: str, target: str, start: float, end: float | None, **detail: Any) -> None:
        """A fault window."""
        self._fault_id += 1
        self.history.add(
            Fault(
                fault_id=self._fault_id,
                kind_=kind,
                target=target,
                start=self.t0 + start,
                end=None if end is None else self.t0 + end,
                detail=detail,
            )
        )

    def effect(self, joke_id: str, at: float = 0.0) -> None:
        """A row in the jokes table."""
        self.history.add(Effect(joke_id=joke_id, created_at=self.t0 + at, updated_at=self.t0 + at))

    def job_effect(self, job_id: int, joke_id: str, at: float = 0.0) -> None:
        """A row of the job -> effect table: job ``job_id`` stored ``joke_id``."""
        self.history.add(JobEffect(job_id=job_id, joke_id=joke_id, stored_at=self.t0 + at))

    def fetch(self, joke_id: str | None, at: float = 0.0, *, status: int = 200) -> None:
        """A request the fake API served."""
        self.history.add(
            ApiRequest(
                t_start=self.t0 + at,
                t_end=self.t0 + at + 0.01,
                method="GET",
                path="/jokes/random",
                query={},
                status=status,
                outcome="ok" if status == 200 else "fault",
                joke_id=joke_id if status == 200 else None,
            )
        )

    def observe(self, name: str, value: Any, at: float) -> None:
        """A scenario observation, e.g. ``health_status``."""
        self.history.add(Observation(name=name, value=value, t=self.t0 + at))

    def build(self, finished: float = 100.0) -> History:
        """Add the final job snapshots and the ``end`` record; return the history."""
        for job_id, status in self._status.items():
            self.history.add(
                Job(
                    id=job_id,
                    task_name=self._task[job_id],
                    queue="api_calls",
                    status=status,
                    attempts=self._attempts[job_id],
                )
            )
        self.history.add(End(finished_at=self.t0 + finished, deadline=self.t0 + finished))
        return self.history
