"""Time to a ready local stack, and PostgreSQL restart-to-ready (targets 3 s and 1.5 s).

Measured on the local backend:
- cold stack: initdb + PostgreSQL start + Toxiproxy + fake API + migrate + one worker ready;
- warm stack: the same on an open backend (what each scenario pays; PostgreSQL already up);
- PostgreSQL restart (fast stop + start) and crash restart (SIGKILL + start), until a query works.
Prints figures only: timings are never asserted.
"""

from __future__ import annotations

import statistics
import time

from harness import cleanup
from harness.backends.local import LocalBackend
from harness.profiles import FAST
from harness.stack import Stack

STACK_TARGET = 3.0
RESTART_TARGET = 1.5
ROUNDS = 3


def _line(what: str, samples: list[float], target: float | None) -> None:
    median, worst = statistics.median(samples), max(samples)
    verdict = ""
    if target is not None:
        verdict = f"  target {target:.1f}s: {'ok' if worst <= target else 'MISSED'}"
        verdict += f" (median/target {median / target:.2f})"
    shown = ", ".join(f"{s:.2f}" for s in samples)
    print(f"{what:<34} median {median:5.2f}s  max {worst:5.2f}s  [{shown}]{verdict}", flush=True)


def _stack(backend: LocalBackend, seed: int) -> tuple[float, dict[str, float]]:
    stack = Stack(backend, profile=FAST, seed=seed, name="bench", workers=1, api=False)
    try:
        elapsed = stack.start()
        return elapsed, dict(stack.timings)
    finally:
        stack.close()


def main() -> None:
    try:
        cold: list[float] = []
        warm: list[float] = []
        restart: list[float] = []
        crash: list[float] = []
        opened: list[float] = []
        steps: list[dict[str, float]] = []
        for round_ in range(ROUNDS):
            began = time.monotonic()
            backend = LocalBackend(cleanup.make_temp_dir("bench-"))
            try:
                backend.open()
                opened.append(time.monotonic() - began)
                elapsed, _ = _stack(backend, seed=round_)
                cold.append(time.monotonic() - began)
                elapsed, timings = _stack(backend, seed=round_)
                warm.append(elapsed)
                steps.append(timings)
                restart.append(backend.postgres.restart(timeout=30))
                crash.append(backend.postgres.restart(kill=True, timeout=30))
            finally:
                backend.close()
        _line("cold stack (incl. initdb + PG start)", cold, STACK_TARGET)
        _line("  of which initdb + PG start", opened, None)
        _line("warm stack (per scenario)", warm, STACK_TARGET)
        for step in ("database", "toxiproxy", "migrate", "fakeapi", "sut"):
            _line(f"  warm step: {step}", [t[step] for t in steps], None)
        _line("PostgreSQL restart (fast stop)", restart, RESTART_TARGET)
        _line("PostgreSQL crash restart (SIGKILL)", crash, RESTART_TARGET)
    finally:
        cleanup.close_run()


if __name__ == "__main__":
    main()
