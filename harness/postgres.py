"""A private PostgreSQL server run from the machine's own server binaries.

One ``initdb`` per :class:`LocalPostgres` (so once per test session), a loopback port of its own,
and a fresh database per scenario with :meth:`LocalPostgres.create_database`. The server can be
SIGKILLed (:meth:`kill`), stopped in any of ``pg_ctl``'s modes and started again on the same
data, so every committed row survives a crash. PostgreSQL refuses to run as root: when the
harness runs as root, every server command runs as the ``postgres`` system user.

We run ``initdb`` and ``postgres`` directly rather than through a library (e.g.
pytest-postgresql) or ``pg_ctl``: the harness needs exact control over crash stops and restarts
on the same data directory, and must be the postmaster's parent to reap it after a SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import psycopg

from harness.ports import free_port
from harness.wait import WaitTimeout, wait_for

DIR_PREFIX = "bulletproof-pg-"
OWNER_FILE = "owner.pid"
RUN_AS = "postgres"
StopMode = Literal["smart", "fast", "immediate"]
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, postgres) were not found; install them "
    "(Debian: apt-get install postgresql-15), put their directory on PATH or set "
    "BULLETPROOF_PG_BINDIR, or run with --backend docker"
)


class PostgresError(RuntimeError):
    """PostgreSQL could not be found, initialised, started or stopped."""


def find_bindir() -> Path:
    """Return the directory holding ``initdb`` and ``postgres``.

    Looks at ``BULLETPROOF_PG_BINDIR``, then ``PATH``, then Debian's ``/usr/lib/postgresql/*/bin``
    (newest first). Raises :class:`PostgresError` with an install hint when none has all three.
    """
    candidates: list[Path] = []
    if env := os.environ.get("BULLETPROOF_PG_BINDIR"):
        candidates.append(Path(env))
    if found := shutil.which("initdb"):
        candidates.append(Path(found).resolve().parent)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    candidates.extend(debian)
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "postgres")):
            return directory
    raise PostgresError(INSTALL_HINT)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale(tmp_root: Path | None = None) -> list[Path]:
    """Stop and delete the servers and data dirs left behind by runs whose owner process died.

    Returns the directories removed. Safe to call at every start.
    """
    root = tmp_root or Path(tempfile.gettempdir())
    removed: list[Path] = []
    for directory in root.glob(f"{DIR_PREFIX}*"):
        owner = directory / OWNER_FILE
        try:
            pid = int(owner.read_text().strip())
        except (OSError, ValueError):
            pid = -1
        if pid > 0 and _pid_alive(pid):
            continue
        _kill_postmaster(directory / "data")
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _read_postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        return int(first)
    except (OSError, ValueError, IndexError):
        return None


def _children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _describe(pids: Sequence[int]) -> str:
    """``pid state wchan: title`` for each living pid (a backend's title names its database,
    client address and what it is doing), for an error message."""
    found = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = Path(f"/proc/{pid}/wchan").read_text().strip() or "-"
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue
        found.append(f"{pid} {stat} {wchan}: {title.decode(errors='replace')}")
    return "; ".join(found)


#: The server log's hint when a crashed server's process still holds the data directory.
_OLD_SERVER = "Terminate any old server processes"


def _kill_postmaster(data_dir: Path) -> int | None:
    """SIGKILL the postmaster of ``data_dir`` and all its children; return its pid."""
    pid = _read_postmaster_pid(data_dir)
    if pid is None or not _pid_alive(pid):
        return None
    # Frozen first: a postmaster that forked a backend between the listing of its children and
    # its own SIGKILL left that backend alive, attached to the shared memory, and the next
    # start refused ("Terminate any old server processes", a red CI).
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGSTOP)
    victims = [pid, *_children_of(pid)]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)

    def gone() -> bool:
        # The postmaster must be fully gone, not a zombie: a new one refuses to start while
        # the pid in postmaster.pid exists. Reap it if it is our child (init reaps orphans).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        alive = [v for v in victims if _pid_alive(v) and not _is_zombie(v)]
        return not alive and not _pid_alive(pid)

    wait_for(gone, timeout=10, what=f"postgres processes {victims} to die")
    return pid


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class LocalPostgres:
    """A private PostgreSQL server on a loopback port, with its own data directory.

    Use as a context manager, or call :meth:`init`, :meth:`start` and finally :meth:`close`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        bindir: Path | None = None,
        tmp_root: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.bindir = bindir or find_bindir()
        self._tmp_root = tmp_root
        self.base_dir: Path | None = None
        self.user = "postgres"
        self._as_root = os.geteuid() == 0
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths ---------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        if self.base_dir is None:
            raise PostgresError("LocalPostgres.init() has not been called")
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        if self.base_dir is None:
            raise PostgresError("LocalPostgres.init() has not been called")
        return self.base_dir / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq URL for ``dbname`` on this server (trust auth, user ``postgres``)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    # -- lifecycle -----------------------------------------------------------------------

    def init(self) -> None:
        """Create the data directory with ``initdb`` (once)."""
        if self.base_dir is not None:
            return
        cleanup_stale(self._tmp_root)
        self.base_dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=self._tmp_root))
        (self.base_dir / OWNER_FILE).write_text(str(os.getpid()))
        if self._as_root:
            entry = pwd.getpwnam(RUN_AS)
            os.chown(self.base_dir, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                self.user,
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]
        )
        conf = self.data_dir / "postgresql.conf"
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base_dir}'",
            "max_connections": "200",
            # Crash-safe for process kills (the kernel keeps what was written); not for power loss,
            # which no scenario simulates. Saves seconds per scenario on these machines.
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "64MB",
            # LOG: a shutdown's and a crash recovery's progress are in the log (a handful of
            # lines per restart), for the error that a slow stop raises
            "log_min_messages": "log",
            # A client that connects while the server shuts down gets a "dead-end" backend that
            # waits this long for its startup packet, and the postmaster waits for it: at the
            # default 60 s, a client caught mid-connect (a reconnect loop, a paused worker) held
            # a fast stop past its 30 s timeout in CI. Trust auth on loopback needs no more than
            # a round trip, so 5 s only bounds how long a silent client can hold a stop.
            "authentication_timeout": "5s",
        }
        with conf.open("a") as fh:
            fh.write("\n# bulletproof harness\n")
            for key, value in settings.items():
                fh.write(f"{key} = {value}\n")

    def start(self, *, timeout: float = 30.0) -> float:
        """Start the server and wait until it accepts connections; return the seconds taken.

        The postmaster is this process's direct child (not daemonised by ``pg_ctl``), so a
        crash stop can reap it at once: an unreaped postmaster would block the next start.
        """
        self.init()
        if self.is_running():
            return 0.0
        started = time.monotonic()

        def attempt() -> bool:
            self._spawn()
            try:
                self.wait_ready(timeout=max(1.0, timeout - (time.monotonic() - started)))
            except PostgresError as exc:
                # A backend of a crashed server still attached to its shared memory: it exits
                # once it notices the postmaster is gone. Started again, as a supervisor would,
                # until the timeout; any other refusal is raised at once.
                if _OLD_SERVER not in str(exc):
                    raise
                return False
            return True

        try:
            wait_for(attempt, timeout=timeout, what="PostgreSQL to start", interval=0.05)
        except WaitTimeout:
            raise PostgresError(
                f"postgres did not start within {timeout}s: a crashed server's process still "
                f"holds {self.data_dir}{self._log_tail()}"
            ) from None
        return time.monotonic() - started

    def _spawn(self) -> None:
        log = self.log_file.open("ab")
        try:
            self._proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd="/",
                start_new_session=True,
                user=RUN_AS if self._as_root else None,
                group=RUN_AS if self._as_root else None,
            )
        finally:
            log.close()

    def wait_ready(self, *, timeout: float = 30.0) -> float:
        """Poll until a query succeeds; return the measured wait."""
        return wait_for(
            self._probe,
            timeout=timeout,
            what="PostgreSQL to accept connections",
            ignore=(psycopg.Error,),
        ).elapsed

    def _probe(self) -> bool:
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            raise PostgresError(f"postgres exited with code {proc.returncode}{self._log_tail()}")
        with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def stop(self, mode: StopMode = "fast", *, timeout: float = 30.0) -> None:
        """Stop like ``pg_ctl stop -m MODE`` (``immediate`` is a crash stop without SIGKILL)."""
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, _STOP_SIGNALS[mode])
        self._wait_gone(pid, timeout)

    def kill(self) -> int | None:
        """SIGKILL the postmaster and every backend (a real crash); return the postmaster pid."""
        if self.base_dir is None:
            return None
        pid = _kill_postmaster(self.data_dir)
        if self._proc is not None:
            self._proc.poll()
            self._proc = None
        return pid

    def _wait_gone(self, pid: int, timeout: float) -> None:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # Say what held the shutdown up (which backends, doing what), then crash-stop
                # it: a server left half-way through a shutdown fails every later test.
                lingering = _describe(_children_of(pid))
                log = self._log_lines(12)
                self.kill()
                raise PostgresError(
                    f"postgres (pid {pid}) did not stop within {timeout}s and was killed; "
                    f"still running then: {lingering or 'no child'}; server log ends: "
                    + " | ".join(log)
                ) from None
            self._proc = None
        else:
            wait_for(lambda: not _pid_alive(pid), timeout=timeout, what=f"postgres {pid} to stop")

    def restart(self, mode: StopMode | Literal["kill"] = "fast", *, timeout: float = 30.0) -> float:
        """Stop (or kill) and start on the same data; return seconds until ready again."""
        started = time.monotonic()
        if mode == "kill":
            self.kill()
        else:
            self.stop(mode, timeout=timeout)
        self.start(timeout=timeout)
        return time.monotonic() - started

    def is_running(self) -> bool:
        if self.base_dir is None:
            return False
        pid = _read_postmaster_pid(self.data_dir)
        return pid is not None and _pid_alive(pid) and not _is_zombie(pid)

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while running."""
        return _read_postmaster_pid(self.data_dir) if self.is_running() else None

    def close(self) -> None:
        """Stop the server (immediately) and delete its data directory."""
        if self.base_dir is None:
            return
        try:
            self.stop("immediate", timeout=10)
        except PostgresError:
            self.kill()
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = None

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- databases -----------------------------------------------------------------------

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create a database (dropping one of that name first), empty or a copy of database
        ``template``; return its DSN."""
        for what in (name, template or "template0"):
            if not what.replace("_", "").isalnum():
                raise ValueError(f"database name {what!r}: use letters, digits and underscores")
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template or "template0"}"')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its sessions."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def server_version(self) -> str:
        """``SHOW server_version`` of the running server."""
        with psycopg.connect(self.dsn()) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"

    # -- helpers -------------------------------------------------------------------------

    def _log_lines(self, count: int) -> list[str]:
        if self.base_dir is None or not self.log_file.exists():
            return []
        return self.log_file.read_text(errors="replace").strip().splitlines()[-count:]

    def _log_tail(self) -> str:
        lines = self._log_lines(1)
        return f" (server log: {lines[-1]})" if lines else ""

    def _run(self, argv: Sequence[str]) -> None:
        cmd = list(argv)
        if self._as_root:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/")
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            tail = detail[-1] if detail else f"exit code {result.returncode}"
            raise PostgresError(f"{Path(argv[0]).name} failed: {tail}{self._log_tail()}")
