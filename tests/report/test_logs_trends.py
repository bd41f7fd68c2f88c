"""Process logs (times, job mentions, unexpected exits), trends across runs, junit skips."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from harness.report import trends
from harness.report.__main__ import junit_skips
from harness.report.logs import (
    ended_with_error,
    job_pattern,
    last_problems,
    lines_naming,
    mentions,
    parse_log,
)

T = 1_790_000_000.0


def _stamp(at: float) -> str:
    return dt.datetime.fromtimestamp(T + at).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def test_log_lines_get_times_and_starts_take_the_next_lines_time() -> None:
    lines = parse_log(
        "w1",
        [
            "--- harness: start #1 of w1: python -m system worker --name w1\n",
            f"{_stamp(0.5)} INFO system.worker: bulletproof: worker ready name=w1\n",
            f"{_stamp(1.25)} ERROR system.tasks: Job 9: permanent failure\n",
            "Traceback (most recent call last):\n",
            "--- harness: start #2 of w1: python -m system worker --name w1\n",
            f"{_stamp(2.0)} WARNING system.db: pool: connection lost\n",
        ],
    )
    assert [ln.start for ln in lines] == [1, None, None, None, 2, None]
    assert abs((lines[0].t or 0) - (T + 0.5)) < 1e-3  # the marker takes the next line's time
    assert abs((lines[2].t or 0) - (T + 1.25)) < 1e-3
    assert lines[3].t == lines[2].t and lines[3].level == "ERROR"  # a traceback line
    assert lines[2].message == "ERROR system.tasks: Job 9: permanent failure"
    # the last start's problems only
    assert [ln.text for ln in last_problems(lines)] == [lines[5].text]


def test_job_mentions_match_the_job_and_no_other() -> None:
    nine = job_pattern(9)
    for text in ("Job 9: Fetching joke", "job #9 stalled", "job_id=9", "fetch_joke[9] started"):
        assert nine.search(text), text
    for text in ("Job 90: Fetching", "attempt 9/10", "Job 19: x", "ids [19]"):
        assert not nine.search(text), text


def test_one_pass_index_agrees_with_the_per_job_pattern() -> None:
    texts = ["Job 9: Fetching", "job #10 and job_id=9", "fetch_joke[11] ok", "Job 90", "x"]
    logs = {"w1": parse_log("w1", [f"{_stamp(i)} INFO s: {t}\n" for i, t in enumerate(texts)])}
    index = mentions(logs)
    assert sorted(index) == [9, 10, 11, 90]
    for job_id, found in index.items():
        assert found == lines_naming(logs, job_id)


def test_an_exit_on_an_error_is_told_from_a_clean_stop() -> None:
    died = parse_log("w1", [f"{_stamp(1)} ERROR system.worker: worker stopped; exiting\n"])
    clean = parse_log(
        "w1",
        [
            f"{_stamp(1)} WARNING system.db: connection lost\n",
            f"{_stamp(2)} INFO system.worker: worker w1 stopped\n",
        ],
    )
    assert ended_with_error(died) and not ended_with_error(clean)


def _doc(started: float, outcome: str, duration: float, latency: float | None) -> dict:
    recoveries = [{"latency": latency, "budget": 3.0}] if latency is not None else []
    return {
        "run": {"started_at": started, "command": "pytest scenarios"},
        "scenarios": [
            {
                "scenario": "worker_crash",
                "outcome": outcome,
                "duration": duration,
                "recoveries": recoveries,
                "accounting": {"lost": 0},
            },
            {"scenario": "x__defect_y", "outcome": "caught", "duration": 1.0, "recoveries": []},
        ],
    }


def test_trends_keep_one_line_per_run_and_flag_flaky_scenarios(tmp_path: Path) -> None:
    trends.record(tmp_path, _doc(1.0, "pass", 10.0, 2.0))
    trends.record(tmp_path, _doc(1.0, "pass", 11.0, 2.5))  # the same run rendered again
    assert len(trends.read(tmp_path / trends.FILE)) == 1
    trends.record(tmp_path, _doc(2.0, "fail", 12.0, None))
    lines = trends.record(tmp_path, _doc(3.0, "pass", 14.0, 3.0))
    (tmp_path / trends.FILE).write_text(
        (tmp_path / trends.FILE).read_text("utf-8") + "not json\n", "utf-8"
    )
    assert len(trends.read(tmp_path / trends.FILE)) == 3 == len(lines)
    summary = trends.summarise(lines)
    crash = summary["scenarios"]["worker_crash"]
    assert (crash["runs"], crash["passed"], crash["flaky"]) == (3, 2, True)
    assert crash["outcomes"] == ["pass", "fail", "pass"]
    assert crash["duration"] == {"first": 11.0, "last": 14.0, "median": 12.0, "max": 14.0}
    assert crash["max_recovery_latency"]["last"] == 3.0
    mutant = summary["scenarios"]["x__defect_y"]
    assert (mutant["passed"], mutant["flaky"]) == (3, False)  # caught counts as a pass
    assert trends.summarise(lines, last_n=1)["scenarios"]["worker_crash"]["runs"] == 1


def test_junit_skips_name_the_scenario_and_the_reason(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="scenarios.test_docker_smoke" name="test_docker_smoke">'
        '<skipped type="pytest.skip" message="Docker is not available: no engine">'
        "scenarios/test_docker_smoke.py:12: Docker is not available</skipped></testcase>"
        '<testcase classname="tests.x" name="test_y"><skipped message="no"/></testcase>'
        '<testcase classname="scenarios.test_worker_crash" name="test_worker_crash"/>'
        "</testsuite></testsuites>",
        "utf-8",
    )
    assert junit_skips(junit) == [
        {
            "scenario": "docker_smoke",
            "test": "scenarios/test_docker_smoke.py::test_docker_smoke",
            "reason": "Docker is not available: no engine",
        }
    ]
    assert junit_skips(tmp_path / "missing.xml") == []
    json.dumps(junit_skips(junit))  # plain JSON for results.json
