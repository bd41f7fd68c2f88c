"""processes_alive and calibration: each fails (or says unknown) where it must."""

from __future__ import annotations

from harness.budgets import Calibration
from harness.checker import FAIL, PASS, UNKNOWN
from harness.checker.calibration import calibration_of, check_calibration
from harness.checker.processes import check_processes_alive
from harness.history.builder import HistoryBuilder


def _status(b: HistoryBuilder, process: str, *, running: bool, by_nemesis: bool = False) -> None:
    b.observe(
        "process_status",
        {
            "process": process,
            "running": running,
            "exit_code": None if running else 1,
            "stopped_by_nemesis": by_nemesis,
        },
        at=50.0,
    )


def test_a_worker_that_exited_by_itself_fails() -> None:
    b = HistoryBuilder()
    _status(b, "api", running=True)
    _status(b, "w1", running=False)
    verdict = check_processes_alive(b.build())
    assert verdict.status == FAIL
    assert verdict.evidence == ["w1 exited (code 1) though no fault stopped it for good"]


def test_a_worker_the_nemesis_stopped_for_good_is_not_a_failure() -> None:
    b = HistoryBuilder()
    _status(b, "w1", running=False, by_nemesis=True)
    _status(b, "w2", running=True)
    assert check_processes_alive(b.build()).status == PASS


def test_no_process_status_is_unknown() -> None:
    assert check_processes_alive(HistoryBuilder().build()).status == UNKNOWN


def _calibrated(pickup_max: float) -> HistoryBuilder:
    b = HistoryBuilder()
    cal = Calibration(samples=5, pickup_p50=pickup_max / 2, pickup_max=pickup_max)
    b.observe("calibration", cal.to_dict(), at=1.0)
    return b


def test_a_precise_calibration_passes_and_is_read_back() -> None:
    h = _calibrated(0.01).build()
    cal = calibration_of(h)
    assert cal is not None and cal.pickup_max == 0.01
    verdict = check_calibration(h, smallest=0.2, what="a 0.2s delay")
    assert verdict.status == PASS and verdict.figures["tolerance"] == cal.tolerance


def test_a_loaded_machine_makes_timing_verdicts_unknown_not_pass() -> None:
    verdict = check_calibration(_calibrated(0.1).build(), smallest=0.2, what="a 0.2s delay")
    assert verdict.status == UNKNOWN
    assert "too slow to judge a 0.2s delay" in verdict.summary


def test_no_calibration_is_unknown() -> None:
    verdict = check_calibration(HistoryBuilder().build(), smallest=1.0, what="x")
    assert verdict.status == UNKNOWN


def test_a_machine_freeze_longer_than_half_the_judged_quantity_is_unknown() -> None:
    b = _calibrated(0.01)
    b.observe("machine_stall", {"start": b.t0 + 5.0, "duration": 0.85}, at=5.0)
    verdict = check_calibration(b.build(), smallest=0.5, what="the job timeout")
    assert verdict.status == UNKNOWN
    assert verdict.summary.startswith("the machine froze for 0.850s at t+5.000s")
    short = _calibrated(0.01)
    short.observe("machine_stall", {"start": short.t0 + 5.0, "duration": 0.12}, at=5.0)
    assert check_calibration(short.build(), smallest=0.5, what="x").status == PASS
