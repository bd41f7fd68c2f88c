"""What the report needs from a JSONL history (record kinds: docs/DESIGN.md).

Read here with plain ``json`` rather than ``harness.history``'s reader on purpose: the report
must render whatever is on disk, including a truncated or partly corrupt history from a run
that crashed, so bad lines are counted and skipped instead of raising.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Json = dict[str, Any]
# As harness/checker/runs.py: a run ends with one of these; ``scheduled`` only sets a retry time.
RUN_END_EVENTS = frozenset({"succeeded", "failed", "deferred_for_retry", "aborted"})
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "aborted"})


@dataclass(frozen=True)
class Run:
    """One execution of a job: from its ``started`` event to the event that ended it."""

    job_id: int
    start: float
    end: float | None
    outcome: str  # the ending event's type, or "open" when nothing ended it


@dataclass
class History:
    """A parsed history plus the derived views the report draws."""

    records: list[Json]
    bad_lines: int = 0
    meta: Json = field(default_factory=dict)

    @property
    def t0(self) -> float:
        """The scenario's start (``meta.started_at``), else its earliest time."""
        started = self.meta.get("started_at")
        if isinstance(started, int | float):
            return float(started)
        times = [t for r in self.records for t in _times(r)]
        return min(times) if times else 0.0

    @property
    def t_end(self) -> float:
        """The latest time any record carries."""
        times = [t for r in self.records for t in _times(r)]
        return max(times) if times else self.t0

    def of_kind(self, kind: str) -> list[Json]:
        return [r for r in self.records if r.get("kind") == kind]

    def faults(self) -> list[Json]:
        """Fault windows; one written twice (opened, then closed) keeps its last line."""
        by_id: dict[object, Json] = {}
        for n, f in enumerate(self.of_kind("fault")):
            by_id[f.get("fault_id", f"line-{n}")] = f
        return sorted(by_id.values(), key=lambda f: _num_or(f.get("start"), float("inf")))

    def runs(self) -> dict[int, list[Run]]:
        """Every job's runs, from ``job_event`` records ordered by time."""
        events: dict[int, list[Json]] = defaultdict(list)
        for e in self.of_kind("job_event"):
            if isinstance(e.get("job_id"), int) and isinstance(e.get("at"), int | float):
                events[e["job_id"]].append(e)
        out: dict[int, list[Run]] = {}
        for job_id, evs in sorted(events.items()):
            # Insertion (id) order, as the checker reads them; time order when ids are missing.
            evs.sort(key=lambda e: (_num_or(e.get("id"), float("inf")), e["at"]))
            runs: list[Run] = []
            start: float | None = None
            for e in evs:
                if e.get("type") == "started":
                    if start is not None:  # started again without an end: the run vanished
                        runs.append(Run(job_id, start, None, "open"))
                    start = float(e["at"])
                elif e.get("type") in RUN_END_EVENTS and start is not None:
                    runs.append(Run(job_id, start, float(e["at"]), str(e["type"])))
                    start = None
            if start is not None:
                runs.append(Run(job_id, start, None, "open"))
            out[job_id] = runs
        return out

    def trail(self, job_id: object) -> list[Json]:
        """Everything recorded about one job, in time order: submission, events, final row."""
        related = [
            r
            for r in self.records
            if (r.get("kind") in ("submit", "job_event") and r.get("job_id") == job_id)
            or (r.get("kind") == "job" and r.get("id") == job_id)
        ]
        return sorted(related, key=_sort_time)


def fault_kind(record: Mapping[str, Any]) -> str:
    """A fault record's own kind (stored as ``fault_kind``: ``kind`` is the record's kind)."""
    return str(record.get("fault_kind") or record.get("type") or "fault")


def _num_or(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default


def _times(record: Mapping[str, Any]) -> Iterable[float]:
    for key in (
        "t",
        "at",
        "start",
        "end",
        "t_invoke",
        "t_complete",
        "t_start",
        "t_end",
        "started_at",
        "finished_at",
    ):
        value = record.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield float(value)


def _sort_time(record: Mapping[str, Any]) -> float:
    # A job's final snapshot has no time of its own: it goes last.
    return min(_times(record), default=float("inf"))


def parse_lines(lines: Iterable[str]) -> History:
    """Parse JSONL text, skipping (and counting) lines that are not JSON objects."""
    records: list[Json] = []
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(value, dict):
            records.append(value)
        else:
            bad += 1
    meta = next((r for r in records if r.get("kind") == "meta"), {})
    return History(records, bad, meta)


def load_history(path: Path) -> History | None:
    """The history at ``path``, or ``None`` when there is no readable file."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return parse_lines(fh)
    except OSError:
        return None
