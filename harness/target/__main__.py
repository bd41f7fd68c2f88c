"""``python -m harness.target module:attribute [pytest options]``: the generic scenarios
against your app from anywhere (an installed bulletproof, no checkout or conftest needed).

Inside this repository, ``nox -s chaos -- --target module:attribute`` does the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# not imported from harness.target.plugin: pytest must import its plugins itself (rewriting)
SCENARIOS_DIR = Path(__file__).parent / "scenarios"

PLUGINS = (
    "harness.pytest_plugin",
    "harness.fixtures",
    "harness.report.plugin",
    "harness.target.plugin",
)


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(
            "usage: python -m bulletproof.chaos module:attribute [pytest options]  "
            "(module:attribute names your harness.target.Target)",
            file=sys.stderr,
        )
        return 2
    plugins = [arg for name in PLUGINS for arg in ("-p", name)]
    return int(pytest.main([*plugins, str(SCENARIOS_DIR), "--target", argv[0], *argv[1:]]))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
