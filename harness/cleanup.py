"""Leave nothing behind: a registry of this run's temp dirs and processes, a reaper for old runs.

Each harness process that starts services owns a *run*: a directory
``$TMPDIR/bulletproof-runs/<run-id>/`` holding ``owner`` (its pid and start time), ``pids/``
(the process groups it started) and any temp dirs it made. The run id is also put in the
environment (``BULLETPROOF_RUN_ID``) so that every descendant carries it, including daemons such
as the PostgreSQL postmaster that leave our process groups.

At exit (atexit, or :func:`close_run` from a fixture finalizer) the run kills what it started and
deletes its directory. If the owner died without that (SIGKILL, a crash), the next run's
:func:`reap_stale` kills every process marked with the dead run's id, calls the registered
reapers (e.g. the docker backend removes containers labelled with it), and deletes the dir.

Hand-written because no library does "kill the descendants of a dead process by marker"; the
marker in ``/proc/<pid>/environ`` survives re-parenting and daemonising, unlike a process tree.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RUN_ENV = "BULLETPROOF_RUN_ID"
ROOT_ENV = "BULLETPROOF_TMP"

_reapers: list[Callable[[str], None]] = []


def temp_root() -> Path:
    """Where runs live: ``$BULLETPROOF_TMP`` or the system temp dir, plus ``bulletproof-runs``."""
    return Path(os.environ.get(ROOT_ENV) or tempfile.gettempdir()) / "bulletproof-runs"


def register_reaper(reaper: Callable[[str], None]) -> None:
    """Call ``reaper(run_id)`` for each dead run found by :func:`reap_stale` (e.g. containers)."""
    if reaper not in _reapers:
        _reapers.append(reaper)


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def owner_identity(pid: int | None = None) -> str:
    """``"pid starttime"`` of a process (default: this one): stays unique when pids are reused."""
    pid = os.getpid() if pid is None else pid
    return f"{pid} {_start_time(pid)}"


def owner_alive(identity: str) -> bool:
    """Whether the process recorded by :func:`owner_identity` is still that same living process."""
    try:
        pid_text, start = identity.split()
        return _start_time(int(pid_text)) == start
    except ValueError:
        return False


@dataclass
class Run:
    """This process's run: its id and directory."""

    id: str
    dir: Path

    @property
    def pids_dir(self) -> Path:
        return self.dir / "pids"


_current: Run | None = None


def current_run() -> Run:
    """This process's run, created on first use (reaping dead runs first)."""
    global _current
    if _current is None or _current.dir is None or not _current.dir.exists():
        reap_stale()
        run_id = f"{os.getpid()}-{secrets.token_hex(4)}"
        directory = temp_root() / run_id
        # Built under a hidden name and renamed, so no reaper ever sees a run without its owner.
        building = temp_root() / f".{run_id}"
        (building / "pids").mkdir(parents=True)
        (building / "owner").write_text(owner_identity())
        building.rename(directory)
        os.environ[RUN_ENV] = run_id  # inherited by every child, also those we don't spawn
        _current = Run(run_id, directory)
        atexit.register(close_run)
    return _current


def child_env() -> dict[str, str]:
    """Environment entries that mark a child as belonging to this run."""
    return {RUN_ENV: current_run().id}


def make_temp_dir(prefix: str) -> Path:
    """A fresh directory inside this run's directory (deleted with the run)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=current_run().dir))


def track(pid: int) -> None:
    """Record the process group led by ``pid`` so that it is killed with the run."""
    path = current_run().pids_dir / str(pid)
    path.write_text(owner_identity(pid))


def untrack(pid: int) -> None:
    """Forget the process group led by ``pid`` (it has exited)."""
    if _current is not None:
        with contextlib.suppress(FileNotFoundError):
            (_current.pids_dir / str(pid)).unlink()


def marked_pids(run_id: str) -> list[int]:
    """Living processes (other than this one) whose environment carries ``run_id``'s marker."""
    needle = f"{RUN_ENV}={run_id}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        pid = int(environ.parent.name)
        if pid == os.getpid():
            continue
        try:
            entries = environ.read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in entries and _start_time(pid) is not None:
            found.append(pid)
    return found


def _kill_run(directory: Path, run_id: str) -> list[int]:
    """SIGKILL the run's tracked groups and marked processes; return the pids signalled."""
    killed: list[int] = []
    for entry in (directory / "pids").glob("*"):
        with contextlib.suppress(OSError):
            identity = entry.read_text()
            if owner_alive(identity):
                pid = int(identity.split()[0])
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                    killed.append(pid)
    for pid in marked_pids(run_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def reap_stale(root: Path | None = None) -> list[str]:
    """Kill and delete the leftovers of runs whose owner died; return their ids."""
    root = root or temp_root()
    reaped: list[str] = []
    if not root.is_dir():
        return reaped
    for directory in sorted(root.iterdir()):
        if directory.name.startswith(".") or (_current is not None and directory == _current.dir):
            continue
        try:
            owner = (directory / "owner").read_text()
        except OSError:
            owner = ""
        if owner and owner_alive(owner):
            continue
        run_id = directory.name
        _kill_run(directory, run_id)
        for reaper in list(_reapers):
            with contextlib.suppress(Exception):
                reaper(run_id)
        shutil.rmtree(directory, ignore_errors=True)
        reaped.append(run_id)
    return reaped


def close_run() -> None:
    """Kill whatever this run still has running and delete its directory. Idempotent."""
    global _current
    run = _current
    if run is None:
        return
    _current = None
    _kill_run(run.dir, run.id)
    for reaper in list(_reapers):
        with contextlib.suppress(Exception):
            reaper(run.id)
    shutil.rmtree(run.dir, ignore_errors=True)
