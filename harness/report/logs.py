"""Process logs named by a scenario entry's ``logs`` map: timed lines, lines naming a job, and
the last warning/error lines of a process that ended with an error.

Log lines look like ``2026-12-01 02:20:01,123 INFO system.tasks: Job 9: Fetching joke``
(``system/__main__.py``'s format, local time); the harness writes ``--- harness: start #N of
NAME: argv`` before each start. Lines without a time (tracebacks) take the previous line's.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MAX_LINES = 50_000
LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d+)?)\s+(?P<level>[A-Z]+)\s+(?P<rest>.*)$"
)
START = re.compile(r"^--- harness: start #(?P<n>\d+) of (?P<name>\S+?):")
PROBLEM_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})
FATAL = re.compile(r"Traceback|\bexiting\b|\bexited\b|SystemExit|\bCRITICAL\b|\bERROR\b")


@dataclass(frozen=True)
class LogLine:
    """One line of a process log; ``t`` is epoch seconds (``None`` before any timed line)."""

    process: str
    number: int
    t: float | None
    level: str | None
    text: str
    start: int | None = None  # the harness's start marker: which start of the process

    @property
    def message(self) -> str:
        """The line without its time stamp (``INFO system.tasks: Job 9: …``)."""
        found = LINE.match(self.text)
        return f"{found['level']} {found['rest']}" if found else self.text

    @property
    def problem(self) -> bool:
        """A warning or error line (or a traceback line following one)."""
        return self.level in PROBLEM_LEVELS


def _epoch(stamp: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(stamp.replace(",", ".")).timestamp()
    except ValueError:
        return None


def parse_log(process: str, lines: Iterable[str]) -> list[LogLine]:
    """Timed lines of one log; a start marker takes the time of the line after it."""
    out: list[LogLine] = []
    last_t: float | None = None
    last_level: str | None = None
    pending_starts: list[int] = []
    for number, raw in enumerate(lines, start=1):
        if number > MAX_LINES:
            break
        text = raw.rstrip("\n")
        if not text.strip():
            continue
        found = LINE.match(text)
        start = START.match(text)
        if found:
            last_t = _epoch(found["ts"]) or last_t
            last_level = found["level"]
            for i in pending_starts:  # the marker happened just before this line
                out[i] = LogLine(process, out[i].number, last_t, None, out[i].text, out[i].start)
            pending_starts = []
        elif start:
            last_level = None
            pending_starts.append(len(out))
            out.append(LogLine(process, number, last_t, None, text, int(start["n"])))
            continue
        out.append(LogLine(process, number, last_t, last_level, text))
    return out


def read_log(process: str, path: Path) -> list[LogLine] | None:
    """The parsed log at ``path``, or ``None`` when it cannot be read."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return parse_log(process, fh)
    except OSError:
        return None


@lru_cache(maxsize=4096)
def job_pattern(job_id: int) -> re.Pattern[str]:
    """Matches a line naming job ``job_id``: ``Job 9``, ``job #9``, ``job_id=9``, ``task[9]``."""
    n = int(job_id)
    return re.compile(rf"(?i)\bjob(?:_id)?\W{{0,3}}{n}\b|\w\[{n}\]")


ANY_JOB = re.compile(r"(?i)\bjob(?:_id)?\W{0,3}(\d+)\b|\w\[(\d+)\]")


def mentions(logs: Mapping[str, list[LogLine]]) -> dict[int, list[LogLine]]:
    """Job id -> every line, from every process, that names it (one pass over the logs)."""
    out: dict[int, list[LogLine]] = {}
    for lines in logs.values():
        for line in lines:
            ids = {int(a or b) for a, b in ANY_JOB.findall(line.text)}
            for job_id in ids:
                out.setdefault(job_id, []).append(line)
    return out


def lines_naming(logs: Mapping[str, list[LogLine]], job_id: int) -> list[LogLine]:
    """Every line, from every process, that names ``job_id``."""
    pattern = job_pattern(job_id)
    return [line for lines in logs.values() for line in lines if pattern.search(line.text)]


def last_problems(lines: list[LogLine], limit: int = 8) -> list[LogLine]:
    """The last warning/error lines of the process's last start."""
    last_start = max((i for i, line in enumerate(lines) if line.start is not None), default=0)
    return [line for line in lines[last_start:] if line.problem][-limit:]


def ended_with_error(lines: list[LogLine], tail: int = 5) -> bool:
    """Whether the log's last lines show the process dying on an error (a traceback, an
    ``ERROR`` line, "exiting"): how the report tells an unexpected exit from a clean stop."""
    last = [line for line in lines if line.start is None][-tail:]
    return any(FATAL.search(line.text) for line in last)
