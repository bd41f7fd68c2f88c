"""Mutation tests: a scenario run against one deliberate defect of the system.

A mutation is named ``<scenario>__defect_<defect>`` (derived from :class:`system.defects.Defect`,
never parsed back) and passes only when the checker fails one of the invariants it names.
Each scenario file declares its mutants with :func:`mutants`; every one is marked ``mutant``
(``nox -s mutants``), a representative few also ``chaos_subset`` (``nox -s chaos``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from harness.vocabulary import DEFECT_MARK
from system.defects import Defect


def mutant_name(scenario: str, defect: Defect) -> str:
    """The mutation's name, e.g. ``backoff_schedule__defect_constant_backoff``."""
    return f"{scenario}{DEFECT_MARK}{defect.value.replace('-', '_')}"


def mutants(
    scenario: str, cases: Sequence[tuple[Defect, Sequence[str]]], *, subset: Iterable[Defect] = ()
) -> list[Any]:
    """pytest parameters ``(defect, expected_failing)`` for a scenario's mutation tests, with
    ids that are the mutation's name; each is marked ``mutant``, and those in ``subset`` also
    ``chaos_subset`` (run by the default ``nox -s chaos``)."""
    chosen = set(subset)
    return [
        pytest.param(
            defect,
            tuple(failing),
            id=mutant_name(scenario, defect),
            marks=[pytest.mark.mutant, *([pytest.mark.chaos_subset] if defect in chosen else [])],
        )
        for defect, failing in cases
    ]
