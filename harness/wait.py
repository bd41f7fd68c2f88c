"""Poll a condition until it holds or a deadline passes, and report how long it took.

This is the only way the project synchronises with anything: never a bare ``sleep``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The condition did not hold before the deadline."""

    def __init__(self, what: str, timeout: float, last: object = None) -> None:
        detail = f" (last value: {last!r})" if last is not None else ""
        super().__init__(f"timed out after {timeout:.2f}s waiting for {what}{detail}")
        self.what = what
        self.timeout = timeout
        self.last = last


@dataclass(frozen=True)
class Waited(Generic[T]):
    """The truthy value the condition returned and the measured wait in seconds."""

    value: T
    elapsed: float


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    ignore: tuple[type[BaseException], ...] = (),
) -> Waited[T]:
    """Call ``condition`` every ``interval`` seconds until it returns a truthy value.

    Exceptions listed in ``ignore`` count as "not yet". Raises :class:`WaitTimeout`
    naming ``what`` when ``timeout`` seconds pass first.
    """
    start = time.monotonic()
    deadline = start + timeout
    last: object = None
    while True:
        try:
            value = condition()
        except ignore as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return Waited(value, time.monotonic() - start)
        now = time.monotonic()
        if now >= deadline:
            raise WaitTimeout(what, timeout, last)
        time.sleep(min(interval, deadline - now))


async def wait_for_async(
    condition: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    ignore: tuple[type[BaseException], ...] = (),
) -> Waited[T]:
    """Async twin of :func:`wait_for` for coroutine conditions."""
    start = time.monotonic()
    deadline = start + timeout
    last: object = None
    while True:
        try:
            value = await condition()
        except ignore as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return Waited(value, time.monotonic() - start)
        now = time.monotonic()
        if now >= deadline:
            raise WaitTimeout(what, timeout, last)
        await asyncio.sleep(min(interval, deadline - now))
