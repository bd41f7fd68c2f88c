"""The checker's verdict type and how verdicts merge."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "unknown"]
PASS: Status = "pass"
FAIL: Status = "fail"
UNKNOWN: Status = "unknown"


@dataclass(frozen=True)
class Verdict:
    """One invariant's outcome: status, a one-line summary, figures and evidence."""

    name: str  # an :class:`harness.vocabulary.Invariant`
    status: Status
    summary: str
    figures: dict[str, Any] = field(default_factory=dict)
    evidence: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as in results.json's ``invariants`` list."""
        return asdict(self)


def merge(verdicts: Iterable[Verdict | Status]) -> Status:
    """The one merge (scenarios, results and the report use it): any ``fail`` -> fail; else
    any ``unknown`` -> unknown; else pass. Nothing to merge -> unknown: nothing was shown."""
    statuses = [v.status if isinstance(v, Verdict) else v for v in verdicts]
    if FAIL in statuses:
        return FAIL
    if not statuses or UNKNOWN in statuses:
        return UNKNOWN
    return PASS
