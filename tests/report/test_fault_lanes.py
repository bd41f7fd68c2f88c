"""Overlapping faults (a random schedule) get one lane per target under the timeline."""

from __future__ import annotations

from harness.history.builder import HistoryBuilder
from harness.report.charts import LANES_FROM, timeline_chart
from harness.report.history import Loaded


def _history(faults: int) -> Loaded:
    b = HistoryBuilder()
    b.submit(1)
    b.run(1, 0.5, 3.0, "succeeded")
    targets = ["worker:w1", "worker:w2", "postgres", "dblink", "jokeapi"]
    for k in range(faults):
        b.fault("kill", targets[k % len(targets)], 0.2 + 0.3 * k, 1.5 + 0.3 * k)
    return Loaded(b.build())


def test_overlapping_faults_get_a_lane_per_target() -> None:
    svg = timeline_chart(_history(LANES_FROM + 3), "t")
    assert svg is not None and "faults by" in svg
    for lane in ("worker:w1", "worker:w2", "postgres", "dblink", "jokeapi"):
        assert lane in svg


def test_a_scripted_scenario_with_few_faults_keeps_its_timeline_as_it_was() -> None:
    svg = timeline_chart(_history(LANES_FROM), "t")
    assert svg is not None and "faults by" not in svg
