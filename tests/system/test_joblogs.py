"""Aborted jobs log one line, without the traceback that delayed their re-queue."""

from __future__ import annotations

import asyncio
import logging

import pytest
from procrastinate.exceptions import JobAborted

from system.joblogs import JOB_OUTCOME_LOGGER, AbortTracebackFilter, quiet_abort_tracebacks


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException as caught:
        info = (type(caught), caught, caught.__traceback__)
    return logging.LogRecord(
        JOB_OUTCOME_LOGGER, logging.INFO, __file__, 1, "Job x ended", None, info
    )


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), JobAborted()])
def test_a_cancelled_or_aborted_job_keeps_its_line_and_loses_its_traceback(
    exc: BaseException,
) -> None:
    record = _record(exc)
    assert AbortTracebackFilter().filter(record) is True
    assert record.exc_info is None
    assert logging.Formatter().format(record) == "Job x ended"


def test_a_real_failure_keeps_its_traceback() -> None:
    record = _record(ValueError("boom"))
    assert AbortTracebackFilter().filter(record) is True
    assert record.exc_info is not None
    assert "ValueError: boom" in logging.Formatter().format(record)


def test_installing_twice_adds_one_filter() -> None:
    target = logging.getLogger(JOB_OUTCOME_LOGGER)
    before = list(target.filters)
    try:
        quiet_abort_tracebacks()
        quiet_abort_tracebacks()
        added = [f for f in target.filters if f not in before]
        assert len([f for f in target.filters if isinstance(f, AbortTracebackFilter)]) == 1
        assert len(added) <= 1
    finally:
        target.filters[:] = before
