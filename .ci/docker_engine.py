"""Provision a Docker engine for the docker backend, and leave the machine as it was afterwards.

Run with the project's Python (the one with ``pip install -e '.[dev]'``), as root on Debian::

    python3 .ci/docker_engine.py install [PACKAGE ...]  # apt-get install what is missing
    python3 .ci/docker_engine.py up       # install, then start dockerd unless an engine answers
    python3 .ci/docker_engine.py down     # stop the dockerd `up` started, undo what it changed
    python3 .ci/docker_engine.py status   # exit 0 when an engine answers a ping

``install`` knows ``docker.io containerd runc debootstrap`` (all of them by default) and installs
only those whose program is missing. ``up`` starts ``/usr/sbin/dockerd`` in the background
(pidfile and log in the state directory) after saving iptables, ``net.ipv4.ip_forward`` and the
network links; ``down`` stops only an engine that ``up`` started, then removes the iptables rules
and chains dockerd added, restores ``ip_forward`` and deletes the ``docker0``/``br-*``/``veth*``
links it left. The state directory is ``/run/bulletproof-docker`` (``BULLETPROOF_DOCKER_STATE``).

Machine provisioning lives here, next to ``.ci/run``, and not in the ``harness`` package:
importing the harness never installs, starts or changes anything on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
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

try:
    from harness.cleanup import owner_alive, owner_identity
    from harness.docker.engine import unreachable_reason
    from harness.wait import WaitTimeout, wait_for
except ImportError as exc:  # run with a Python that lacks the project
    raise SystemExit(
        f"docker-engine: cannot import the harness ({exc}); run this script with the project's "
        "Python after `pip install -e '.[dev]'` (e.g. .venv/bin/python or inside `nox`)"
    ) from None

APT_PACKAGES = {  # Debian package -> a program it installs (present: nothing to install)
    "docker.io": "dockerd",
    "containerd": "containerd",
    "runc": "runc",
    "debootstrap": "debootstrap",
}
DOCKERD = "/usr/sbin/dockerd"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# Rules and chains that dockerd creates mention one of these; nothing else is touched on undo.
DOCKER_MARKERS = ("DOCKER", "docker0", "br-")
BUILTIN_CHAINS = frozenset({"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"})
LEFTOVER_LINKS = ("docker0", "br-", "veth")
# dockerd's runtime directories (sockets of its containerd and shims): removed by `down` when
# `up` found them absent.
RUNTIME_DIRS = ("/run/docker", "/run/containerd")
STATE_FILES = ("saved.json", "started.pid", "dockerd.pid", "dockerd.log")


def state_dir() -> Path:
    """Where ``up`` keeps the pidfile, the dockerd log and the machine's saved state."""
    return Path(os.environ.get("BULLETPROOF_DOCKER_STATE", "/run/bulletproof-docker"))


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(f"docker-engine: {msg}", file=sys.stderr, flush=True)


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


def missing_packages(wanted: list[str], have: dict[str, bool]) -> list[str]:
    """The packages of ``wanted`` whose program ``have`` says is absent (pure)."""
    unknown = [p for p in wanted if p not in APT_PACKAGES]
    if unknown:
        raise SystemExit(
            f"docker-engine: unknown package(s) {', '.join(unknown)}; "
            f"choose from {', '.join(APT_PACKAGES)}"
        )
    return [p for p in wanted if not have.get(APT_PACKAGES[p], False)]


# --- machine state ------------------------------------------------------------------------------


def _has_program(name: str) -> bool:
    # Also /usr/sbin and /sbin: dockerd, runc and debootstrap live there, off some users' PATH.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path) is not None


def _iptables_save() -> str:
    if shutil.which("iptables-save") is None:
        return ""
    done = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def _links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


# --- commands ----------------------------------------------------------------------------------


