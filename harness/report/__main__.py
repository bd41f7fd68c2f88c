"""``python -m harness.report [--reports-dir reports]``: re-render the report offline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.report.build import build, summary_lines


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild ``results.json`` and ``index.html`` from ``results/`` and ``histories/``.

    Exit status: 0 when the overall verdict is pass, 1 on fail or unknown, 2 on bad input.
    """
    parser = argparse.ArgumentParser(
        prog="python -m harness.report",
        description="Rebuild results.json and index.html from <reports-dir>/results/*.json "
        "and <reports-dir>/histories/*.jsonl.",
    )
    parser.add_argument("--reports-dir", default="reports", type=Path, help="default: reports")
    args = parser.parse_args(argv)
    reports_dir: Path = args.reports_dir
    results_dir = reports_dir / "results"
    if not results_dir.is_dir() or not any(results_dir.glob("*.json")):
        print(
            f"harness.report: no scenario results in {results_dir}; run scenarios first "
            "(e.g. nox -s chaos) or pass --reports-dir",
            file=sys.stderr,
        )
        return 2
    built = build(reports_dir)
    print("\n".join(summary_lines(built)))
    return 0 if built.doc["verdict"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
