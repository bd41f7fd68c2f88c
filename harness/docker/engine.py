"""Start and stop a local Docker engine for the harness, leaving the machine as it was.

``python -m harness.docker.engine up`` installs ``docker.io containerd runc debootstrap`` with
apt-get when ``dockerd`` or ``debootstrap`` is missing, and starts ``/usr/sbin/dockerd`` in the
background (pidfile and log in the state directory) unless an engine is already reachable.
``down`` stops only an engine that ``up`` started, then undoes what dockerd leaves behind:
its iptables rules and chains, ``net.ipv4.ip_forward`` and the ``docker0`` bridge.
``status`` says whether an engine answers; ``install`` only installs what is missing.
The state directory is ``/run/bulletproof-docker`` (environment ``BULLETPROOF_DOCKER_STATE``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.wait import WaitTimeout, wait_for

APT_PACKAGES = ("docker.io", "containerd", "runc", "debootstrap")
DOCKERD = "/usr/sbin/dockerd"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# Rules and chains that dockerd creates mention one of these; nothing else is touched on undo.
DOCKER_MARKERS = ("DOCKER", "docker0", "br-")
BUILTIN_CHAINS = frozenset(
    {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"},
)


def state_dir() -> Path:
    """Where ``up`` keeps the pidfile, the dockerd log and the machine's saved state."""
    return Path(os.environ.get("BULLETPROOF_DOCKER_STATE", "/run/bulletproof-docker"))


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(f"docker-engine: {msg}", file=sys.stderr, flush=True)


# --- reachability -----------------------------------------------------------------------------


def unreachable_reason() -> str | None:
    """None when a Docker engine answers a ping, else one line saying why and what to do."""
    try:
        import docker
    except ImportError:
        return "the 'docker' Python package is missing: pip install docker"
    try:
        client = docker.from_env(timeout=5)
    except docker.errors.DockerException as exc:
        return (
            f"no Docker engine is reachable ({_first_line(exc)}); start one with "
            "`python -m harness.docker.engine up` (installs docker.io when missing) "
            "or set DOCKER_HOST"
        )
    try:
        client.ping()
    except Exception as exc:  # any failure to answer means "not reachable"
        return f"the Docker engine does not answer a ping ({_first_line(exc)})"
    finally:
        client.close()
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


# --- iptables undo (pure) -----------------------------------------------------------------------


@dataclass
class Table:
    """One table of ``iptables-save`` output."""

    policies: dict[str, str] = field(default_factory=dict)
    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)


def parse_iptables_save(text: str) -> dict[str, Table]:
    """Parse ``iptables-save`` output into tables of chain policies, chains and ``-A`` rules."""
    tables: dict[str, Table] = {}
    current: Table | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], Table())
        elif current is None:
            continue
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            current.chains.append(name)
            current.policies[name] = policy
        elif line.startswith("-A "):
            current.rules.append(line[3:])
    return tables


def _docker_made(text: str) -> bool:
    return any(marker in text for marker in DOCKER_MARKERS)


def undo_commands(before: str, after: str) -> list[list[str]]:
    """iptables commands that remove what dockerd added between two ``iptables-save`` dumps.

    Only rules and chains that mention Docker (``DOCKER*`` chains, ``docker0``, ``br-*``
    bridges) and were absent before are removed; built-in chain policies go back to their
    earlier values (ACCEPT when the table did not exist).
    """
    old = parse_iptables_save(before)
    new = parse_iptables_save(after)
    deletes: list[list[str]] = []
    flushes: list[list[str]] = []
    removes: list[list[str]] = []
    policies: list[list[str]] = []
    for name, table in new.items():
        prior = old.get(name, Table())
        base = ["iptables", "-t", name]
        for rule in table.rules:
            chain = rule.split()[0]
            if chain in BUILTIN_CHAINS and rule not in prior.rules and _docker_made(rule):
                deletes.append([*base, "-D", *shlex.split(rule)])
        for chain in table.chains:
            if chain not in BUILTIN_CHAINS and chain not in prior.chains and _docker_made(chain):
                flushes.append([*base, "-F", chain])
                removes.append([*base, "-X", chain])
        for chain, policy in table.policies.items():
            if chain in BUILTIN_CHAINS and policy != "-":
                wanted = prior.policies.get(chain, "ACCEPT")
                if wanted != policy:
                    policies.append([*base, "-P", chain, wanted])
    return deletes + flushes + removes + policies


# --- machine state ------------------------------------------------------------------------------


