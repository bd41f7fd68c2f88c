"""Random, overlapping fault schedules over a real workload (``--random N``, ``--schedule F``,
``--soak-duration D``). A failing random run is shrunk (``--shrink-budget``) and both the
original and the minimal schedule are written to ``<reports>/schedules/`` with their replay
commands; a soak saves every run's schedule and does not shrink (replaying a failing one with
``--schedule F`` shrinks it). See :mod:`harness.randomized`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from harness.checker import Verdict
from harness.history import History
from harness.history.records import Observation
from harness.mutation import mutant_name
from harness.profiles import get_profile
from harness.randomized.checks import (
    INVARIANTS,
    check_schedule_executed,
    random_checks,
    random_settings,
)
from harness.randomized.executor import Executor
from harness.randomized.generator import generate
from harness.randomized.plugin import parse_duration
from harness.randomized.schedule import Schedule, schedule_replay_command
from harness.randomized.shrink import shrink
from harness.report.plugin import SCENARIO_PROPERTY
from harness.scenario import ScenarioFactory
from system.defects import Defect

TITLE = "Random overlapping faults over a real workload"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "index" in metafunc.fixturenames:
        config = metafunc.config
        count = 1 if config.getoption("--schedule") else max(1, config.getoption("--random"))
        metafunc.parametrize("index", range(count))


def run_schedule(
    scenario: ScenarioFactory,
    schedule: Schedule,
    name: str,
    *,
    judge: bool,
    profile: str,
    defect: Defect | None = None,
    trial: bool = False,
    replay: str | None = None,
) -> dict[str, Any]:
    """One run of ``schedule`` on a fresh stack (``profile``: the run's profile name, with
    :func:`random_settings` over it; ``replay``: the command the report shows, replaying the
    saved schedule); returns its result (verdicts included)."""
    broken: dict[str, Any] = (
        {} if defect is None else {"defect": defect, "expect_failing": INVARIANTS}
    )
    settings = random_settings(get_profile(profile))
    with scenario(
        name,
        title=TITLE,
        workers=schedule.workers,
        settings=settings,
        replay=replay,
        **broken,
    ) as sc:
        if trial:  # a shrinking step is evidence for the shrink, not a scenario of the report
            sc.result_path = sc.reports_dir / "shrink-trials" / sc.result_path.name
        try:
            execution = Executor(sc, schedule).run()
            sc.observe(
                "execution", {"faults_done": execution.faults_done, "errors": execution.errors}
            )

            def checks(h: History) -> list[Verdict]:
                return [
                    check_schedule_executed(
                        execution.errors, execution.faults_done, len(schedule.faults)
                    ),
                    *random_checks(
                        h,
                        sc.profile,
                        not_found=execution.not_found_ids,
                        failing=execution.failing_ids,
                        workers=[f"w{i}" for i in range(1, schedule.workers + 1)],
                        tolerance=sc.calibration.tolerance,
                    ),
                ]

            return sc.finish(checks, judge=judge)
        finally:
            sc.stack.close()  # a shrink runs many stacks: none outlives its trial


def _annotate(history: Path, minimal: dict[str, Any]) -> None:
    """Add the shrink's outcome to the original run's history (the report shows it there)."""
    record = Observation(name="minimal_schedule", value=minimal, t=time.time())
    with history.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record.to_dict()) + "\n")


def _failed(result: dict[str, Any]) -> set[str]:
    return {i["name"] for i in result.get("invariants", []) if i.get("status") == "fail"}


def _replay(path: Path, defect: Defect | None = None, profile: str = "fast") -> str:
    return schedule_replay_command(path, defect.value if defect else None, profile)


def _schedule_for(config: pytest.Config, seed: int, index: int) -> Schedule:
    path = config.getoption("--schedule")
    if path:
        return Schedule.load(Path(path))
    return generate(
        seed * 1000 + index,
        workers=config.getoption("--random-workers"),
        faults=config.getoption("--random-faults"),
    )


def test_random_run(
    scenario: ScenarioFactory,
    seed: int,
    index: int,
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
) -> None:
    schedule = _schedule_for(pytestconfig, seed, index)
    name = f"random_{schedule.seed}"
    schedules = Path(pytestconfig.getoption("--reports-dir")) / "schedules"
    original = schedule.save(schedules / f"{name}.json")
    raw_defect = pytestconfig.getoption("--random-defect")
    defect = Defect(raw_defect) if raw_defect else None
    # the report files this test's failure under its run's result, not under "random_run"
    # (user_properties directly: the record_property fixture warns under junit's xunit2)
    scenario_name = name if defect is None else mutant_name(name, defect)
    request.node.user_properties.append((SCENARIO_PROPERTY, scenario_name))
    profile = pytestconfig.getoption("--profile")
    replay = _replay(original, defect, profile)
    print(f"random run {name}: {len(schedule.faults)} faults, replay: {replay}")
    result = run_schedule(
        scenario, schedule, name, judge=False, profile=profile, defect=defect, replay=replay
    )
    executed = next(i for i in result["invariants"] if i["name"] == "schedule")
    if executed["status"] != "pass":
        pytest.fail(f"{name}: verdict UNKNOWN: {executed['summary']}", pytrace=False)
    failed = _failed(result)
    if defect is not None and not failed:
        pytest.fail(f"{name}: random schedule MISSED the defect {defect.value}", pytrace=False)
    if not failed:
        if result["verdict"] != "pass":  # nothing failed, something could not be judged
            reasons = "; ".join(
                f"{i['name']}: {i['summary']}"
                for i in result["invariants"]
                if i.get("status") != "pass"
            )
            # worded as the scripted scenarios word it: nox's --only-rerun runs it once more
            pytest.fail(f"{name}: verdict UNKNOWN: {reasons}", pytrace=False)
        return
    budget = parse_duration(pytestconfig.getoption("--shrink-budget"))
    lines = [f"{name} failed {', '.join(sorted(failed))}; replay: {replay}"]
    if budget > 0:
        trials = iter(range(1, 10_000))

        def fails(candidate: Schedule) -> bool:
            trial = run_schedule(
                scenario,
                candidate,
                f"{name}__shrink_{next(trials)}",
                judge=False,
                profile=pytestconfig.getoption("--profile"),
                defect=defect,
                trial=True,
            )
            return bool(_failed(trial) & failed)

        shrunk = shrink(schedule, fails, budget=budget)
        minimal = shrunk.minimal.save(schedules / f"{name}__minimal.json")
        summary = (
            f"{len(schedule.faults)} faults shrunk to {len(shrunk.minimal.faults)} in "
            f"{len(shrunk.trials)} trials ({shrunk.stopped}); still fails "
            f"{', '.join(sorted(failed))}"
        )
        _annotate(
            Path(pytestconfig.getoption("--reports-dir")) / str(result["history"]),
            {
                "schedule": shrunk.minimal.to_dict(),
                "replay": _replay(minimal, defect, profile),
                "summary": summary,
            },
        )
        lines.append(
            f"shrunk to {len(shrunk.minimal.faults)} faults, {shrunk.minimal.workload.jobs} jobs,"
            f" {shrunk.minimal.workers} workers in {len(shrunk.trials)} trials ({shrunk.stopped});"
            f" replay: {_replay(minimal, defect, profile)}"
        )
        lines += [
            f"  {f.start:6.2f}s +{f.duration:.2f}s  {f.fault} {f.target}"
            for f in shrunk.minimal.faults
        ]
    if defect is not None:  # caught: the run passes, the schedules are in the output
        print("\n".join(lines))
        return
    pytest.fail("\n".join(lines), pytrace=False)


def test_soak(scenario: ScenarioFactory, seed: int, pytestconfig: pytest.Config) -> None:
    """Random runs back to back until ``--soak-duration`` is spent; fails on any failed run
    (unknown runs are listed). Each run's schedule is saved; a failing one is not shrunk here
    (``pytest scenarios/test_random.py --schedule <file>`` replays and shrinks it)."""
    until = time.monotonic() + parse_duration(pytestconfig.getoption("--soak-duration"))
    workers = pytestconfig.getoption("--random-workers")
    runs: list[tuple[str, str, int]] = []
    index = 0
    while time.monotonic() < until:
        schedule = generate(
            seed * 1000 + index, workers=workers, faults=pytestconfig.getoption("--random-faults")
        )
        name = f"soak_{schedule.seed}"
        saved = schedule.save(
            Path(pytestconfig.getoption("--reports-dir")) / "schedules" / f"{name}.json"
        )
        profile = pytestconfig.getoption("--profile")
        result = run_schedule(
            scenario,
            schedule,
            name,
            judge=False,
            profile=profile,
            replay=_replay(saved, profile=profile),
        )
        runs.append((name, str(result["verdict"]), len(schedule.faults)))
        index += 1
    bad = [r for r in runs if r[1] == "fail"]
    unknown = [r for r in runs if r[1] not in ("pass", "fail")]
    summary = (
        f"soak: {len(runs)} runs, {sum(r[2] for r in runs)} faults, {len(bad)} failed, "
        f"{len(unknown)} unknown"
    )
    # an unknown run proves nothing either way (its reasons are in the report), so it is
    # listed, not counted as a failure
    print(summary + "".join(f"\n  unknown: {n}" for n, _, _ in unknown))
    assert not bad, summary + ": " + ", ".join(f"{n} {v}" for n, v, _ in bad)
