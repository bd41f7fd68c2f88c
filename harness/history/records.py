"""History record types, one dataclass per ``kind`` of docs/DESIGN.md's history table.

Times are epoch seconds (floats). ``to_dict`` puts ``kind`` first, as the JSONL format wants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.vocabulary import ObservationName

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class _Base:
    kind: ClassVar[str] = ""

    def to_dict(self) -> JsonDict:
        """The record as a JSON object with ``kind`` first."""
        out: JsonDict = {"kind": self.kind}
        out.update(dataclasses.asdict(self))
        return out


@dataclass(frozen=True)
class Meta(_Base):
    """What ran: scenario, seed, profile, backend, the SUT's settings (durations in seconds)."""

    kind: ClassVar[str] = "meta"
    scenario: str
    seed: int
    profile: str
    backend: str
    settings: JsonDict
    started_at: float
    toxiproxy: str = "unknown"


@dataclass(frozen=True)
class Submit(_Base):
    """One submission through the SUT's API: ``ok`` (job_id known), ``unknown`` or ``error``."""

    kind: ClassVar[str] = "submit"
    op_id: int
    t_invoke: float
    t_complete: float
    outcome: str
    job_id: int | None
    args: JsonDict = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Fault(_Base):
    """A fault window; ``end`` is None while the fault is open (or never closed)."""

    kind: ClassVar[str] = "fault"
    fault_id: int
    kind_: str
    target: str
    start: float
    end: float | None
    detail: JsonDict = field(default_factory=dict)

    def to_dict(self) -> JsonDict:
        # The field is called ``kind`` in the file; ``kind_`` only avoids the record's own ``kind``.
        return {
            "kind": self.kind,
            "fault_id": self.fault_id,
            "fault_kind": self.kind_,
            "target": self.target,
            "start": self.start,
            "end": self.end,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ApiRequest(_Base):
    """One request the fake joke API received (its own record, see docs/DESIGN.md)."""

    kind: ClassVar[str] = "api_request"
    t_start: float
    t_end: float | None
    method: str
    path: str
    query: JsonDict
    status: int | None
    outcome: str
    joke_id: str | None = None
    fault: str | None = None


@dataclass(frozen=True)
class Job(_Base):
    """Final snapshot of a ``procrastinate_jobs`` row."""

    kind: ClassVar[str] = "job"
    id: int
    task_name: str
    queue: str
    status: str
    attempts: int
    args: JsonDict = field(default_factory=dict)
    lock: str | None = None
    queueing_lock: str | None = None
    scheduled_at: float | None = None


@dataclass(frozen=True)
class JobEvent(_Base):
    """A ``procrastinate_events`` row (a ``scheduled`` event's ``at`` is the scheduled time)."""

    kind: ClassVar[str] = "job_event"
    id: int
    job_id: int
    type: str
    at: float


@dataclass(frozen=True)
class Effect(_Base):
    """A row of ``chuck_norris_jokes``, with the table's own times."""

    kind: ClassVar[str] = "effect"
    joke_id: str
    created_at: float | None = None
    updated_at: float | None = None


@dataclass(frozen=True)
class JobEffect(_Base):
    """A row of the system's job -> effect table: job ``job_id`` stored joke ``joke_id``."""

    kind: ClassVar[str] = "job_effect"
    job_id: int
    joke_id: str
    stored_at: float


@dataclass(frozen=True)
class Observation(_Base):
    """Anything a scenario measured, e.g. ``health_status`` or ``worker_ready``."""

    kind: ClassVar[str] = "observation"
    name: str
    value: Any
    t: float


@dataclass(frozen=True)
class End(_Base):
    """When the scenario stopped waiting for jobs, and the deadline it had."""

    kind: ClassVar[str] = "end"
    finished_at: float
    deadline: float


Record = (
    Meta | Submit | Fault | ApiRequest | Job | JobEvent | Effect | JobEffect | Observation | End
)

_TYPES: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        Meta,
        Submit,
        Fault,
        ApiRequest,
        Job,
        JobEvent,
        Effect,
        JobEffect,
        Observation,
        End,
    )
}


class HistoryFormatError(ValueError):
    """A history line that is not a record this module knows."""


def record_from_dict(data: JsonDict) -> Record:
    """Build a record from its JSON object; unknown keys are ignored (forward compatible)."""
    kind = data.get("kind")
    cls = _TYPES.get(str(kind))
    if cls is None:
        raise HistoryFormatError(f"unknown history record kind {kind!r}")
    values = {k: v for k, v in data.items() if k != "kind"}
    if cls is Fault:
        values["kind_"] = values.pop("fault_kind", None)
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        record: Record = cls(**{k: v for k, v in values.items() if k in names})
    except TypeError as exc:
        raise HistoryFormatError(f"bad {kind} record: {exc}") from None
    return record


