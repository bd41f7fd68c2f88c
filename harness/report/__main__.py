"""``python -m harness.report [--reports-dir reports]``: re-render the report offline."""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from harness.report.build import build, summary_lines

MAX_ERROR = 2000


def junit_failures(path: Path) -> dict[str, tuple[str, str]]:
    """Failed or errored scenario tests in a junit.xml, keyed as :func:`build.apply_failures`
    wants (``test_<name>`` -> ``name``). A missing or unreadable file gives nothing."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    out: dict[str, tuple[str, str]] = {}
    for case in root.iter("testcase"):
        classname = case.get("classname") or ""
        if not classname.startswith("scenarios."):
            continue
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            continue
        module = classname.rsplit(".", 1)[-1].removeprefix("test_")
        test = (case.get("name") or "").split("[", 1)[0].removeprefix("test_") or module
        message = (problem.get("message") or "").strip()
        detail = (problem.text or "").strip()[-MAX_ERROR:]
        text = f"scenarios/test_{module}.py::{case.get('name')}: {message}"
        out[test] = (module, f"{text}\n\n{detail}" if detail else text)
    return out


def junit_skips(path: Path) -> list[dict[str, str]]:
    """Skipped scenario tests in a junit.xml: ``{scenario, test, reason}``."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return []
    out: list[dict[str, str]] = []
    for case in root.iter("testcase"):
        classname = case.get("classname") or ""
        skipped = case.find("skipped")
        if skipped is None or not classname.startswith("scenarios."):
            continue
        name = case.get("name") or ""
        test = name.split("[", 1)[0].removeprefix("test_")
        reason = (skipped.get("message") or skipped.text or "skipped").strip()
        out.append(
            {
                "scenario": test,
                "test": f"{classname.replace('.', '/')}.py::{name}",
                "reason": reason,
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild ``results.json`` and ``index.html`` from ``results/`` and ``histories/``
    (and failed scenario tests recorded in ``junit.xml``, as the pytest plugin does).

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
    junit = reports_dir / "junit.xml"
    built = build(reports_dir, failures=junit_failures(junit), skipped=junit_skips(junit))
    print("\n".join(summary_lines(built)))
    return 0 if built.doc["verdict"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
