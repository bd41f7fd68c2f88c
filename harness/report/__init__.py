"""The reliability report: ``results.json`` and a self-contained ``index.html``.

Schema of ``results.json``: ``harness/report/schema.md``. Entry points: :func:`build`,
``python -m harness.report``, and the pytest plugin ``harness.report.plugin``.
"""

from harness.report.build import Built, build, summary_lines

__all__ = ["Built", "build", "summary_lines"]
