"""Read what the system's processes logged: which worker ran which run of a job.

The worker logs ``Job <id>: Fetching joke (attempt <k>/<max>)`` at the start of each run (the
seed document's log format); ``k`` is the run's ordinal among the job's ``started`` events.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

RUN_START = re.compile(r"Job (\d+): Fetching joke \(attempt (\d+)/")


def runs_in_log(text: str) -> list[tuple[int, int]]:
    """``(job id, run)`` for every run start logged in ``text``, in order."""
    return [(int(m.group(1)), int(m.group(2))) for m in RUN_START.finditer(text)]


def latest_run_worker(logs: Mapping[str, Path | None], ids: Iterable[int]) -> dict[int, str]:
    """Which worker started the latest run of each job in ``ids`` (by the logs of ``logs``,
    worker name -> log path); jobs no log mentions are left out."""
    wanted = set(ids)
    found: dict[int, tuple[int, str]] = {}
    for name, path in logs.items():
        if path is None or not path.exists():
            continue
        for job_id, run in runs_in_log(path.read_text(errors="replace")):
            if job_id in wanted and run >= found.get(job_id, (0, ""))[0]:
                found[job_id] = (run, name)
    return {job_id: name for job_id, (_, name) in found.items()}
