"""Aggregation rules: verdict merge, mutation outcomes, defaults, bad files, session filter."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.report import claims, results
from harness.report.build import apply_failures, assemble
from harness.report.runinfo import merge_run


def _scenario(name: str, *statuses: str, **extra: object) -> dict:
    invs = [{"name": f"inv{i}", "status": s, "summary": ""} for i, s in enumerate(statuses)]
    return {"scenario": name, "invariants": invs, **extra}


def test_verdicts_merge_with_the_checker_and_nothing_checked_is_unknown() -> None:
    assert results.verdict_of(["pass", "unknown", "fail"]) == "fail"
    assert results.verdict_of(["pass", "unknown"]) == "unknown"
    assert results.verdict_of(["pass", "pass"]) == "pass"
    assert results.verdict_of([]) == "unknown"  # nothing checked is not a pass
    # a recorded verdict never overrides the invariants it claims to merge
    doc = results.result_document({}, [_scenario("x", "fail", verdict="pass")])
    assert doc["scenarios"][0]["verdict"] == "fail" and doc["verdict"] == "fail"
    assert results.result_document({}, [])["verdict"] == "unknown"


def test_a_mutation_is_caught_only_on_one_of_its_expected_failing_invariants() -> None:
    def outcome(*statuses: str, **extra: object) -> dict:
        doc = results.result_document(
            {}, [_scenario("m", *statuses, defect="some-defect", **extra)]
        )
        return doc["scenarios"][0]

    caught = outcome("fail", "pass", expected_failing=["inv0"])
    assert (caught["expected_verdict"], caught["outcome"], caught["caught_by"]) == (
        "fail",
        "caught",
        ["inv0"],
    )
    assert caught["miss_reason"] is None
    elsewhere = outcome("pass", "fail", expected_failing=["inv0"])
    assert elsewhere["outcome"] == "missed"
    assert elsewhere["miss_reason"] == "failed only on inv1; expected inv0 to fail"
    unnamed = outcome("fail")  # a failure with no expected_failing is not a catch
    assert unnamed["outcome"] == "missed" and "names no invariant" in unnamed["miss_reason"]
    passed = outcome("pass", expected_failing=["inv0"])
    assert passed["miss_reason"] == "every invariant passed; expected inv0 to fail"
    contradicted = outcome("fail", expected_failing=["inv0"], error="MISSED the defect")
    assert contradicted["outcome"] == "unknown"


def test_mutation_score_and_totals_in_the_document() -> None:
    doc = results.result_document(
        {"seed": 7},
        [
            _scenario("worker_crash", "pass", accounting={"acknowledged": 4, "lost": 0}),
            _scenario(
                "network_cut",
                "fail",
                accounting={"acknowledged": 6, "lost": 1, "duplicated_executions": 2},
            ),
            _scenario("a__defect_x", "fail", defect="x", expected_failing=["inv0"]),
            _scenario("b__defect_y", "pass", defect="y", expected_failing=["inv0"]),
        ],
    )
    assert doc["schema_version"] == 2
    assert doc["mutations"]["caught"] == 1 and doc["mutations"]["total"] == 2
    assert [m["scenario"] for m in doc["mutations"]["missed"]] == ["b__defect_y"]
    assert doc["totals"]["acknowledged"] == 10 and doc["totals"]["lost"] == 1
    assert doc["totals"]["lost_by_scenario"] == {"network_cut": 1}
    assert doc["totals"]["duplicated_executions_by_scenario"] == {"network_cut": 2}
    assert doc["verdict"] == "fail"


def test_scenario_entry_builds_from_checker_verdicts(tmp_path: Path) -> None:
    from harness.checker import Verdict

    acc = Verdict("queue_accounting", "pass", "ok", {"acknowledged": 3, "lost": 0})
    retry = Verdict("retry_schedule", "fail", "late", {"retry_delays": [{"job_id": 1}]})
    entry = results.scenario_entry(
        name="network_cut__defect_constant-backoff",
        title="Network cut",
        seed=5,
        verdicts=[acc, retry],
        defect="constant-backoff",
        expected_failing=["retry_schedule"],
        duration=3.25,
        backend="docker",
        profile="production",
        claims=["backoff_formula"],
        phases={"stack_start": 1.5, "check": 0.01},
        calibration={"samples": 5, "pickup_p50": 0.02},
        logs={"w1": "logs/network_cut__defect_constant-backoff/w1.log"},
    )
    assert entry["verdict"] == "fail" and entry["outcome"] == "caught"
    assert entry["expected_verdict"] == "fail" and entry["defect"] == "constant-backoff"
    assert entry["accounting"]["acknowledged"] == 3 and entry["accounting"]["lost_ids"] == []
    assert entry["retry_delays"] == [{"job_id": 1}] and entry["recoveries"] == []
    assert entry["phases"]["stack_start"] == 1.5 and entry["phases"]["faults"] is None
    assert entry["calibration"] == {"samples": 5, "pickup_p50": 0.02}
    assert entry["logs"] == {"w1": "logs/network_cut__defect_constant-backoff/w1.log"}
    assert entry["replay"] == (
        "pytest scenarios/test_network_cut.py -k network_cut__defect_constant-backoff "
        "--seed 5 --backend docker --profile production"
    )
    broken = results.scenario_entry(
        name="database_drop", title="t", seed=1, verdicts=[], error="WaitTimeout: no worker"
    )
    assert broken["verdict"] == "unknown" and broken["error"] == "WaitTimeout: no worker"
    # the entry written to a file reads back unchanged
    doc = results.result_document({"seed": 5}, [entry, broken])
    assert doc["scenarios"][1] == entry
    path = results.write_result(tmp_path / "results" / "network_cut.json", doc)
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["network_cut.json"]  # no temp left
    run, raw = results.load_results(path.parent)
    assert results.result_document(run[0], raw) == json.loads(json.dumps(doc))
    try:
        results.scenario_entry(name="x", title="x", seed=1, verdicts=[], expected_verdict="ok")
    except ValueError as exc:
        assert "expected_verdict must be 'pass' or 'fail'" in str(exc)
    else:
        raise AssertionError("a bad expected_verdict must be refused")


def test_run_block_marks_a_dirty_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f").write_text("a", "utf-8")
    git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    monkeypatch.chdir(tmp_path)
    clean = results.run_block(seed=1, backend="local", profile="fast", started_at=1.0)
    (tmp_path / "f").write_text("b", "utf-8")
    dirty = results.run_block(seed=1, backend="local", profile="fast", started_at=1.0)
    assert clean["git_commit"] and not clean["git_commit"].endswith("+dirty")
    assert dirty["git_commit"] == f"{clean['git_commit']}+dirty"
    assert clean["versions"]["python"] and clean["finished_at"] >= 1.0


def test_defaults_fill_every_documented_key() -> None:
    doc = results.result_document(
        {"seed": 11, "backend": "docker", "profile": "production"},
        [{"scenario": "network_cut", "invariants": [{"status": "weird"}]}],
    )
    s = doc["scenarios"][0]
    assert s["verdict"] == "unknown" and s["invariants"][0]["status"] == "unknown"
    assert s["history"] == "histories/network_cut.jsonl"
    assert s["replay"] == (
        "pytest scenarios/test_network_cut.py --seed 11 --backend docker --profile production"
    )
    assert s["accounting"]["lost_ids"] == [] and s["accounting"]["lost"] is None
    assert s["logs"] == {} and s["calibration"] is None and s["expected_verdict"] == "pass"


def test_an_error_turns_a_pass_into_unknown() -> None:
    doc = results.result_document({}, [_scenario("x", "pass", error="teardown blew up")])
    assert doc["scenarios"][0]["verdict"] == "unknown"


def test_unreadable_results_become_error_entries(tmp_path: Path) -> None:
    d = tmp_path / "results"
    d.mkdir()
    (d / "broken.json").write_text("{not json", "utf-8")
    (d / "list.json").write_text("[1, 2]", "utf-8")
    (d / "bare.json").write_text(json.dumps(_scenario("bare", "pass")), "utf-8")
    runs, entries = results.load_results(d)
    by = {e["scenario"]: e for e in entries}
    assert set(by) == {"bare", "broken", "list"}
    assert "broken.json: unreadable results file" in by["broken"]["error"]
    assert by["list"]["error"] == "list.json: expected a JSON object"
    assert runs == []


def test_since_keeps_only_this_sessions_results(tmp_path: Path) -> None:
    d = tmp_path / "results"
    d.mkdir()
    old, new = d / "old.json", d / "new.json"
    old.write_text(json.dumps(_scenario("old", "fail")), "utf-8")
    new.write_text(json.dumps(_scenario("new", "pass")), "utf-8")
    os.utime(old, (1_000_000, 1_000_000))
    _, entries = results.load_results(d, since=2_000_000)
    assert [e["scenario"] for e in entries] == ["new"]


def test_pytest_failures_fold_into_results() -> None:
    raw = [
        _scenario("worker_crash", "pass", verdict="pass"),
        _scenario("worker_crash__defect_x", "pass", verdict="pass", expected_verdict="fail"),
        _scenario("network_cut", "pass", verdict="pass"),
    ]
    out = apply_failures(
        raw,
        {
            "worker_crash__defect_x": ("worker_crash", "MISSED the defect"),
            "database_drop": ("database_drop", "fixture <error>"),
            "cut_variant": ("network_cut", "assert 1 == 2"),
        },
    )
    by = {r["scenario"]: r for r in out}
    assert by["database_drop"] == {
        "scenario": "database_drop",
        "verdict": "unknown",
        "error": "fixture <error>",
    }
    # a mutation whose verdict passed is already "missed"; the sibling scenario is untouched
    assert "error" not in by["worker_crash__defect_x"] and "error" not in by["worker_crash"]
    caught_but_failed = apply_failures(
        [_scenario("idempotency__defect_p", "fail", verdict="fail", expected_verdict="fail")],
        {"idempotency__defect_p": ("idempotency", "MISSED: expected no_duplicate_effects")},
    )
    assert caught_but_failed[0]["error"] == (
        "the mutation's test failed: MISSED: expected no_duplicate_effects"
    )
    # a test not named after its scenario falls back to the module's scenario
    assert "assert 1 == 2" in by["network_cut"]["error"]


def test_recorded_versions_win_and_disagreements_are_kept() -> None:
    run = merge_run(
        {"seed": 1, "versions": {"python": "3.11.7", "postgresql": "15.18"}},
        [
            {"versions": {"postgresql": "16.2", "toxiproxy": "embedded"}, "started_at": 5.0},
            {"versions": {"postgresql": "15.18", "toxiproxy": "embedded"}, "started_at": 3.0},
        ],
    )
    assert run["versions"] == {
        "python": "3.11.7",
        "procrastinate": None,
        "postgresql": "16.2 / 15.18",
        "toxiproxy": "embedded",
    }
    assert run["started_at"] == 3.0 and run["seed"] == 1


def test_claims_untested_without_evidence_and_declared_keys_count(tmp_path: Path) -> None:
    doc = results.result_document(
        {},
        [
            _scenario("idempotency", claims=["queueing_lock_periodic", "made_up_claim"]),
            {
                "scenario": "worker_crash__defect_x",
                "defect": "x",
                "invariants": [{"name": "queue_accounting", "status": "fail", "summary": "lost 3"}],
            },
        ],
    )
    doc["scenarios"][0]["invariants"] = [
        {
            "name": "no_duplicate_effects",
            "status": "pass",
            "summary": "",
            "figures": {},
            "evidence": [],
        }
    ]
    doc["scenarios"][0]["verdict"] = "pass"
    out = {c["key"]: c for c in claims.evaluate(doc["scenarios"])}
    assert out["no_loss_worker_crash"]["status"] == "untested"  # the mutation is no evidence
    assert out["queueing_lock_periodic"]["status"] == "pass"  # declared by the scenario
    # proven only when every scenario it names ran: worker_crash did not
    assert out["no_duplicate_effects"]["status"] == "unknown"
    assert out["no_duplicate_effects"]["missing"] == ["worker_crash"]
    assert out["made_up_claim"]["note"].startswith("claim key 'made_up_claim' is not in")
    assert out["made_up_claim"]["evidence"] == [
        {
            "scenario": "idempotency",
            "invariant": None,
            "verdict": "pass",
            "figure": "no_duplicate_effects pass",
        }
    ]
    # a scenario declaring a claim tested elsewhere adds one piece of evidence, not duplicates
    assert [e["scenario"] for e in out["queueing_lock_periodic"]["evidence"]] == ["idempotency"]
    assert out["thundering_herd"]["status"] == "untested"


def test_assemble_without_results_is_unknown(tmp_path: Path) -> None:
    doc, inputs = assemble(tmp_path, run={"seed": 1})
    assert doc["verdict"] == "unknown" and doc["scenarios"] == [] and inputs.histories == {}
    assert all(c["status"] == "untested" for c in doc["claims"])


def _stall(recoveries: list[dict]) -> dict:
    doc = results.result_document(
        {},
        [
            {
                "scenario": "stalled_recovery",
                "invariants": [{"name": "recovery_latency", "status": "pass", "summary": "ok"}],
                "recoveries": recoveries,
            }
        ],
    )
    return next(
        c for c in claims.evaluate(doc["scenarios"]) if c["key"] == "stall_detection_latency"
    )


def test_stall_detection_is_proven_only_against_the_seeds_bound() -> None:
    budget_only = _stall([{"what": "kill", "job_id": 1, "latency": 2.0, "budget": 3.0}])
    assert budget_only["status"] == "unknown"
    assert "not the property claimed" in budget_only["evidence"][0]["figure"]
    within = _stall([{"job_id": 1, "latency": 2.0, "budget": 3.0, "seed_bound": 600.0}])
    assert within["status"] == "pass" and "seed's bound 600 s" in within["evidence"][0]["figure"]
    beyond = _stall([{"job_id": 1, "latency": 700.0, "budget": 900.0, "seed_bound": 600.0}])
    assert beyond["status"] == "fail"


def test_duplicated_executions_refute_the_claim_wherever_they_happen() -> None:
    doc = results.result_document(
        {},
        [
            _scenario("health_monitoring", "pass", accounting={"duplicated_executions": 3}),
            _scenario("idempotency", "pass", accounting={"duplicated_executions": 0}),
        ],
    )
    out = {c["key"]: c for c in claims.evaluate(doc["scenarios"])}
    dup = out["no_duplicate_execution"]
    assert dup["status"] == "fail"
    assert dup["figure"] == "refuted as stated: 3 duplicated executions in this run"
    assert [(e["scenario"], e["figure"]) for e in dup["evidence"]] == [
        ("health_monitoring", "3 duplicated executions")
    ]
    none = results.result_document({}, [_scenario("idempotency", "pass", accounting={})])
    quiet = next(
        c for c in claims.evaluate(none["scenarios"]) if c["key"] == "no_duplicate_execution"
    )
    assert quiet["status"] == "unknown" and "at-least-once by design" in quiet["figure"]
    nothing = next(c for c in claims.evaluate([]) if c["key"] == "no_duplicate_execution")
    assert nothing["status"] == "untested"


def test_a_targets_known_failures_are_its_apps_verdicts_not_planted_defects() -> None:
    # `--target` scenarios declare what the user's app breaks (known_failures): no defect
    known = {"expected_verdict": "fail", "expected_failing": ["inv0"]}
    doc = results.result_document(
        {},
        [
            _scenario(
                "app__worker_crash", "fail", accounting={"acknowledged": 8, "lost": 1}, **known
            ),
            _scenario("app__backoff", "pass", accounting={"acknowledged": 5, "lost": 0}, **known),
            _scenario("app__upstream_cut", "pass", accounting={"acknowledged": 6, "lost": 0}),
        ],
    )
    assert doc["known_failures"] == {"still_failing": 1, "total": 2, "fixed": ["app__backoff"]}
    assert doc["mutations"] == {"caught": 0, "total": 0, "missed": []}
    # the app's losses are real losses of the run
    assert doc["totals"]["lost"] == 1 and doc["totals"]["acknowledged"] == 19
    assert doc["totals"]["lost_by_scenario"] == {"app__worker_crash": 1}
    assert doc["verdict"] == "fail"  # a declared failure that no longer fails is noticed
    planted = results.result_document({}, [_scenario("x__defect_y", "fail", defect="y", **known)])
    assert planted["known_failures"]["total"] == 0 and planted["mutations"]["total"] == 1


def test_a_failed_target_scenario_test_marks_its_result_not_a_new_entry() -> None:
    # harness/target/scenarios/test_worker_crash.py writes plain_app__worker_crash
    raw = [{"scenario": "plain_app__worker_crash", "verdict": "pass"}]
    out = apply_failures(raw, {"worker_crash": ("worker_crash", "AssertionError: late")})
    assert [r["scenario"] for r in out] == ["plain_app__worker_crash"]
    assert "AssertionError: late" in out[0]["error"]


def test_a_failed_mutant_test_is_told_by_its_parameter_not_its_function() -> None:
    # before: test_database_drop_mutant[...] became "database_drop_mutant", matched the module's
    # clean result and turned the clean, passing database_drop unknown
    from harness.report.plugin import scenario_test

    nodeid = (
        "scenarios/test_database_drop.py::test_database_drop_mutant"
        "[database_drop__defect_supervisor_gives_up]"
    )
    assert scenario_test(nodeid) == ("database_drop", "database_drop__defect_supervisor_gives_up")
    assert scenario_test("scenarios/test_worker_crash.py::test_worker_crash") == (
        "worker_crash",
        "worker_crash",
    )
    raw = [
        {"scenario": "database_drop", "verdict": "pass"},
        {"scenario": "database_drop__defect_supervisor_gives_up", "verdict": "pass"},
    ]
    _, stem = scenario_test(nodeid) or ("", "")
    out = apply_failures(raw, {stem: ("database_drop", "MISSED the defect")})
    by = {r["scenario"]: r for r in out}
    assert "error" not in by["database_drop"]
    assert "MISSED" in by["database_drop__defect_supervisor_gives_up"]["error"]


def test_a_random_runs_failure_is_filed_under_its_result_not_the_test_name() -> None:
    # before: a failed random run added a stray "random_run" entry (verdict unknown) beside
    # its own result random_<seed>
    from harness.report.plugin import SCENARIO_PROPERTY, ReportPlugin

    plugin = ReportPlugin(pytest.Config.__new__(pytest.Config))
    report = pytest.TestReport(
        "scenarios/test_random.py::test_random_run[8]",
        ("scenarios/test_random.py", 1, "test_random_run[8]"),
        {},
        "failed",
        "random_20261210008 failed job_timeout",
        "call",
        user_properties=[(SCENARIO_PROPERTY, "random_20261210008")],
    )
    plugin.pytest_runtest_logreport(report)
    assert list(plugin.failures) == ["random_20261210008"]
    raw = [{"scenario": "random_20261210008", "verdict": "fail"}]
    assert [r["scenario"] for r in apply_failures(raw, plugin.failures)] == ["random_20261210008"]
