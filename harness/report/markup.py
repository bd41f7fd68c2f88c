"""HTML building blocks shared by the page and its scenario sections.

Every value that comes from outside goes through :func:`esc` (``html.escape``); markup is only
ever built from literals. Statuses read as a symbol and a word, never as colour alone.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

Json = dict[str, Any]
#: status -> (symbol, word): every status reads as text, never as colour alone
MARKS = {
    "pass": ("✓", "pass"),
    "fail": ("✗", "fail"),
    "unknown": ("?", "unknown"),
    "untested": ("–", "not tested in this run"),
    "caught": ("✓", "defect caught"),
    "missed": ("✗", "defect missed"),
    "none": ("·", "not checked"),
}
RANK = {"fail": 0, "missed": 0, "unknown": 1, "pass": 2, "caught": 3}


def esc(value: object) -> str:
    """Escape any outside value for HTML text or a quoted attribute; ``None`` shows as a dash."""
    return "—" if value is None else escape(str(value), quote=True)


def slug(text: object) -> str:
    """A safe fragment for ids and anchors."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


def badge(status: object, text: object = None) -> str:
    """A status as symbol + word (shape and text, not hue alone)."""
    key = str(status)
    mark, word = MARKS.get(key, ("·", key))
    label = text if text is not None else word
    return f'<span class="badge {slug(key)}">{mark} {esc(label)}</span>'


def fmt_s(value: object, digits: int = 2) -> str:
    """Seconds, rounded: ``1.23 s``; ``—`` when not a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.{digits}f} s" if abs(value) < 100 else f"{value:.0f} s"
    return "—"


def fmt_time(ts: object) -> str:
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return esc(ts)


def rounded(value: Any) -> Any:
    """``value`` with every float rounded to 3 decimals (3.0500000000000003 -> 3.05)."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, Mapping):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def to_json(value: object) -> str:
    """Compact JSON with floats rounded (for figures shown as text)."""
    return json.dumps(rounded(value), ensure_ascii=False, sort_keys=True, default=str)


def job_anchor(scenario: str, job_id: object) -> str:
    """The id of a job's story."""
    return f"job-{slug(scenario)}-{slug(job_id)}"


def scenario_anchor(scenario: str) -> str:
    """The id of a scenario's section."""
    return f"s-{slug(scenario)}"


def job_link(scenario: str, job_id: object, cls: str = "") -> str:
    """A job id as a link to its story."""
    c = f' class="{cls}"' if cls else ""
    return f'<a{c} href="#{job_anchor(scenario, job_id)}">{esc(job_id)}</a>'


_JOBS = re.compile(r"\b([Jj]obs?)((?:\s*(?:,|and)?\s*\d+\b)+)")


def link_jobs(text: object, scenario: str, known: set[int]) -> str:
    """Escape ``text`` and turn ``job 9`` / ``jobs 9, 10`` into links to the stories."""
    escaped = esc(text)

    def one(number: re.Match[str]) -> str:
        n = int(number.group(0))
        return job_link(scenario, n) if n in known else number.group(0)

    def sub(match: re.Match[str]) -> str:
        return match.group(1) + re.sub(r"\d+", one, match.group(2))

    return _JOBS.sub(sub, escaped)


def table(head: Sequence[str], rows: Iterable[str], cls: str = "") -> str:
    """A table (head cells are markup) in a box that scrolls by itself on narrow screens."""
    th = "".join(f"<th>{h}</th>" for h in head)
    c = f' class="{cls}"' if cls else ""
    return (
        f'<div class="wrap"><table{c}><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def chart(svg: str) -> str:
    """A chart in its own scroll box: on a phone the chart scrolls sideways, never the text."""
    return f'<div class="wrap chartbox">{svg}</div>' if svg else ""


def ordered(scenarios: Sequence[Json]) -> list[Json]:
    """Failing first (fail, missed), then undecided, then passing, then caught defects."""
    return sorted(scenarios, key=lambda s: (RANK.get(str(s["outcome"]), 1), s["scenario"]))
