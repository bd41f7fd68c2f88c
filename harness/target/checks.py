"""The checks every generic scenario runs, and the budgets they judge by.

Budgets come from the target's own statements (``recovery_budget``, ``shutdown_grace``, its
task's retry plan) and the calibration, never from the run judged.
"""

from __future__ import annotations

from typing import Any

from harness.checker import (
    Verdict,
    check_calibration,
    check_health_transitions,
    check_justified_reruns,
    check_processes_alive,
    check_queue_accounting,
)
from harness.checker.effect_rows import check_effect_once, check_effect_per_job
from harness.checker.verdict import FAIL, PASS, UNKNOWN
from harness.client import Client
from harness.history.records import History
from harness.target.expect import RetryPlan
from harness.target.run import TargetRun
from harness.vocabulary import FaultKind, Invariant


def plan_of(run: TargetRun) -> RetryPlan:
    """The task's retry plan when its upstream refuses connections (what the scenarios do),
    read as the workers see it (:func:`harness.target.expect.retry_plan_as_worker`)."""
    return run.retry_plan


def settle_budget(run: TargetRun, jobs: int) -> float:
    """How long the scenario's jobs may take to end after the last fault healed: the target's
    recovery budget, every retry wait of its plan, each job's run time, and the tolerance."""
    plan = plan_of(run)
    return (
        run.target.recovery_budget
        + sum(plan.delays)
        + jobs * run.target.job_seconds
        + run.calibration.tolerance
    )


def baseline(history: History, run: TargetRun, *, smallest: float, what: str) -> list[Verdict]:
    """Calibration fine enough for ``smallest`` (``what``), no job lost, every job succeeded,
    every re-run justified by a fault, every process alive that no fault stopped, and (with
    ``effect_sql``) each succeeded job's effect written exactly once."""
    verdicts = [
        check_calibration(history, smallest=smallest, what=what),
        check_queue_accounting(history, task_name=run.target.task, expected_status="succeeded"),
        check_justified_reruns(history),
        check_processes_alive(history),
    ]
    if run.target.effect_sql is not None:
        verdicts += [check_effect_once(history), check_effect_per_job(history)]
    return verdicts


def check_shutdown_within_grace(history: History, *, grace: float) -> Verdict:
    """Each SIGTERMed worker exited by itself within the orchestrator's grace period.

    The bug it catches: a worker that waits for running jobs without a bound (Procrastinate's
    default ``shutdown_graceful_timeout=None``), so the orchestrator SIGKILLs it mid-job."""
    faults = [f for f in history.faults if f.kind_ == FaultKind.SIGTERM]
    rows: list[dict[str, Any]] = []
    evidence: list[str] = []
    for fault in faults:
        code = fault.detail.get("exit_code")
        took = None if fault.end is None else round(fault.end - fault.start, 3)
        rows.append({"target": fault.target, "exit_code": code, "seconds": took})
        if code is None:
            evidence.append(
                f"{fault.target} was still running {grace:.1f}s after SIGTERM and had to be "
                "SIGKILLed"
            )
        elif code != 0:
            evidence.append(f"{fault.target} exited {code} after SIGTERM (expected 0)")
    figures: dict[str, Any] = {"grace": grace, "shutdowns": rows}
    name = Invariant.GRACEFUL_SHUTDOWN
    if evidence:
        return Verdict(name, FAIL, evidence[0], figures, evidence)
    if not rows:
        return Verdict(name, UNKNOWN, "no worker was sent SIGTERM", figures)
    slowest = max(r["seconds"] or 0.0 for r in rows)
    return Verdict(
        name,
        PASS,
        f"{len(rows)} workers exited 0 within {slowest:.2f}s (grace {grace:.1f}s)",
        figures,
    )


def upstream_proxies(run: TargetRun) -> list[str]:
    """The Toxiproxy proxies in front of the target's upstreams."""
    from harness.target.stack import upstream_proxy_name

    return [upstream_proxy_name(v) for v in run.target.upstreams]


def cannot_judge(name: str, reason: str) -> list[Verdict]:
    """One ``unknown`` verdict: the scenario cannot exercise its property on this target."""
    return [Verdict(name, UNKNOWN, reason, {})]


#: Seconds between /health samples of a target's worker.
HEALTH_INTERVAL = 0.1


def health_client(run: TargetRun, worker: str = "w1") -> Client | None:
    """A client sampling ``worker``'s own /health into the history, when the target declares
    one (``health_port_env``); None otherwise."""
    url = run.stack.health_urls.get(worker)
    if url is None:
        return None
    return Client(
        url,
        run.writer,
        health_timeout=run.target.health_budget,
        health_path=run.target.health_path,
    )


def health_detect_budget(run: TargetRun) -> float:
    """From a fault's start to the first non-200: the target's ``health_budget``, one
    sampling interval and the calibration's tolerance."""
    return run.target.health_budget + HEALTH_INTERVAL + run.calibration.tolerance


def check_target_health(history: History, run: TargetRun, kinds: list[str]) -> Verdict:
    """The worker's /health during the faults of ``kinds``: non-200 within the target's
    ``health_budget`` (+ one sampling interval and the calibration's tolerance), 200 within
    its ``recovery_budget`` (+ tolerance) after, no false alarm (the system's own rule,
    :func:`harness.checker.check_health_transitions`)."""
    return check_health_transitions(
        history,
        detect_budget=health_detect_budget(run),
        recover_budget=run.target.recovery_budget + run.calibration.tolerance,
        fault_kinds=kinds,
    )
