"""The run registry and the reaper of dead runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import cleanup
from harness.wait import wait_for


def test_reap_stale_kills_marked_processes_of_a_dead_run_and_removes_its_dir(
    tmp_path: Path,
) -> None:
    root = tmp_path / "runs"
    dead_run = root / "12345-deadbeef"
    (dead_run / "pids").mkdir(parents=True)
    (dead_run / "owner").write_text("999999999 1")  # no such process
    (dead_run / "leftover.txt").write_text("x")
    leftover = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, cleanup.RUN_ENV: dead_run.name},
    )
    live_run = root / "live"
    (live_run / "pids").mkdir(parents=True)
    (live_run / "owner").write_text(cleanup.owner_identity(os.getpid()))
    try:
        wait_for(
            lambda: leftover.pid in cleanup.marked_pids(dead_run.name),
            timeout=10,
            what="the leftover to show its marker",
        )
        seen: list[str] = []
        cleanup.register_reaper(seen.append)
        try:
            reaped = cleanup.reap_stale(root)
        finally:
            cleanup._reapers.remove(seen.append)
        assert reaped == [dead_run.name]
        assert seen == [dead_run.name]
        assert leftover.wait(timeout=10) == -9
        assert not dead_run.exists()
        assert live_run.exists()  # its owner (this process) is alive
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()


def test_tracked_process_groups_of_a_dead_run_are_killed(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    dead_run = root / "dead"
    (dead_run / "pids").mkdir(parents=True)
    (dead_run / "owner").write_text("")
    victim = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if k != cleanup.RUN_ENV},
    )
    try:
        wait_for(lambda: cleanup._start_time(victim.pid), timeout=5, what="victim to start")
        (dead_run / "pids" / str(victim.pid)).write_text(cleanup.owner_identity(victim.pid))
        assert cleanup.reap_stale(root) == ["dead"]
        assert victim.wait(timeout=10) == -9
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()


def test_a_reused_pid_is_not_killed(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    dead_run = root / "dead"
    (dead_run / "pids").mkdir(parents=True)
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        # Same pid, different start time: a process that merely reuses the number.
        (dead_run / "pids" / str(bystander.pid)).write_text(f"{bystander.pid} 1")
        cleanup.reap_stale(root)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
