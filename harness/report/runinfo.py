"""The run's environment: versions, git commit, and merging what scenarios recorded."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

Json = dict[str, Any]
RUN_KEYS = ("seed", "backend", "profile", "started_at", "finished_at", "git_commit", "command")
VERSION_KEYS = ("python", "procrastinate", "postgresql", "toxiproxy")


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(cwd: Path | None = None) -> str | None:
    """``HEAD``'s hash, with ``+dirty`` when tracked files differ from it; ``None`` outside git."""
    head = _run(["git", "rev-parse", "HEAD"], cwd)
    if head is None:
        return None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd)
    return f"{head}+dirty" if status else head


def postgres_version() -> str | None:
    """The local server binaries' version (``postgres --version``), if any are installed."""
    binary: str | None = None
    try:
        from harness.postgres import find_bindir

        candidate = find_bindir() / "postgres"
        binary = str(candidate) if candidate.exists() else None
    except Exception:  # no binaries or the module is missing: fall back to PATH
        binary = None
    binary = binary or shutil.which("postgres")
    if binary is None:
        return None
    out = _run([binary, "--version"])
    if not out:
        return None
    found = re.search(r"\(PostgreSQL\)\s+(\S+)", out)
    return found.group(1) if found else out


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def local_versions() -> dict[str, str | None]:
    """Versions seen from this process (Toxiproxy's flavour is only known from scenarios)."""
    return {
        "python": platform.python_version(),
        "procrastinate": package_version("procrastinate"),
        "postgresql": postgres_version(),
        "toxiproxy": None,
    }


def merge_run(base: Mapping[str, Any], recorded: Iterable[Mapping[str, Any]]) -> Json:
    """``base`` (what the caller knows) completed by run blocks that scenarios recorded.

    Scenario-recorded versions win over local guesses (e.g. a container's PostgreSQL); when
    scenarios disagree, every distinct value is kept, joined with `` / ``.
    """
    recorded = list(recorded)
    run: Json = {key: base.get(key) for key in RUN_KEYS}
    for key in RUN_KEYS:
        if run[key] is None:
            run[key] = next((r.get(key) for r in recorded if r.get(key) is not None), None)
    starts = [r["started_at"] for r in recorded if isinstance(r.get("started_at"), int | float)]
    ends = [r["finished_at"] for r in recorded if isinstance(r.get("finished_at"), int | float)]
    if base.get("started_at") is None and starts:
        run["started_at"] = min(starts)
    if base.get("finished_at") is None and ends:
        run["finished_at"] = max(ends)
    base_versions = base.get("versions") if isinstance(base.get("versions"), Mapping) else {}
    versions: Json = {}
    for key in VERSION_KEYS:
        seen: list[str] = []
        for r in recorded:
            v = r.get("versions", {}).get(key) if isinstance(r.get("versions"), Mapping) else None
            if v is not None and str(v) not in seen:
                seen.append(str(v))
        versions[key] = " / ".join(seen) if seen else base_versions.get(key)  # type: ignore[union-attr]
    run["versions"] = versions
    return run
