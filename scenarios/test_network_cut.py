"""Network cut to the joke API: every kind of fault, healed while retries remain, then never.

Phases, one after the other, each with its own jobs submitted while the fault is on:
proxy down (connection refused), reset_peer (RST), blackhole (Toxiproxy ``timeout``),
latency beyond the HTTP read timeout, fake-API 503 and 429 bursts. Each fault is healed once
every job of the phase has failed one or two runs (fewer than ``MAX_RETRIES``): those jobs
must all succeed. Last phase: the proxy stays down; its jobs must fail explicitly after exactly
``MAX_RETRIES`` runs. Retries follow the backoff schedule throughout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from harness import budgets
from harness.checker import Verdict, check_attempt_count, check_retry_schedule
from harness.checks import baseline, judged_jobs
from harness.history import History
from harness.nemesis import Nemesis
from harness.profiles import get_profile
from harness.scenario import ScenarioFactory, ScenarioRun
from system.jokes import HTTP_TIMEOUT

TITLE = "Network cut to the joke API (refused, reset, blackhole, latency, 5xx, 429)"
CLAIMS = ["no_loss_network", "backoff_formula", "max_attempts", "complete_or_fail"]

FaultFactory = Callable[[Nemesis], contextlib.AbstractContextManager[Any]]


def _latency_ms() -> int:
    """Downstream latency longer than the SUT's HTTP read timeout (and so any job timeout
    below it): the run ends by a timeout, whichever comes first."""
    return int(((HTTP_TIMEOUT.read or 10.0) + 1.0) * 1000)


#: (phase, fault, failed runs before healing): one failed run proves the fault hit; faults
#: that fail fast get a second one, so that a backoff wait passes under the fault.
PHASES: list[tuple[str, FaultFactory, int]] = [
    ("proxy_down", lambda n: n.proxy_down("jokeapi"), 2),
    (
        "reset_peer",
        lambda n: n.toxic("jokeapi", "reset_peer", {"timeout": 0}, kind="reset_peer"),
        2,
    ),
    ("http_503", lambda n: n.api_fault("status", status=503), 1),
    ("http_429", lambda n: n.api_fault("status", status=429, retry_after=1), 1),
    ("blackhole", lambda n: n.toxic("jokeapi", "timeout", {"timeout": 0}, kind="timeout"), 1),
    ("latency", lambda n: n.toxic("jokeapi", "latency", {"latency": _latency_ms()}), 1),
]


def _run_phase(sc: ScenarioRun, fault: FaultFactory, failures: int, jobs: int) -> list[int]:
    """Submit ``jobs`` jobs under ``fault``; keep it until each has failed ``failures`` runs
    (or, with ``failures`` = MAX_RETRIES, has failed for good); then wait for them to end."""
    p = sc.profile
    budget = budgets.settle(p, sc.calibration)
    with fault(sc.nemesis):
        ids = [s.job_id for s in sc.client.submit_many(jobs) if s.job_id is not None]
        if failures >= p.max_retries:
            sc.hold_until(
                lambda: all(st == "failed" for st, _ in sc.jobs(ids).values()),
                timeout=budget,
                what="the jobs to fail for good",
                strict=False,
            )
        else:
            sc.hold_until(
                lambda: all(st == "todo" and n >= failures for st, n in sc.jobs(ids).values()),
                timeout=budget,
                what=f"every job of the phase to fail {failures} runs",
            )
    sc.wait_statuses(
        lambda st: len(st) == len(ids) and all(s in ("succeeded", "failed") for s in st.values()),
        timeout=budget,
        what="the phase's jobs to end",
        ids=ids,
    )
    return ids


def compressed(profile_name: str) -> dict[str, float]:
    """This scenario's settings: the job timeout at a third of the profile's (faults that end
    a run only by a timeout cost one each). The backoff keeps the profile's schedule (the
    backoff_schedule scenario judges its growth in detail; here every retry is judged too)."""
    p = get_profile(profile_name)
    return {"job_timeout": p.job_timeout / 3}


def test_network_cut(scenario: ScenarioFactory, pytestconfig: pytest.Config) -> None:
    settings = compressed(pytestconfig.getoption("--profile"))
    with scenario("network_cut", title=TITLE, claims=CLAIMS, settings=settings) as sc:
        p = sc.profile
        expected: dict[int, str] = {}
        for name, fault, failures in PHASES:
            for job_id in _run_phase(sc, fault, failures, jobs=2 if failures > 1 else 1):
                expected[job_id] = "succeeded"
            sc.observe("phase_done", name)
        never = _run_phase(sc, PHASES[0][1], p.max_retries, jobs=2)
        expected.update({job_id: "failed" for job_id in never})

        def checks(h: History) -> list[Verdict]:
            return [
                *baseline(
                    h,
                    expected_status=expected,
                    # retry delays are judged (or left unknown) by retry_schedule itself
                    smallest=p.job_timeout,
                    what="the job timeout",
                ),
                check_retry_schedule(
                    h,
                    jobs=judged_jobs(h),
                    base_delay=p.retry_base_delay,
                    max_delay=p.retry_max_delay,
                    tolerance=sc.calibration.tolerance,
                ),
                check_attempt_count(h, max_attempts=p.max_retries, require_failures=True),
            ]

        sc.finish(checks)
