"""Parse durations such as ``500ms``, ``2s``, ``10m``, ``1h`` or a bare number."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")


def parse_duration(raw: str | float | int, *, bare_unit: str = "s") -> float:
    """Return ``raw`` in seconds.

    A bare number is read in ``bare_unit`` (``s`` unless told otherwise). Raises
    ``ValueError`` with a message naming the accepted forms.
    """
    if isinstance(raw, bool):
        raise ValueError("expected a duration such as 500ms, 2s or 10m")
    if isinstance(raw, int | float):
        value, unit = float(raw), bare_unit
    else:
        match = _PATTERN.match(raw)
        if match is None:
            raise ValueError(f"{raw!r} is not a duration; use e.g. 500ms, 2s, 10m or a number")
        value, unit = float(match.group(1)), match.group(2) or bare_unit
    return value * _UNITS[unit]


def format_duration(seconds: float) -> str:
    """Render seconds compactly for log lines (``0.2s``, ``30s``)."""
    return f"{seconds:g}s"
