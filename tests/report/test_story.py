"""A job's story from a hand-made history: order, worker per run, endings, faults, sweeps."""

from __future__ import annotations

import json

from harness.history.builder import HistoryBuilder
from harness.report import story
from harness.report.history import Loaded, parse_lines
from harness.report.logs import parse_log

T0 = 1_790_000_000.0


def _loaded() -> Loaded:
    b = HistoryBuilder(T0, "worker_crash")
    b.submit(7, 0.1)
    b.run(7, 0.2, 2.0, "retry")  # re-queued by the sweep after the kill
    b.run(7, 2.2, 2.5)
    b.submit(8, 0.1)
    b.run(8, 0.2, 0.4)
    b.fault("kill", "worker:w1", 1.0, 1.05, signal="SIGKILL")
    b.fault("latency", "jokeapi", 30.0, 31.0)  # far from the job: not in its story
    b.observe("stalled_recovery", {"job_id": 7, "attempts": 0, "worker_id": 3}, 2.0)
    lines = [json.dumps(r.to_dict()) for r in b.build(5.0)] + ["{broken", '{"kind": "new"}']
    return parse_lines(lines)


def test_story_is_chronological_and_explains_each_run() -> None:
    loaded = _loaded()
    assert loaded.bad_lines == 1 and loaded.unknown_kinds == {"new": 1}
    runs = loaded.runs[7]
    vars(runs[0])["worker"] = "w1"  # Run.worker, set by the checker from the worker logs (C5)
    logs = {"w2": parse_log("w2", ["2026-09-21 00:00:00,000 INFO x: Job 7: Fetching joke\n"])}
    lines = story.story(loaded, 7, logs, {"w2": "logs/s/w2.log"}, "duplicated")
    timed = [ln.t for ln in lines if ln.t is not None]
    assert timed == sorted(timed)
    texts = [ln.text for ln in lines]
    assert "run 1 started on worker w1" in texts
    assert "run 2 started (worker not recorded)" in texts
    assert any(t.startswith("run 1 re-queued by the stalled-job sweep") for t in texts)
    assert any(t.startswith("run 2 succeeded after 0.30 s") for t in texts)
    assert "fault starts: kill on worker:w1 (signal=SIGKILL)" in texts
    assert not any("latency" in t for t in texts)
    assert "stalled-job sweep re-queued it (attempts 0, worker id 3)" in texts
    log = next(ln for ln in lines if ln.kind == "log")
    assert log.text == "INFO x: Job 7: Fetching joke" and log.ref == "logs/s/w2.log"
    assert lines[-1].kind == "final" and lines[-1].text.endswith("→ duplicated")
    # the kill hit the worker that ran the job: marked as bad news
    kill = next(ln for ln in lines if ln.text.startswith("fault starts: kill"))
    assert kill.bad
    other = story.story(loaded, 8, {}, {})
    assert not any("sweep" in ln.text for ln in other)
