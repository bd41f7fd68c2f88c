"""Seeded scenario histories (built with harness.history's builder), checked by the real
checker and written as ``results/<scenario>.json`` + ``histories/<scenario>.jsonl``, exactly as
the scenarios do (docs/DESIGN.md). The report tests and the sample report render from these.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from harness import checker
from harness.history.builder import HistoryBuilder
from harness.history.records import History, Submit
from harness.report import results

Json = dict[str, Any]
HOSTILE_JOKE = "<script>alert(1)</script> Chuck Norris counts to infinity & beyond"
HOSTILE_ERROR = 'WaitTimeout: <img src=x onerror="alert(2)"> worker never said ready & died'
T0 = 1_790_000_000.0
SEED = 4242
BASE, MAX_DELAY, TOL = 0.2, 2.0, 0.09  # tolerance below half the base delay


def _run_block(started: float, finished: float) -> Json:
    return {
        "seed": SEED,
        "backend": "local",
        "profile": "fast",
        "started_at": started,
        "finished_at": finished,
        "git_commit": None,
        "versions": {
            "python": "3.11.7",
            "procrastinate": "3.10.0",
            "postgresql": "15.18",
            "toxiproxy": "embedded",
        },
        "command": "pytest scenarios",
    }


def _write(
    reports: Path,
    name: str,
    history: History,
    verdicts: list[checker.Verdict],
    *,
    title: str,
    claims: list[str],
    extra: Json | None = None,
) -> None:
    (reports / "histories").mkdir(parents=True, exist_ok=True)
    (reports / "results").mkdir(parents=True, exist_ok=True)
    with (reports / "histories" / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
        for record in history:
            fh.write(json.dumps(record.to_dict(), default=str) + "\n")
    extra = dict(extra or {})
    entry = results.scenario_entry(
        name=name,
        title=title,
        seed=SEED,
        verdicts=verdicts,
        duration=9.5,
        claims=claims,
        **extra,
    )
    doc = results.result_document(_run_block(T0, T0 + 10), [entry])
    (reports / "results" / f"{name}.json").write_text(json.dumps(doc, indent=1), "utf-8")


HOSTILE_LOG = "<b>bold</b> & <script>x()</script>"
#: Synthetic process logs in the SUT's format (system/__main__.py): (seconds after T0,
#: level, logger, message); ``None`` as the time writes the harness's start marker.
NETWORK_CUT_LOGS: dict[str, list[tuple[float | None, str, str, str]]] = {
    "w1": [
        (None, "", "", "--- harness: start #1 of w1: python -m system worker --name w1"),
        (0.01, "INFO", "system.worker", "bulletproof: worker ready name=w1"),
        (0.66, "INFO", "system.tasks", "Job 206: Fetching joke (attempt 1/5)"),
        (0.76, "INFO", "system.tasks", "Job 207: Fetching joke (attempt 1/5)"),
        (1.25, "WARNING", "system.tasks", "Job 206: joke API unreachable: connection reset"),
        (1.3, "WARNING", "system.db", f"pool: connection lost {HOSTILE_LOG}"),
        (1.31, "ERROR", "system.worker", "worker stopped (db); DEFECT no-db-supervision: exiting"),
    ],
    "api": [
        (None, "", "", "--- harness: start #1 of api: python -m system api --no-worker"),
        (0.02, "INFO", "system.api", "listening on 127.0.0.1:8000"),
        (0.61, "INFO", "system.api", "deferred job 206"),
        (3.9, "INFO", "system.api", "SIGTERM: stopping the API"),
    ],
}


def write_logs(
    reports: Path, scenario: str, logs: dict[str, list[tuple[float | None, str, str, str]]]
) -> dict[str, str]:
    """Write process logs under ``logs/<scenario>/`` and return the entry's ``logs`` map."""
    import datetime as dt

    out: dict[str, str] = {}
    for name, lines in logs.items():
        rel = f"logs/{scenario}/{name}.log"
        text = []
        for at, level, logger, message in lines:
            if at is None:
                text.append(message)
                continue
            stamp = dt.datetime.fromtimestamp(T0 + at).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
            text.append(f"{stamp} {level} {logger}: {message}")
        (reports / rel).parent.mkdir(parents=True, exist_ok=True)
        (reports / rel).write_text("\n".join(text) + "\n", "utf-8")
        out[name] = rel
    return out


def worker_crash(reports: Path, rng: random.Random) -> None:
    """Passing: a SIGKILL with two jobs in flight; both recovered and re-run (duplicates)."""
    b = HistoryBuilder(T0, "worker_crash")
    for i in range(12):
        job_id = 100 + i
        at = 0.15 * i
        b.submit(job_id, at)
        start = at + 0.05 + rng.random() * 0.1
        if job_id in (106, 107):  # in flight at the kill: stalled, recovered, run again
            b.run(job_id, start, 2.9 + 0.05 * i, "retry")
            b.run(job_id, 3.0 + 0.05 * i, 3.4 + 0.05 * i)
        else:
            b.run(job_id, start, start + 0.3 + rng.random() * 0.3)
        b.effect(f"joke-{job_id}", start + 0.3)
        b.fetch(f"joke-{job_id}", start + 0.1)
    b.fault("kill", "worker:w1", 1.2, 1.25, signal="SIGKILL")
    h = b.build(6.0)
    # heartbeat + threshold + check interval + poll + tolerance (harness/budgets.py)
    budget = 0.5 + 1.0 + 0.5 + 0.1 + 0.2
    verdicts = [
        checker.check_queue_accounting(h, expected_status="succeeded"),
        checker.check_no_duplicate_effects(h),
        checker.check_recovery_latency(h, budget=budget),
    ]
    _write(
        reports,
        "worker_crash",
        h,
        verdicts,
        title="Worker crash (SIGKILL) with jobs in flight",
        claims=["no_loss_worker_crash", "stalled_recovery", "automatic_recovery"],
    )


