"""Root conftest: loads the harness's pytest plugin for tests and scenarios alike."""

pytest_plugins = [
    "harness.pytest_plugin",
    "harness.fixtures",
    "harness.report.plugin",
    "harness.target.plugin",
    "harness.randomized.plugin",
]
