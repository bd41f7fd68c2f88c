"""Checker at scale (issue 15): 10,000 jobs and 100 overlapping faults judged in at most 5 s.

A synthetic history (:func:`harness.history.synthetic.scale_history`) is written as JSONL with
:class:`HistoryWriter` and read back with :func:`read_history`, as the report does; then each
check a random-schedule run applies is timed. The same at 1,000 / 5,000 / 10,000 / 20,000 jobs
(10 / 50 / 100 / 200 faults) shows how time grows: time(2N) / time(N) near 2 is linear.
Prints figures only: timings are never asserted.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.checker import (
    Verdict,
    check_attempt_count,
    check_job_effects,
    check_justified_reruns,
    check_no_duplicate_effects,
    check_processes_alive,
    check_queue_accounting,
    check_queue_resumes,
    check_recovery_latency,
    check_retry_schedule,
)
from harness.history import History, HistoryWriter, read_history
from harness.history.synthetic import BASE_DELAY, MAX_ATTEMPTS, MAX_DELAY, scale_history
from harness.vocabulary import FaultKind, Target

TARGET = 5.0
TARGET_JOBS = 10_000
#: (jobs, faults) per size; faults grow with jobs, as a longer run meets more of them.
SIZES = ((1_000, 10), (5_000, 50), (10_000, 100), (20_000, 200))
SEED = 15
#: Rounds of load + every check; each step's fastest round is kept (a shared machine: noise).
REPEATS = 3

CHECKS: dict[str, Callable[[History], Verdict]] = {
    "queue_accounting": lambda h: check_queue_accounting(h),
    "no_duplicate_effects": check_no_duplicate_effects,
    "job_effects": check_job_effects,
    "justified_reruns": lambda h: check_justified_reruns(h),
    "processes_alive": check_processes_alive,
    "recovery_latency": lambda h: check_recovery_latency(
        h, budget=10.0, fault_kinds=(FaultKind.KILL, FaultKind.SIGTERM)
    ),
    "queue_resumes": lambda h: check_queue_resumes(
        h,
        budget=15.0,
        fault_kinds=(FaultKind.PG_RESTART, FaultKind.PROXY_DOWN),
        target_prefix=(Target.POSTGRES, Target.DBLINK),
    ),
    "retry_schedule": lambda h: check_retry_schedule(
        h, base_delay=BASE_DELAY, max_delay=MAX_DELAY, tolerance=0.2
    ),
    "attempt_count": lambda h: check_attempt_count(h, max_attempts=MAX_ATTEMPTS),
}


def _measure(jobs: int, faults: int, workdir: Path) -> tuple[dict[str, float], dict[str, str]]:
    """Seconds per step (``load`` and each check) and each check's verdict status."""
    history = scale_history(jobs, faults, seed=SEED)
    path = workdir / f"history-{jobs}.jsonl"
    with HistoryWriter(path) as writer:
        for record in history:
            writer.write(record)
    times: dict[str, float] = {}
    statuses: dict[str, str] = {}
    for _ in range(REPEATS):  # each round reads the file again: no view cached from before
        began = time.perf_counter()
        loaded = read_history(path)
        round_times = {"load": time.perf_counter() - began}
        for name, check in CHECKS.items():
            began = time.perf_counter()
            statuses[name] = str(check(loaded).status)
            round_times[name] = time.perf_counter() - began
        round_times["checks"] = sum(v for k, v in round_times.items() if k != "load")
        for step, seconds in round_times.items():
            times[step] = min(times.get(step, float("inf")), seconds)
    path.unlink()
    return times, statuses


def main() -> None:
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-checker-") as tmp:
        for jobs, faults in SIZES:
            times, statuses = _measure(jobs, faults, Path(tmp))
            results[jobs] = times
            if jobs == TARGET_JOBS:
                shown = ", ".join(f"{k} {v}" for k, v in statuses.items())
                print(f"verdicts at {jobs} jobs: {shown}", flush=True)
            print(f"{jobs:>6} jobs, {faults:>3} faults: checks {times['checks']:.2f}s", flush=True)
    sizes = [jobs for jobs, _ in SIZES]
    steps = ["load", *CHECKS, "checks"]
    header = f"{'step':<22}" + "".join(f"{n:>9}" for n in sizes)
    pairs = [(a, b) for a in sizes for b in sizes if b == 2 * a]
    header += "".join(f"{f'{b}/{a}':>13}" for a, b in pairs)
    print(header)
    for step in steps:
        line = f"{step:<22}" + "".join(f"{results[n][step]:8.3f}s" for n in sizes)
        for a, b in pairs:
            ratio = results[b][step] / results[a][step] if results[a][step] > 0 else float("nan")
            line += f"{ratio:13.2f}"
        print(line)
    total = results[TARGET_JOBS]["checks"]
    verdict = "MET" if total <= TARGET else "MISSED"
    print(
        f"{TARGET_JOBS} jobs + 100 faults: all checks {total:.2f}s after a load of "
        f"{results[TARGET_JOBS]['load']:.2f}s; target {TARGET:.1f}s: {verdict} "
        f"(checks/target {total / TARGET:.2f}; fastest of {REPEATS}; "
        "time(2N)/time(N) near 2 is linear)",
        flush=True,
    )


if __name__ == "__main__":
    main()