def network_cut(reports: Path, rng: random.Random) -> None:
    """Failing: the API link is cut; retries on schedule but two jobs are lost."""
    b = HistoryBuilder(T0, "network_cut")
    for i in range(8):
        job_id = 200 + i
        at = 0.1 * i
        b.submit(job_id, at)
        t = at + 0.05
        if job_id in (206, 207):
            b.run(job_id, t)  # started, never ended: lost
            continue
        for run in range(1, 4):
            end = t + 0.05
            if run < 3:
                delay = min(BASE * 2 ** (run - 1), MAX_DELAY)
                b.run(job_id, t, end, "retry", retry_in=delay)
                late = 0.4 if (job_id, run) == (203, 2) else rng.random() * 0.08
                t = end + delay + late
            else:
                b.run(job_id, t, end)
                b.effect(f"joke-{job_id}", end)
    b.fault("proxy_down", "jokeapi", 0.0, 1.0)
    b.fault("reset_peer", "jokeapi", 1.2, None)
    for n in range(20):  # /health samples: 503 while the link is down, no answer once
        at = 0.2 * n
        b.observe("health_status", None if n == 7 else 503 if at < 1.0 else 200, at)
    h = b.build(4.0)
    # A hostile joke in a lost job's submission, to be shown (escaped) in its event trail.
    h.add(
        Submit(
            op_id=99,
            t_invoke=T0 + 0.7,
            t_complete=T0 + 0.71,
            outcome="ok",
            job_id=207,
            args={"joke": HOSTILE_JOKE},
        )
    )
    verdicts = [
        checker.check_queue_accounting(h),
        checker.check_no_duplicate_effects(h),
        checker.check_retry_schedule(h, base_delay=BASE, max_delay=MAX_DELAY, tolerance=TOL),
        checker.check_attempt_count(h, max_attempts=5),
    ]
    _write(
        reports,
        "network_cut",
        h,
        verdicts,
        title="Network cut to the joke API",
        claims=["no_loss_network", "backoff_formula"],
        extra={"logs": write_logs(reports, "network_cut", NETWORK_CUT_LOGS)},
    )


def backoff_schedule(reports: Path, rng: random.Random) -> None:
    """Passing: jobs fail 4 times then succeed or fail for good after 5 runs, on schedule."""
    b = HistoryBuilder(T0, "backoff_schedule")
    for i in range(4):
        job_id = 300 + i
        b.submit(job_id, 0.05 * i)
        t = 0.1 + 0.05 * i
        runs = 5
        for run in range(1, runs + 1):
            end = t + 0.03
            if run < runs:
                delay = min(BASE * 2 ** (run - 1), MAX_DELAY)
                b.run(job_id, t, end, "retry", retry_in=delay)
                t = end + delay + rng.random() * 0.1
            else:
                b.run(job_id, t, end, "failed" if i % 2 else "succeeded")
                if i % 2 == 0:
                    b.effect(f"joke-{job_id}", end)
    b.fault("http_status", "jokeapi", 0.0, 3.5, status=503)
    h = b.build(5.0)
    verdicts = [
        checker.check_queue_accounting(h),
        checker.check_retry_schedule(h, base_delay=BASE, max_delay=MAX_DELAY, tolerance=TOL),
        checker.check_attempt_count(h, max_attempts=5, require_failures=True),
    ]
    _write(
        reports,
        "backoff_schedule",
        h,
        verdicts,
        title="Exponential backoff schedule",
        claims=["backoff_formula", "max_attempts", "retry_window"],
    )


def idempotency_defect(reports: Path, rng: random.Random) -> None:
    """Mutation: plain INSERT with a one-joke pool stores the same joke twice: must fail."""
    b = HistoryBuilder(T0, "idempotency__defect_plain-insert")
    for i in range(5):
        b.submit(400 + i, 0.1 * i)
        b.run(400 + i, 0.1 * i + 0.05, 0.1 * i + 0.3)
        b.effect("joke-same", 0.1 * i + 0.3)
        b.fetch("joke-same", 0.1 * i + 0.1)
    h = b.build(2.0)
    verdicts = [checker.check_queue_accounting(h), checker.check_no_duplicate_effects(h)]
    _write(
        reports,
        "idempotency__defect_plain-insert",
        h,
        verdicts,
        title="Idempotency with a plain INSERT (deliberate defect)",
        claims=[],
        extra={"defect": "plain-insert", "expected_failing": ["no_duplicate_effects"]},
    )


def database_drop_crashed(reports: Path) -> None:
    """A scenario that errored before any verdict: only an error, with hostile text."""
    (reports / "results").mkdir(parents=True, exist_ok=True)
    doc = {
        "schema_version": 1,
        "run": _run_block(T0, T0 + 3),
        "scenarios": [
            {
                "scenario": "database_drop",
                "title": "Database drop",
                "seed": SEED,
                "verdict": "unknown",
                "error": HOSTILE_ERROR,
                "invariants": [],
            }
        ],
    }
    (reports / "results" / "database_drop.json").write_text(json.dumps(doc), "utf-8")


def write_passing(reports: Path, seed: int = SEED) -> None:
    """Only passing scenarios plus a caught defect."""
    rng = random.Random(seed)
    worker_crash(reports, rng)
    backoff_schedule(reports, rng)
    idempotency_defect(reports, rng)


def write_failing(reports: Path, seed: int = SEED) -> None:
    """Passing ones plus a failing scenario and one that crashed."""
    write_passing(reports, seed)
    network_cut(reports, random.Random(seed + 1))
    database_drop_crashed(reports)


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sample-report")
    write_failing(target)
    print(target)
