"""Read a scenario's history with the checker's own model (``harness.history``) and derive its
runs with the checker's own :func:`harness.checker.runs_by_job`, so the report draws exactly
the runs the checker judged.

Unlike :func:`harness.history.read_history`, a bad line does not stop the reading: the report
must render whatever is on disk, including a truncated history from a run that crashed, so bad
lines (and record kinds this version does not know) are counted and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from harness.checker import Run, runs_by_job
from harness.history import History
from harness.history.records import (
    Fault,
    HistoryFormatError,
    Job,
    JobEvent,
    Observation,
    Submit,
    record_from_dict,
)


@dataclass
class Loaded:
    """A parsed history, what could not be read, and the views the report draws."""

    history: History
    bad_lines: int = 0
    unknown_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def t0(self) -> float:
        """The scenario's start (``meta.started_at``), else its earliest time."""
        meta = self.history.meta
        if meta is not None:
            return float(meta.started_at)
        return min(self.times, default=0.0)

    @cached_property
    def times(self) -> list[float]:
        """Every time a record carries."""
        out: list[float] = []
        for r in self.history:
            for key in ("t", "at", "start", "end", "t_invoke", "t_complete", "finished_at"):
                value = getattr(r, key, None)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out.append(float(value))
        return out

    @property
    def t_end(self) -> float:
        """The latest time any record carries."""
        return max(self.times, default=self.t0)

    @cached_property
    def runs(self) -> dict[int, list[Run]]:
        """Job id -> its runs, as the checker derives them."""
        return runs_by_job(self.history)

    @cached_property
    def submitted(self) -> set[int]:
        """Ids of jobs the scenario submitted (acknowledged or not)."""
        return {int(s.job_id) for s in self.history.submits if s.job_id is not None}

    @cached_property
    def jobs(self) -> dict[int, Job]:
        """Job id -> its final snapshot."""
        return self.history.jobs

    @cached_property
    def events_by_job(self) -> dict[int, list[JobEvent]]:
        """Job id -> its events in insertion order."""
        return self.history.events_by_job()

    @cached_property
    def faults(self) -> list[Fault]:
        """Fault windows, last line per fault id, by start."""
        return self.history.faults

    @cached_property
    def observations(self) -> list[Observation]:
        """Every observation in time order."""
        return self.history.observations()

    @cached_property
    def _submits(self) -> dict[int, list[Submit]]:
        out: dict[int, list[Submit]] = {}
        for s in self.history.submits:
            if s.job_id is not None:
                out.setdefault(int(s.job_id), []).append(s)
        return out

    def task_name(self, job_id: int) -> str:
        job = self.jobs.get(job_id)
        return job.task_name if job is not None else ""

    def submits_of(self, job_id: int) -> list[Submit]:
        return list(self._submits.get(job_id, []))


def worker_of(run: Run) -> str | None:
    """The worker that ran ``run`` (``Run.worker``, from the checker; ``None`` when unknown)."""
    worker = getattr(run, "worker", None)
    return str(worker) if worker else None


def parse_lines(lines: Iterable[str]) -> Loaded:
    """Parse JSONL text into the checker's History, skipping and counting what it cannot read."""
    history = History()
    bad = 0
    unknown: dict[str, int] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(data, dict):
            bad += 1
            continue
        try:
            history.add(record_from_dict(data))
        except HistoryFormatError as exc:
            if str(exc).startswith("unknown history record kind"):  # a newer writer's kind
                kind = str(data.get("kind"))
                unknown[kind] = unknown.get(kind, 0) + 1
            else:
                bad += 1
    return Loaded(history, bad, unknown)


def load_history(path: Path) -> Loaded | None:
    """The history at ``path``, or ``None`` when there is no readable file."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return parse_lines(fh)
    except OSError:
        return None