class History:
    """An in-memory history, with the records split by kind for the checker.

    The split and the derived views (``faults``, ``jobs``, ``events``...) are computed once and
    cached until a record is added (:meth:`add`, or ``records`` assigned or grown); each access
    returns a fresh list or dict, so a caller may change what it gets. Records themselves are
    frozen. Replacing an element of ``records`` in place is not seen: assign ``records``.
    """

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._records: list[Record] = list(records)
        self._cache: dict[str, Any] = {}
        self._cached_len = -1

    @property
    def records(self) -> list[Record]:
        return self._records

    @records.setter
    def records(self, value: list[Record]) -> None:
        self._records = value
        self._cache.clear()

    def __iter__(self) -> Iterator[Record]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: Record) -> None:
        """Append a record."""
        self._records.append(record)
        self._cache.clear()

    def _cached(self, key: str, build: Callable[[], Any]) -> Any:
        if self._cached_len != len(self._records):
            self._cache.clear()  # grown behind our back (``records.append``)
            self._cached_len = len(self._records)
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def _split(self) -> dict[type[Any], list[Any]] | None:
        """Record class -> its records, in order; None when a record is of another class (a
        subclass): then :meth:`_of` scans with ``isinstance``."""
        by_kind: dict[type[Any], list[Any]] = {cls: [] for cls in _TYPES.values()}
        for r in self._records:
            same = by_kind.get(type(r))
            if same is None:
                return None
            same.append(r)
        return by_kind

    def _of(self, cls: type[Any]) -> list[Any]:
        by_kind: dict[type[Any], list[Any]] | None = self._cached("split", self._split)
        if by_kind is not None and cls in by_kind:
            return list(by_kind[cls])
        return [r for r in self._records if isinstance(r, cls)]

    @property
    def meta(self) -> Meta | None:
        metas: list[Meta] = self._of(Meta)
        return metas[0] if metas else None

    @property
    def end(self) -> End | None:
        ends: list[End] = self._of(End)
        return ends[-1] if ends else None

    @property
    def submits(self) -> list[Submit]:
        return self._of(Submit)

    @property
    def faults(self) -> list[Fault]:
        """Fault windows; a window written twice (opened, then closed) keeps its last version."""
        return list(self._cached("faults", self._faults))

    def _faults(self) -> list[Fault]:
        by_id: dict[int, Fault] = {}
        for f in self._of(Fault):
            by_id[f.fault_id] = f
        return sorted(by_id.values(), key=lambda f: (f.start, f.fault_id))

    @property
    def api_requests(self) -> list[ApiRequest]:
        return self._of(ApiRequest)

    @property
    def jobs(self) -> dict[int, Job]:
        return dict(self._cached("jobs", lambda: {j.id: j for j in self._of(Job)}))

    @property
    def events(self) -> list[JobEvent]:
        """Every job event, in insertion (id) order."""
        return list(self._sorted_events())

    def _sorted_events(self) -> list[JobEvent]:
        events: list[JobEvent] = self._cached(
            "events", lambda: sorted(self._of(JobEvent), key=lambda e: e.id)
        )
        return events

    def events_by_job(self) -> dict[int, list[JobEvent]]:
        """Job id -> its events in insertion (id) order."""
        out: dict[int, list[JobEvent]] = {}
        for e in self._sorted_events():
            out.setdefault(e.job_id, []).append(e)
        return out

    @property
    def effects(self) -> list[Effect]:
        return self._of(Effect)

    @property
    def job_effects(self) -> list[JobEffect]:
        """Rows of the job -> effect table (which job stored which joke)."""
        return self._of(JobEffect)

    @property
    def calibration(self) -> Any:
        """The last ``calibration`` observation's value (pickup latency measured before the
        faults), or None when the scenario did not calibrate."""
        found = self.observations(ObservationName.CALIBRATION)
        return found[-1].value if found else None

    def observations(self, name: str | None = None) -> list[Observation]:
        """Observations, optionally only those called ``name``, in time order."""
        every: list[Observation] = self._cached(
            "observations", lambda: sorted(self._of(Observation), key=lambda o: o.t)
        )
        if name is None:
            return list(every)
        by_name: dict[str, list[Observation]] = self._cached(
            "observations_by_name", lambda: _by_name(every)
        )
        return list(by_name.get(name, []))


def _by_name(observations: list[Observation]) -> dict[str, list[Observation]]:
    """Observation name -> those observations, in the given order."""
    out: dict[str, list[Observation]] = {}
    for o in observations:
        out.setdefault(o.name, []).append(o)
    return out