def _iptables_save() -> str:
    if shutil.which("iptables-save") is None:
        return ""
    done = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def _links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own unreaped child) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- commands ----------------------------------------------------------------------------------


def install_if_missing() -> float:
    """apt-get install the engine and debootstrap when missing; returns seconds spent."""
    missing = not Path(DOCKERD).exists() or shutil.which("debootstrap") is None
    if not missing:
        return 0.0
    if os.geteuid() != 0:
        raise SystemExit(
            "docker-engine: dockerd/debootstrap missing and not root; run as root or "
            f"apt-get install {' '.join(APT_PACKAGES)}"
        )
    start = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]
    log(f"installing {' '.join(APT_PACKAGES)}")
    if subprocess.run(cmd, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)
    elapsed = time.monotonic() - start
    log(f"installed in {elapsed:.1f}s")
    return elapsed


def up(timeout: float) -> int:
    """Make an engine reachable: start dockerd unless one already answers."""
    install_if_missing()
    if unreachable_reason() is None:
        log("an engine is already reachable; not starting another")
        return 0
    sdir = state_dir()
    sdir.mkdir(parents=True, exist_ok=True)
    saved = {
        "ip_forward": IP_FORWARD.read_text().strip() if IP_FORWARD.exists() else None,
        "iptables": _iptables_save(),
        "links": _links(),
    }
    (sdir / "saved.json").write_text(json.dumps(saved))
    logfile = (sdir / "dockerd.log").open("ab")
    proc = subprocess.Popen(
        [DOCKERD, "--pidfile", str(sdir / "dockerd.pid")],
        stdin=subprocess.DEVNULL,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # outlives this command; `down` stops it
    )
    logfile.close()
    (sdir / "started.pid").write_text(str(proc.pid))

    def ready() -> bool:
        if proc.poll() is not None:
            raise SystemExit(
                f"docker-engine: dockerd exited with {proc.returncode}; see {sdir / 'dockerd.log'}"
            )
        return unreachable_reason() is None

    try:
        waited = wait_for(ready, timeout=timeout, what="dockerd to answer", interval=0.1)
    except WaitTimeout as exc:
        log(f"{exc}; see {sdir / 'dockerd.log'}")
        down(timeout=30)
        return 1
    log(f"dockerd pid {proc.pid} ready in {waited.elapsed:.1f}s")
    return 0


def down(timeout: float) -> int:
    """Stop the dockerd that ``up`` started and restore iptables, ip_forward and links."""
    sdir = state_dir()
    pidfile = sdir / "started.pid"
    if not pidfile.exists():
        log("no engine started by us; nothing to stop")
        return 0
    pid = int(pidfile.read_text().strip())
    if _pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        try:
            waited = wait_for(
                lambda: not _pid_alive(pid), timeout=timeout, what="dockerd to exit", interval=0.1
            )
            log(f"dockerd pid {pid} stopped in {waited.elapsed:.1f}s")
        except WaitTimeout:
            log(f"dockerd pid {pid} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not _pid_alive(pid), timeout=10, what="dockerd to die")
    _restore(sdir)
    pidfile.unlink()
    return 0


def _restore(sdir: Path) -> None:
    saved_file = sdir / "saved.json"
    if not saved_file.exists():
        return
    saved = json.loads(saved_file.read_text())
    failed = 0
    commands = undo_commands(saved["iptables"], _iptables_save())
    for cmd in commands:
        if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
            failed += 1
    log(f"iptables: undid {len(commands) - failed} of {len(commands)} docker changes")
    if saved["ip_forward"] is not None and IP_FORWARD.read_text().strip() != saved["ip_forward"]:
        IP_FORWARD.write_text(saved["ip_forward"] + "\n")
        log(f"ip_forward restored to {saved['ip_forward']}")
    for link in sorted(set(_links()) - set(saved["links"])):
        if link == "docker0" or link.startswith(("br-", "veth")):
            subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
            log(f"removed leftover link {link}")
    saved_file.unlink()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``up``, ``down`` or ``status``."""
    parser = argparse.ArgumentParser(prog="python -m harness.docker.engine", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "install"))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args.timeout)
    if args.command == "down":
        return down(args.timeout)
    if args.command == "install":
        install_if_missing()
        return 0
    reason = unreachable_reason()
    print("reachable" if reason is None else f"unreachable: {reason}")
    return 0 if reason is None else 1


if __name__ == "__main__":
    sys.exit(main())
