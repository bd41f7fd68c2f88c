"""The API's limits as settings, the log rate limiter (fast, no server: a fake clock)."""

from __future__ import annotations

import json
import logging

import pytest

from system.api import field_problems
from system.httplimits import LogRateLimit, connection_cap
from system.settings import SettingsError, load_settings

URL = {"PROCRASTINATE_DATABASE_URL": "postgresql://u@127.0.0.1:1/db"}


def test_api_limit_defaults() -> None:
    s = load_settings(URL)
    assert (s.api_max_body_bytes, s.api_max_connections) == (4096, 256)
    assert (s.api_header_timeout, s.api_body_timeout, s.api_keepalive_timeout) == (10, 10, 5)
    assert (s.api_log_rate, s.api_log_burst) == (20, 200)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"API_MAX_BODY_BYTES": "10"}, "API_MAX_BODY_BYTES='10' is invalid: must be an integer"),
        ({"API_MAX_CONNECTIONS": "0"}, "API_MAX_CONNECTIONS='0' is invalid"),
        ({"API_HEADER_TIMEOUT": "0"}, "API_HEADER_TIMEOUT='0' is invalid: must be a positive"),
        ({"API_BODY_TIMEOUT": "2h"}, "API_BODY_TIMEOUT='2h' is invalid"),
        ({"API_LOG_RATE": "lots"}, "API_LOG_RATE='lots' is invalid"),
    ],
)
def test_bad_api_limits_give_one_line(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({**URL, **env})
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_connection_cap_stays_under_the_open_files_limit() -> None:
    assert connection_cap(1) == 1
    assert connection_cap(10**6) < 10**6  # this process has a finite open-files limit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("uvicorn.error", logging.WARNING, "x", 1, msg, args, exc_info)


def test_log_rate_limit_burst_then_rate_and_says_what_it_suppressed() -> None:
    clock = Clock()
    limiter = LogRateLimit(rate=2, burst=3, clock=clock)
    passed = [limiter.filter(_record("line")) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    clock.now = 1.0  # two more tokens
    first = _record("after")
    assert limiter.filter(first) and limiter.filter(_record("x"))
    assert not limiter.filter(_record("x"))
    assert first.getMessage() == "after [7 log lines suppressed before this one: API_LOG_RATE]"


def test_log_lines_stay_one_bounded_line() -> None:
    limiter = LogRateLimit(rate=100, burst=100, max_chars=50)
    try:
        raise ValueError("first line\nlast line")
    except ValueError as exc:
        failing = _record("boom %s", "x" * 500, exc=exc)
    assert limiter.filter(failing)
    assert failing.exc_info is None
    text = failing.getMessage()
    assert "\n" not in text and text.endswith("(ValueError: last line)")
    assert len(text) < 120
    asyncio_style = _record("socket.accept() out of system resource\nsocket: <fd=6>")
    assert LogRateLimit(rate=1, burst=1).filter(asyncio_style)
    assert asyncio_style.getMessage() == "socket.accept() out of system resource | socket: <fd=6>"
    plain = _record("y" * 1000)
    limiter.filter(plain)
    assert len(plain.getMessage()) < 70


def test_validation_problems_are_bounded_and_always_encodable() -> None:
    errors = [
        {"loc": ("body", "\ud800" * 100), "msg": "m" * 1000, "type": "extra_forbidden", "input": 1}
    ] * 50
    problems = field_problems(errors)
    assert len(problems) == 11 and problems[-1]["type"] == "too_many_problems"
    first = problems[0]
    assert "input" not in first and len(first["msg"]) <= 200 and len(first["loc"][1]) <= 64
    json.dumps(problems, ensure_ascii=False).encode("utf-8")  # no lone surrogate left
