"""History's cached views stay correct when records are added, appended or replaced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.history.builder import HistoryBuilder
from harness.history.records import Fault, History, Job, JobEvent, Observation, Record


def _naive(history: History) -> dict[str, Any]:
    """The views as the uncached History computed them: one scan per access."""
    recs = list(history.records)
    by_id: dict[int, Fault] = {}
    for f in (r for r in recs if isinstance(r, Fault)):
        by_id[f.fault_id] = f
    obs = sorted((r for r in recs if isinstance(r, Observation)), key=lambda o: o.t)
    return {
        "faults": sorted(by_id.values(), key=lambda f: (f.start, f.fault_id)),
        "jobs": {j.id: j for j in recs if isinstance(j, Job)},
        "events": sorted((r for r in recs if isinstance(r, JobEvent)), key=lambda e: e.id),
        "observations": obs,
        "ready": [o for o in obs if o.name == "ready"],
    }


def _views(history: History) -> dict[str, Any]:
    return {
        "faults": history.faults,
        "jobs": history.jobs,
        "events": history.events,
        "observations": history.observations(),
        "ready": history.observations("ready"),
    }


def test_views_follow_add_append_and_assignment() -> None:
    b = HistoryBuilder()
    b.submit(1, 0.0)
    b.run(1, 0.1, 0.2)
    b.fault("kill", "worker:w1", 0.15, None)
    h = b.build()
    assert _views(h) == _naive(h)
    closed = Fault(fault_id=1, kind_="kill", target="worker:w1", start=h.faults[0].start, end=1.0)
    h.add(closed)
    assert h.faults == [closed]
    h.records.append(Job(id=2, task_name="t", queue="q", status="todo", attempts=0))
    assert set(h.jobs) == {1, 2}
    h.records = [r for r in h.records if not isinstance(r, Job)]
    assert h.jobs == {}
    assert _views(h) == _naive(h)


def test_returned_views_are_copies() -> None:
    b = HistoryBuilder()
    b.submit(1, 0.0)
    h = b.build()
    h.submits.clear()
    h.jobs.clear()
    h.events.clear()
    assert len(h.submits) == 1 and set(h.jobs) == {1} and len(h.events) == 1


@dataclass(frozen=True)
class _SpecialJob(Job):
    kind: ClassVar[str] = "job"


def test_a_record_subclass_is_still_found() -> None:
    h = History([_SpecialJob(id=7, task_name="t", queue="q", status="todo", attempts=0)])
    assert set(h.jobs) == {7}


_record = st.one_of(
    st.builds(
        Fault,
        fault_id=st.integers(1, 4),
        kind_=st.just("kill"),
        target=st.just("worker:w1"),
        start=st.floats(0, 10),
        end=st.none() | st.floats(0, 10),
    ),
    st.builds(
        Job,
        id=st.integers(1, 5),
        task_name=st.just("t"),
        queue=st.just("q"),
        status=st.sampled_from(["todo", "succeeded"]),
        attempts=st.integers(0, 3),
    ),
    st.builds(
        JobEvent,
        id=st.integers(1, 50),
        job_id=st.integers(1, 5),
        type=st.just("started"),
        at=st.floats(0, 10),
    ),
    st.builds(
        Observation, name=st.sampled_from(["ready", "other"]), value=st.none(), t=st.floats(0, 10)
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_record, max_size=6), max_size=5))
def test_cached_views_equal_a_fresh_scan(batches: list[list[Record]]) -> None:
    h = History()
    for batch in batches:
        for record in batch:
            h.add(record)
        assert _views(h) == _naive(h)