def install(packages: list[str]) -> int:
    """apt-get install those of ``packages`` whose program is missing."""
    have = {program: _has_program(program) for program in APT_PACKAGES.values()}
    missing = missing_packages(packages, have)
    if not missing:
        return 0
    if os.geteuid() != 0:
        raise SystemExit(
            f"docker-engine: {' '.join(missing)} missing and not root; run as root or "
            f"apt-get install {' '.join(missing)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    log(f"installing {' '.join(missing)}")
    start = time.monotonic()
    if subprocess.run(cmd, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)
    log(f"installed in {time.monotonic() - start:.1f}s")
    return 0


def up(timeout: float) -> int:
    """Make an engine reachable: install what is missing, start dockerd unless one answers."""
    install(list(APT_PACKAGES))
    if unreachable_reason() is None:
        log("an engine is already reachable; not starting another")
        return 0
    sdir = state_dir()
    sdir.mkdir(parents=True, exist_ok=True)
    saved = {
        "ip_forward": IP_FORWARD.read_text().strip() if IP_FORWARD.exists() else None,
        "iptables": _iptables_save(),
        "links": _links(),
        "runtime_dirs": [d for d in RUNTIME_DIRS if not Path(d).exists()],
    }
    (sdir / "saved.json").write_text(json.dumps(saved))
    dockerd_log = sdir / "dockerd.log"
    with dockerd_log.open("ab") as logfile:
        proc = subprocess.Popen(
            [DOCKERD, "--pidfile", str(sdir / "dockerd.pid")],
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command; `down` stops it
        )
    # pid and start time: `down` never signals a reused pid.
    (sdir / "started.pid").write_text(owner_identity(proc.pid))

    def answered_or_exited() -> bool:
        return proc.poll() is not None or unreachable_reason() is None

    try:
        waited = wait_for(
            answered_or_exited, timeout=timeout, what="dockerd to answer", interval=0.1
        )
    except WaitTimeout as exc:
        failure = str(exc)
    else:
        if proc.poll() is None:
            log(f"dockerd pid {proc.pid} ready in {waited.elapsed:.1f}s")
            return 0
        failure = f"dockerd exited with {proc.returncode}"
    # `down` removes the state directory with the log: show its end first.
    tail = dockerd_log.read_text(errors="replace").splitlines()[-20:]
    log(f"{failure}; the end of its log:\n" + "\n".join(tail))
    down(timeout=30)
    return 1


def down(timeout: float) -> int:
    """Stop the dockerd that ``up`` started, restore iptables, ip_forward and links, and remove
    the directories it left (its runtime directories and the state directory)."""
    sdir = state_dir()
    pidfile = sdir / "started.pid"
    if not pidfile.exists():
        log("no engine started by us; nothing to stop")
        return 0
    identity = pidfile.read_text().strip()
    pid = int(identity.split()[0])
    if owner_alive(identity):
        os.kill(pid, signal.SIGTERM)
        try:
            waited = wait_for(
                lambda: not owner_alive(identity),
                timeout=timeout,
                what="dockerd to exit",
                interval=0.1,
            )
            log(f"dockerd pid {pid} stopped in {waited.elapsed:.1f}s")
        except WaitTimeout:
            log(f"dockerd pid {pid} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not owner_alive(identity), timeout=10, what="dockerd to die")
    _restore(sdir)
    for name in STATE_FILES:
        (sdir / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # kept if someone else put files there
        sdir.rmdir()
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
        if link.startswith(LEFTOVER_LINKS):
            subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
            log(f"removed leftover link {link}")
    for directory in saved.get("runtime_dirs", []):
        if Path(directory).is_dir():
            shutil.rmtree(directory, ignore_errors=True)
            log(f"removed dockerd's runtime directory {directory}")
    saved_file.unlink()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``install``, ``up``, ``down`` or ``status``."""
    parser = argparse.ArgumentParser(
        prog="python3 .ci/docker_engine.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("install", "up", "down", "status"))
    parser.add_argument(
        "packages",
        nargs="*",
        metavar="PACKAGE",
        help=f"install only: some of {', '.join(APT_PACKAGES)} (default: all)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    args = parser.parse_args(argv)
    if args.packages and args.command != "install":
        parser.error("packages are only taken by `install`")
    if args.command == "install":
        return install(args.packages or list(APT_PACKAGES))
    if args.command == "up":
        return up(args.timeout)
    if args.command == "down":
        return down(args.timeout)
    reason = unreachable_reason()
    print("reachable" if reason is None else f"unreachable: {reason}")
    return 0 if reason is None else 1


if __name__ == "__main__":
    sys.exit(main())
