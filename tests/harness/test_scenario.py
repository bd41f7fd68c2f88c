"""A ScenarioRun's result file and verdict handling, on a stand-in stack (no services)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import probe
from harness.budgets import Calibration
from harness.calibration import calibrate_rounds
from harness.checker import FAIL, PASS, UNKNOWN, Verdict
from harness.checks import qualified
from harness.history.records import End, Submit
from harness.mutation import mutant_name, mutants
from harness.profiles import get_profile
from harness.scenario import ScenarioRun
from harness.vocabulary import SUBMITTED_TASK
from system.defects import Defect

CALIBRATION = Calibration(samples=5, pickup_p50=0.01, pickup_max=0.02, job_ids=(1, 2))


def _run(tmp_path: Path, name: str, **kwargs: Any) -> ScenarioRun:
    stack = SimpleNamespace(
        profile=get_profile("fast"),
        defects=[],
        toxiproxy=None,
        timings={"total": 1.0},
        api_url="http://127.0.0.1:9",
        postgres=SimpleNamespace(server_version=lambda: "15.0"),
        db_dsn="postgresql://stand-in",
        logs_dir=tmp_path / "logs" / name,
        workers=[],
        api=None,
    )
    return ScenarioRun(
        name=name,
        title="T",
        seed=42,
        stack=stack,  # type: ignore[arg-type]
        reports_dir=tmp_path,
        backend="local",
        claims=["c"],
        calibrator=lambda run: CALIBRATION,
        **kwargs,
    )


def test_a_passing_scenario_writes_its_result(tmp_path: Path) -> None:
    run = _run(tmp_path, "worker_crash")
    accounting = Verdict("queue_accounting", PASS, "ok", {"acknowledged": 3, "lost": 0})
    entry = run._write_result([accounting])
    run._judge([accounting])
    doc = json.loads((tmp_path / "results" / "worker_crash.json").read_text())
    assert doc["verdict"] == "pass" and doc["scenarios"][0] == entry
    assert entry["accounting"]["acknowledged"] == 3 and entry["accounting"]["lost"] == 0
    assert entry["calibration"]["tolerance"] == CALIBRATION.tolerance
    assert set(entry["phases"]) >= {"stack_start", "calibration"}
    assert entry["replay"] == "pytest scenarios/test_worker_crash.py --seed 42"
    assert entry["history"] == "histories/worker_crash.jsonl"
    assert (tmp_path / "histories" / "worker_crash.jsonl").exists()
    run.close(None)


@pytest.mark.parametrize("status", [FAIL, UNKNOWN])
def test_a_failed_or_unknown_verdict_fails_the_test_naming_the_evidence(
    tmp_path: Path, status: str
) -> None:
    run = _run(tmp_path, "worker_crash")
    bad = Verdict("recovery_latency", status, "1 of 1 recoveries failed", {}, ["job 7 never ran"])  # type: ignore[arg-type]
    with pytest.raises(pytest.fail.Exception) as failed:
        run._judge([bad])
    text = str(failed.value)
    assert "recovery_latency" in text and "job 7 never ran" in text and "--seed 42" in text
    run.close(None)


def test_a_mutation_passes_only_when_the_named_invariant_fails(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        mutant_name("idempotency", Defect.PLAIN_INSERT),
        defect=Defect.PLAIN_INSERT,
        expect_failing=["no_duplicate_effects"],
    )
    caught = Verdict(
        "no_duplicate_effects", FAIL, "2 duplicate rows", {}, ["joke a stored 3 times"]
    )
    run._judge([caught])  # caught: no exception
    other = Verdict("queue_accounting", FAIL, "lost", {}, [])
    with pytest.raises(pytest.fail.Exception, match="MISSED"):
        run._judge([other, Verdict("no_duplicate_effects", PASS, "fine")])
    entry = run._write_result([caught])
    assert entry["expected_verdict"] == "fail" and entry["defect"] == "plain-insert"
    assert entry["expected_failing"] == ["no_duplicate_effects"]
    run.close(None)


def test_a_broken_scenario_leaves_an_error_result(tmp_path: Path) -> None:
    run = _run(tmp_path, "network_cut")
    run.close(RuntimeError("proxy vanished\nmore"))
    (entry,) = json.loads((tmp_path / "results" / "network_cut.json").read_text())["scenarios"]
    assert entry["verdict"] == "unknown" and entry["error"] == "RuntimeError: proxy vanished"


def test_mutation_names_come_from_the_defect_enum_and_mark_the_tests() -> None:
    assert mutant_name("backoff_schedule", Defect.CONSTANT_BACKOFF) == (
        "backoff_schedule__defect_constant_backoff"
    )
    params = mutants(
        "backoff_schedule",
        [(Defect.CONSTANT_BACKOFF, ["retry_schedule"]), (Defect.EXTRA_RUN, ["attempt_count"])],
        subset=[Defect.EXTRA_RUN],
    )
    assert [p.id for p in params] == [
        "backoff_schedule__defect_constant_backoff",
        "backoff_schedule__defect_extra_run",
    ]
    marks = [{m.name for m in p.marks} for p in params]
    assert marks == [{"mutant"}, {"mutant", "chaos_subset"}]
    assert params[1].values == (Defect.EXTRA_RUN, ("attempt_count",))


def test_a_too_slow_calibration_turns_timing_failures_into_unknown_never_fail() -> None:
    slow = Verdict("calibration", UNKNOWN, "the machine is too slow to judge x")
    late = Verdict("recovery_latency", FAIL, "job 6 ran again after 3.2s, budget 2.9s")
    dup = Verdict("no_duplicate_effects", FAIL, "joke a stored 2 times")
    out = qualified([slow, late, dup])
    assert [v.status for v in out] == [UNKNOWN, UNKNOWN, FAIL]  # effects do not depend on time
    assert out[1].summary.startswith("not judged (the machine is too slow to judge x)")
    assert "would have failed: job 6 ran again" in out[1].summary
    precise = Verdict("calibration", PASS, "tolerance 0.03s")
    assert [v.status for v in qualified([precise, late])] == [PASS, FAIL]


def test_a_mutation_left_unjudged_says_so_rather_than_missed(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        mutant_name("backoff_schedule", Defect.UNCAPPED_BACKOFF),
        defect=Defect.UNCAPPED_BACKOFF,
        expect_failing=["retry_schedule"],
    )
    unjudged = Verdict("retry_schedule", UNKNOWN, "not judged (the machine is too slow)")
    with pytest.raises(pytest.fail.Exception, match="could NOT JUDGE the defect"):
        run._judge([unjudged])
    run.close(None)


def test_calibration_is_measured_again_after_a_hiccup_and_keeps_every_rounds_jobs() -> None:
    rounds = iter(
        [
            Calibration(samples=5, pickup_p50=0.01, pickup_max=0.09, job_ids=(1, 2)),
            Calibration(samples=5, pickup_p50=0.01, pickup_max=0.02, job_ids=(3, 4)),
            Calibration(samples=5, pickup_p50=0.01, pickup_max=0.01, job_ids=(5,)),
        ]
    )
    cal = calibrate_rounds(lambda: next(rounds), precise_enough=0.15)
    # the first round (tolerance 0.2 s) was too coarse; the second one is precise enough
    assert cal.pickup_max == 0.02 and cal.rounds == (0.09, 0.02)
    assert cal.job_ids == (1, 2, 3, 4)
    slow = iter([Calibration(samples=5, pickup_p50=0.1, pickup_max=m) for m in (0.3, 0.2, 0.4)])
    stays_slow = calibrate_rounds(lambda: next(slow), precise_enough=0.15)
    assert stays_slow.rounds == (0.3, 0.2, 0.4) and stays_slow.pickup_max == 0.2


def test_the_sentinel_records_a_freeze_of_this_process(tmp_path: Path) -> None:
    import sys
    import time as clock

    from harness.history.store import HistoryWriter
    from harness.sentinel import STALL, StallSentinel

    writer = HistoryWriter(tmp_path / "h.jsonl")
    interval = sys.getswitchinterval()
    with StallSentinel(writer) as sentinel:
        clock.sleep(0.05)  # let it run
        sys.setswitchinterval(2.0)  # this thread keeps the GIL: the sentinel is frozen out
        try:
            busy_until = clock.monotonic() + 3 * STALL
            while clock.monotonic() < busy_until:
                sum(range(1000))
        finally:
            sys.setswitchinterval(interval)
        clock.sleep(0.05)
    writer.close()
    stalls = writer.history.observations("machine_stall")
    assert stalls, "a 0.3 s freeze of this process was not recorded"
    assert max(o.value["duration"] for o in stalls) >= 2 * STALL
    assert sentinel.worst == pytest.approx(max(o.value["duration"] for o in stalls), abs=1e-3)


def test_timing_checks_judge_the_scenarios_jobs_not_the_calibrations() -> None:
    from harness.checks import judged_jobs
    from harness.history.builder import HistoryBuilder

    b = HistoryBuilder()
    for job_id in (1, 2, 3):
        b.submit(job_id)
    b.observe("calibration", CALIBRATION.to_dict(), at=0.5)  # job_ids (1, 2)
    assert judged_jobs(b.build()) == [3]


def test_settling_waits_for_the_job_a_lost_answer_created_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checker judges a job that a submission with a lost answer created (lost if still
    pending): settling must wait for it as for an acknowledged one (a soak run once ended
    while such a job was running its last retry, 20 s before the deadline: a false loss)."""
    run = _run(tmp_path, "settle")
    run.writer.write(Submit(op_id=1, t_invoke=1.0, t_complete=1.1, outcome="ok", job_id=1))
    run.writer.write(Submit(op_id=2, t_invoke=1.2, t_complete=3.2, outcome="unknown", job_id=None))
    polls: list[str] = []

    def created(dsn: str, task: str, acknowledged: list[int]) -> dict[int, str]:
        assert (task, list(acknowledged)) == (SUBMITTED_TASK, [1])
        polls.append("doing" if len(polls) < 3 else "succeeded")
        return {2: polls[-1]}

    monkeypatch.setattr(probe, "job_states", lambda dsn, ids: {1: ("succeeded", 1)})
    monkeypatch.setattr(probe, "unacknowledged_statuses", created)
    run.settle(timeout=10.0)
    assert polls == ["doing", "doing", "doing", "succeeded"]
    [end] = [r for r in run.writer.history.records if isinstance(r, End)]
    assert end.finished_at < end.deadline
    run.close(None)
