"""Schedules are data (round trip, checked), generated from the seed alone, and shrunk by
delta debugging to a small schedule that still fails (against a synthetic predicate)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.profiles import FAST
from harness.randomized.checks import random_settings
from harness.randomized.generator import MIXES, SEQUENTIAL, generate
from harness.randomized.schedule import (
    ALL_WORKERS,
    FaultStep,
    Schedule,
    ScheduleError,
    Workload,
    hit,
    schedule_replay_command,
)
from harness.randomized.shrink import MIN_DURATION, shrink


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert generate(7, faults=8) == generate(7, faults=8)
    assert generate(7, faults=8).faults != generate(8, faults=8).faults


@given(st.integers(0, 2**31), st.integers(1, 4), st.integers(0, 12))
@settings(max_examples=60, deadline=None)
def test_generated_schedules_never_overlap_on_one_target(seed: int, workers: int, n: int) -> None:
    schedule = generate(seed, workers=workers, faults=n)
    for a, b in itertools.combinations(schedule.faults, 2):
        if set(hit(a.target, workers)) & set(hit(b.target, workers)):  # ``workers`` holds each
            assert a.end <= b.start or b.end <= a.start
    assert all(0.5 <= f.duration <= 4.0 for f in schedule.faults)
    assert Schedule.from_dict(schedule.to_dict()) == schedule


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_each_mix_draws_only_its_own_faults_and_says_which_it_is(mix: str) -> None:
    drawn = {f.fault for seed in range(40) for f in generate(seed, mix=mix).faults}
    assert drawn == MIXES[mix]
    assert generate(1, mix=mix).meta == {"mix": mix}


def test_the_processes_mix_stops_one_process_at_a_time_and_sometimes_every_worker() -> None:
    schedules = [generate(seed, mix="processes") for seed in range(40)]
    assert "processes" in SEQUENTIAL
    for schedule in schedules:
        for a, b in itertools.pairwise(schedule.faults):
            assert a.end < b.start
    targets = {f.target for s in schedules for f in s.faults}
    assert {"w1", "w2", "api", ALL_WORKERS} <= targets


def test_the_seed_draws_every_mix_and_an_unknown_one_is_refused() -> None:
    assert {generate(seed).meta["mix"] for seed in range(30)} == set(MIXES)
    with pytest.raises(ValueError, match="unknown mix 'chaos'; use one of"):
        generate(1, mix="chaos")


def test_a_schedule_file_replays_exactly(tmp_path: Path) -> None:
    schedule = generate(3, workers=3, faults=5)
    assert Schedule.load(schedule.save(tmp_path / "s.json")) == schedule


def test_a_file_from_before_failing_jobs_replays_without_them() -> None:
    data = generate(3, workers=2, faults=2).to_dict()
    del data["workload"]["failing"]
    assert Schedule.from_dict(data).workload.failing == 0.0
    assert Workload().failing > 0


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (FaultStep(0, 1, "melt", "w1"), "unknown fault 'melt'"),
        (FaultStep(0, 1, "pg_kill", "w1"), "cannot hit 'w1'"),
        (FaultStep(0, 1, "kill", "w3"), "the schedule has 2 workers"),
        (FaultStep(0, 0, "kill", "w1"), "0 < duration"),
    ],
)
def test_a_wrong_fault_is_refused_with_what_is_wrong(step: FaultStep, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Schedule(seed=1, workers=2, workload=Workload(), faults=(step,))


def test_a_file_that_is_not_a_schedule_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ScheduleError, match=r"bad.json: not JSON \(line 1"):
        Schedule.load(path)
    path.write_text('{"workers": 2}')
    with pytest.raises(ScheduleError, match=r"bad\.json: not a schedule: KeyError"):
        Schedule.load(path)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fails_when(condition: object, clock: FakeClock, cost: float = 30.0):  # type: ignore[no-untyped-def]
    def fails(s: Schedule) -> bool:
        clock.now += cost  # each trial runs the real stack for about this long
        return bool(condition(s))  # type: ignore[operator]

    return fails


def test_shrinking_keeps_only_the_faults_that_matter_and_shortens_them() -> None:
    schedule = generate(11, workers=2, faults=10)
    culprit_a, culprit_b = schedule.faults[2], schedule.faults[7]

    def bug(s: Schedule) -> bool:  # the failure needs both faults, each at least 0.4 s
        keys = {(f.fault, f.target, f.start): f.duration for f in s.faults}
        return all(keys.get((c.fault, c.target, c.start), 0) >= 0.4 for c in (culprit_a, culprit_b))

    clock = FakeClock()
    result = shrink(schedule, _fails_when(bug, clock), budget=3600, clock=clock)
    assert {(f.fault, f.target) for f in result.minimal.faults} == {
        (culprit_a.fault, culprit_a.target),
        (culprit_b.fault, culprit_b.target),
    }
    assert all(MIN_DURATION <= f.duration < 0.8 for f in result.minimal.faults)
    assert result.minimal.workload.jobs < schedule.workload.jobs
    assert result.stopped == "done" and bug(result.minimal)


def test_shrinking_stops_at_its_budget_with_the_smallest_failure_seen() -> None:
    schedule = generate(5, faults=12)
    clock = FakeClock()
    result = shrink(
        schedule, _fails_when(lambda s: len(s.faults) >= 3, clock), budget=100, clock=clock
    )
    assert result.stopped.startswith("budget of 100s")
    assert len(result.trials) <= 4
    assert len(result.minimal.faults) >= 3 and len(result.minimal.faults) <= len(schedule.faults)


def _stop(start: float, duration: float, fault: str, target: str) -> FaultStep:
    return FaultStep(start=start, duration=duration, fault=fault, target=target)


def test_worker_stops_that_left_every_worker_down_merge_into_one_stop_of_every_worker() -> None:
    # the seed-20261207 health-ignores-heartbeat failure: w2 killed, w1 SIGTERMed while w2
    # was down; the outage lasted long enough only because database faults slowed w2's
    # restart, so no subset of the split faults failed again reliably (10 min: 4 faults left)
    kill, term = _stop(2.13, 2.91, "kill", "w2"), _stop(3.6, 3.91, "sigterm", "w1")
    others = [
        _stop(2.19, 2.26, "timeout", "dblink"),
        _stop(5.65, 1.29, "latency", "dblink"),
        _stop(7.27, 3.13, "latency", "dblink"),
        _stop(7.43, 1.61, "pg_restart", "postgres"),
    ]
    schedule = generate(1, workers=2, faults=0).with_faults([kill, term, *others])

    def bug(s: Schedule) -> bool:  # every worker down for 2 s: /health must have noticed
        every = any(f.target == ALL_WORKERS and f.duration >= 2.0 for f in s.faults)
        slowed = {kill, term, others[1]} <= set(s.faults)
        return every or slowed

    clock = FakeClock()
    result = shrink(schedule, _fails_when(bug, clock), budget=3600, clock=clock)
    [step] = result.minimal.faults
    assert (step.fault, step.target, step.start) == ("kill", ALL_WORKERS, 2.13)
    assert 2.0 <= step.duration < 5.38  # spanned 2.13 to 7.51, then halved while it failed
    assert result.trials[0] == (1, 100.0, True)  # the merged stop alone was the first trial


def test_a_merged_stop_is_tried_with_the_other_faults_when_alone_it_passes() -> None:
    kill, term = _stop(1.0, 2.0, "kill", "w1"), _stop(2.0, 2.0, "sigterm", "w2")
    cut = _stop(0.5, 1.0, "reset_peer", "dblink")
    schedule = generate(1, workers=2, faults=0).with_faults([kill, term, cut])

    def bug(s: Schedule) -> bool:  # needs every worker down and the link reset
        return cut in s.faults and any(f.target == ALL_WORKERS for f in s.faults)

    clock = FakeClock()
    result = shrink(schedule, _fails_when(bug, clock), budget=3600, clock=clock)
    assert [t[:2] for t in result.trials[:2]] == [(1, 100.0), (2, 100.0)]
    assert {(f.fault, f.target) for f in result.minimal.faults} == {
        ("kill", ALL_WORKERS),
        ("reset_peer", "dblink"),
    }


def test_worker_stops_that_never_overlap_are_not_merged() -> None:
    apart = [_stop(1.0, 1.0, "kill", "w1"), _stop(3.0, 1.0, "pause", "w2")]
    schedule = generate(1, workers=2, faults=0).with_faults(apart)
    tried: list[Schedule] = []
    clock = FakeClock()

    def fails(s: Schedule) -> bool:
        tried.append(s)
        clock.now += 30
        return len(s.faults) == 2

    shrink(schedule, fails, budget=3600, clock=clock)
    assert tried and not any(f.target == ALL_WORKERS for s in tried for f in s.faults)


def test_a_failure_that_needs_no_fault_shrinks_to_none() -> None:
    clock = FakeClock()
    result = shrink(
        generate(2, faults=4), _fails_when(lambda s: True, clock), budget=3600, clock=clock
    )
    assert result.minimal.faults == ()


def test_the_replay_command_names_the_schedule_file_and_the_runs_defect_and_profile() -> None:
    # the report used to show `pytest scenarios/test_random_<seed>.py -k ...`: no such file
    path = Path("reports/schedules/random_7000.json")
    assert schedule_replay_command(path) == (
        "pytest scenarios/test_random.py --schedule reports/schedules/random_7000.json"
    )
    assert schedule_replay_command(path, "no-timeout", "production").endswith(
        "random_7000.json --random-defect no-timeout --profile production"
    )


def test_random_runs_leave_a_sigterm_room_to_show_a_worker_that_waits() -> None:
    settings = random_settings(FAST)
    # a stuck run ends by its timeout: a SIGTERM in its first two thirds must abort it
    assert settings["worker_timeout"] == 0.5 == FAST.job_timeout / 3
    assert settings["retry_max_delay"] == 4 * FAST.retry_base_delay
    FAST.replace(**settings)  # a valid profile
