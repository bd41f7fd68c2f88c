"""pytest plugin: after any run that included scenarios, write the report.

- Points ``--junitxml`` at ``<reports-dir>/junit.xml`` when scenarios are among the test paths
  and no junit path was given, so a single ``pytest scenarios/test_x.py`` writes it too.
- At session end (also when scenarios failed, also for one scenario) builds
  ``<reports-dir>/results.json`` and ``index.html`` from the result files written during this
  session, folding in scenarios whose test failed before writing a result.
- Prints a short summary with the report's path. Does nothing when no scenario ran.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path, PurePosixPath

import pytest

from harness.report.build import Built, build, summary_lines
from harness.vocabulary import DEFECT_MARK

SCENARIOS_DIR = "scenarios"
#: A test whose result is not named after the test (a random run: ``random_<seed>``) says its
#: result's name in its ``user_properties``: ``(SCENARIO_PROPERTY, name)``.
SCENARIO_PROPERTY = "bulletproof_scenario"
MAX_ERROR = 2000


def targets_scenarios(config: pytest.Config) -> bool:
    """Whether a command-line path is, contains or lies inside ``<rootdir>/scenarios``, or is
    (or lies in) another ``scenarios`` folder such as the generic ones of ``--target``."""
    scenarios = (config.rootpath / SCENARIOS_DIR).resolve()
    base = config.invocation_params.dir
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == scenarios or scenarios in path.parents or path in scenarios.parents:
            return True
        if SCENARIOS_DIR in (path.name, path.parent.name):  # e.g. harness/target/scenarios
            return True
    return False


def scenario_test(nodeid: str) -> tuple[str, str] | None:
    """``scenarios/test_worker_crash.py::test_x[p]`` -> ``("worker_crash", "x")``; ``None``
    outside a ``scenarios`` folder: the repository's own ones, or the generic scenarios run
    against a user's app (``harness/target/scenarios/``, also from an installed package).
    By convention a scenario test is named ``test_<scenario>``; a mutant test's parameter names
    its scenario (``test_x_mutant[x__defect_y]`` -> ``x__defect_y``)."""
    path, _, rest = nodeid.partition("::")
    if PurePosixPath(path).parent.name != SCENARIOS_DIR:
        return None
    module = Path(path).stem.removeprefix("test_")
    name, _, param = rest.split("::")[-1].partition("[") if rest else (module, "", "")
    param = param.removesuffix("]")
    if DEFECT_MARK in param:  # test_x_mutant[x__defect_y]: the parameter names the scenario
        return module, param
    test = name.removeprefix("test_")
    return module, test or module


def failure_text(report: pytest.TestReport) -> str:
    """The failure's one-line cause (pytest's crash message) then the end of the traceback."""
    crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", None)
    text = report.longreprtext.strip()
    headline = str(crash).strip().splitlines()[0] if crash else ""
    if not headline:
        lines = [line for line in text.splitlines() if line.strip()]
        headline = lines[-1].strip() if lines else f"{report.when} failed"
    tail = text[-MAX_ERROR:]
    return f"{headline}\n\n{tail}" if tail and tail != headline else headline


def skip_reason(report: pytest.TestReport) -> str:
    """Why pytest skipped a test (its ``pytest.skip`` message)."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr or "skipped")


class ReportPlugin:
    """Collects scenario test outcomes and builds the report when the session ends."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.started = time.time()
        self.ran: set[str] = set()
        self.failures: dict[str, tuple[str, str]] = {}
        self.skipped: list[dict[str, str]] = []
        self.built: Built | str | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        found = scenario_test(report.nodeid)
        if found is None:
            return
        module, test = found
        named = dict(report.user_properties).get(SCENARIO_PROPERTY)
        test = str(named) if named else test
        self.ran.add(report.nodeid)
        if report.skipped:
            self.skipped.append(
                {"scenario": test, "test": report.nodeid, "reason": skip_reason(report)}
            )
        if report.failed:
            entry = f"{report.nodeid} ({report.when}): {failure_text(report)}"
            prior = self.failures.get(test)
            self.failures[test] = (module, f"{prior[1]}\n\n{entry}" if prior else entry)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.ran:
            return
        reports = Path(self.config.getoption("--reports-dir"))
        try:
            self.built = build(
                reports,
                run=self.run_info(),
                since=self.started - 0.001,
                failures=self.failures,
                skipped=self.skipped,
            )
        except Exception as exc:  # a broken report must not hide the test results themselves
            self.built = f"bulletproof: could not build the report in {reports}: {exc!r}"

    def run_info(self) -> dict[str, object]:
        """What this session knows about the run; the rest comes from the result files."""
        from harness.pytest_plugin import SEED_KEY

        args = [str(a) for a in self.config.invocation_params.args]
        return {
            "seed": self.config.stash.get(SEED_KEY, None),
            "backend": self.config.getoption("--backend"),
            "profile": self.config.getoption("--profile"),
            "started_at": self.started,
            "finished_at": time.time(),
            "command": shlex.join(["pytest", *args]),
        }

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.built is None:
            return
        terminalreporter.write_sep("=", "bulletproof reliability report")
        if isinstance(self.built, str):
            terminalreporter.write_line(self.built, red=True)
            return
        verdict = self.built.doc["verdict"]
        colour = {"pass": "green", "fail": "red"}.get(verdict, "yellow")
        for n, line in enumerate(summary_lines(self.built)):
            terminalreporter.write_line(line, **({colour: True} if n == 0 else {}))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: the junitxml plugin reads config.option.xmlpath in its own pytest_configure.
    if hasattr(config, "workerinput"):
        return
    config.pluginmanager.register(ReportPlugin(config), "bulletproof-report")
    if not getattr(config.option, "xmlpath", None) and targets_scenarios(config):
        config.option.xmlpath = str(Path(config.getoption("--reports-dir")) / "junit.xml")
