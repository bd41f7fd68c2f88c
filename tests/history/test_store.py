"""The JSONL writer flushes each record, and the reader gives back the same records."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from harness.history import (
    Fault,
    HistoryWriter,
    Job,
    Observation,
    Submit,
    read_history,
    record_from_dict,
)
from harness.history.builder import HistoryBuilder
from harness.history.records import HistoryFormatError


def test_each_line_is_flushed_before_close(tmp_path: Path) -> None:
    path = tmp_path / "h" / "x.jsonl"
    writer = HistoryWriter(path)
    writer.write(Submit(op_id=1, t_invoke=1.0, t_complete=1.1, outcome="ok", job_id=5))
    lines = path.read_text().splitlines()  # read while the writer is still open
    assert len(lines) == 1
    assert next(iter(json.loads(lines[0]))) == "kind"
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(Observation(name="x", value=1, t=0.0))


def test_round_trip_of_a_whole_history(tmp_path: Path) -> None:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.1, 0.2, "retry", retry_in=1.0)
    b.run(1, 1.3, 1.4)
    b.fault("proxy_down", "jokeapi", 0.0, 0.5, proxy="jokeapi")
    b.effect("j1")
    b.job_effect(1, "j1", 1.38)
    b.fetch("j1", 1.35)
    b.observe("health_status", 200, 1.5)
    history = b.build()
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as writer:
        for r in history:
            writer.write(r)
    back = read_history(path)
    assert back.records == history.records
    assert back.faults[0].kind_ == "proxy_down"
    assert [(e.job_id, e.joke_id) for e in back.job_effects] == [(1, "j1")]
    fault_line = next(json.loads(x) for x in path.read_text().splitlines() if '"fault"' in x)
    assert fault_line["fault_kind"] == "proxy_down" and fault_line["kind"] == "fault"


def test_last_line_per_fault_wins(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    with HistoryWriter(path) as w:
        w.write(Fault(fault_id=1, kind_="kill", target="worker:a", start=1.0, end=None))
        w.write(Fault(fault_id=1, kind_="kill", target="worker:a", start=1.0, end=2.0))
    faults = read_history(path).faults
    assert len(faults) == 1 and faults[0].end == 2.0


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with HistoryWriter(path) as w:

        def spam(n: int) -> None:
            for i in range(200):
                w.write(Observation(name=f"t{n}", value="x" * 500, t=float(i)))

        threads = [threading.Thread(target=spam, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(read_history(path)) == 800


def test_bad_lines_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"kind": "end", "finished_at": 1, "deadline": 2}\n{"kind": "nope"}\n')
    with pytest.raises(HistoryFormatError, match=r"bad.jsonl:2: unknown history record kind"):
        read_history(path)
    with pytest.raises(HistoryFormatError, match="bad job record"):
        record_from_dict({"kind": "job", "id": 1})


def test_unknown_fields_are_ignored() -> None:
    job = record_from_dict(
        {
            "kind": "job",
            "id": 1,
            "task_name": "t",
            "queue": "q",
            "status": "todo",
            "attempts": 0,
            "future_field": True,
        }
    )
    assert isinstance(job, Job) and job.id == 1


def test_calibration_is_the_last_calibration_observation() -> None:
    b = HistoryBuilder()
    assert b.build().calibration is None
    b.observe("calibration", {"samples": 3, "pickup_max": 0.02}, 1.0)
    b.observe("calibration", {"samples": 5, "pickup_max": 0.03}, 2.0)
    assert b.history.calibration == {"samples": 5, "pickup_max": 0.03}
