"""Aggregation rules: verdict merge, mutation outcomes, defaults, bad files, session filter."""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.report import claims, results
from harness.report.build import apply_failures, assemble
from harness.report.runinfo import merge_run


def _scenario(name: str, *statuses: str, **extra: object) -> dict:
    invs = [{"name": f"inv{i}", "status": s, "summary": ""} for i, s in enumerate(statuses)]
    return {"scenario": name, "invariants": invs, **extra}


def test_merge_any_fail_then_any_unknown_then_pass() -> None:
    assert results.merge_verdicts(["pass", "unknown", "fail"]) == "fail"
    assert results.merge_verdicts(["pass", "unknown"]) == "unknown"
    assert results.merge_verdicts(["pass", "pass"]) == "pass"
    assert results.merge_verdicts([]) == "unknown"  # nothing checked is not a pass


def test_mutation_outcomes_and_overall_verdict() -> None:
    doc = results.aggregate(
        {"seed": 7},
        [
            _scenario("worker_crash", "pass"),
            _scenario("worker_crash__defect_no-stall-recovery", "fail", "pass"),
        ],
    )
    by = {s["scenario"]: s for s in doc["scenarios"]}
    mutant = by["worker_crash__defect_no-stall-recovery"]
    assert (mutant["expected_verdict"], mutant["outcome"], mutant["defect"]) == (
        "fail",
        "caught",
        "no-stall-recovery",
    )
    assert doc["verdict"] == "pass"
    missed = results.aggregate({}, [_scenario("job_timeout__defect_no-timeout", "pass")])
    assert missed["scenarios"][0]["outcome"] == "missed" and missed["verdict"] == "fail"
    # failing, but not on the invariant the defect should break: not a catch
    elsewhere = results.aggregate(
        {}, [_scenario("idempotency__defect_p", "pass", "fail", expected_failing=["inv0"])]
    )
    assert elsewhere["scenarios"][0]["outcome"] == "missed"
    on_target = results.aggregate(
        {}, [_scenario("idempotency__defect_p", "fail", "pass", expected_failing=["inv0"])]
    )
    assert on_target["scenarios"][0]["outcome"] == "caught"
    contradicted = results.aggregate(
        {}, [_scenario("idempotency__defect_p", "fail", error="the checker MISSED the defect")]
    )
    assert contradicted["scenarios"][0]["outcome"] == "unknown"


def test_defaults_fill_every_documented_key() -> None:
    doc = results.aggregate(
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
    mutant = results.aggregate({"seed": 3}, [{"scenario": "idempotency__defect_plain-insert"}])
    assert mutant["scenarios"][0]["replay"] == (
        "pytest scenarios/test_idempotency.py -k idempotency__defect_plain-insert --seed 3"
    )


def test_an_error_turns_a_pass_into_unknown() -> None:
    doc = results.aggregate({}, [_scenario("x", "pass", error="teardown blew up")])
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
    doc = results.aggregate(
        {},
        [
            _scenario("idempotency", claims=["queueing_lock_periodic", "made_up_claim"]),
            {
                "scenario": "worker_crash__defect_x",
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
    assert out["no_duplicate_effects"]["status"] == "pass"
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
    doc, histories = assemble(tmp_path, run={"seed": 1})
    assert doc["verdict"] == "unknown" and doc["scenarios"] == [] and histories == {}
    assert all(c["status"] == "untested" for c in doc["claims"])
