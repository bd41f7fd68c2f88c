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


def test_a_random_run_shows_its_schedule_and_the_minimal_one_with_replay() -> None:
    from harness.randomized.generator import generate
    from harness.report.section import _schedules

    original = generate(4, faults=5)
    minimal = original.with_faults(original.faults[:1])
    b = HistoryBuilder()
    b.observe("schedule", original.to_dict(), 0.0)
    b.observe(
        "minimal_schedule",
        {
            "schedule": minimal.to_dict(),
            "replay": "pytest scenarios/test_random.py --schedule m.json",
            "summary": "5 faults shrunk to 1",
        },
        50.0,
    )
    html = _schedules(Loaded(b.build()))
    assert "Fault schedule" in html and "Minimal failing schedule (shrunk)" in html
    assert html.count("<tr><td>") == 5 + 1
    assert "--schedule m.json" in html and "5 faults shrunk to 1" in html
    assert _schedules(Loaded(HistoryBuilder().build())) == ""
