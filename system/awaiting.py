"""Where asyncio tasks are waiting: the evidence a teardown that overran its limit leaves.

A lost session's teardown is bounded (``system.promises.session_teardown_limit``); when a
step of it has to be cut short, the log says which tasks were still waiting and on what, so
the cause can be read from that run instead of guessed from a rare reproduction.
"""

from __future__ import annotations

import asyncio
import gc
import os
import types
from collections.abc import Iterable
from types import CodeType
from typing import Any

#: At most this many frames per task (the innermost ones say what it waits on).
DEPTH = 16


def await_chain(task: asyncio.Task[Any]) -> str:
    """``file.outer:line -> ... -> file.inner:line``: the coroutines ``task`` is suspended
    in, through async generators too (an ``asynccontextmanager``'s body, e.g. a pool's
    ``connection()``)."""
    frames: list[str] = []
    coro: Any = task.get_coro()
    seen: set[int] = set()
    while coro is not None and id(coro) not in seen:
        seen.add(id(coro))
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        code: CodeType | None = (
            getattr(coro, "cr_code", None)
            or getattr(coro, "gi_code", None)
            or getattr(coro, "ag_code", None)
        )
        if frame is not None:
            frames.append(f"{_where(frame.f_code)}:{frame.f_lineno}")
        elif code is not None:
            frames.append(_where(code))
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
            or _generator_behind(coro)
        )
    if len(frames) > DEPTH:
        frames = ["...", *frames[-DEPTH:]]
    return " -> ".join(frames) if frames else "(not a coroutine)"


def _where(code: CodeType) -> str:
    """``file.function`` (the file's name without ``.py``): ``pool_async.connection``."""
    return f"{os.path.splitext(os.path.basename(code.co_filename))[0]}.{code.co_name}"


def _generator_behind(awaitable: Any) -> Any:
    """The async generator an ``anext()``/``athrow()`` awaitable drives (it exposes no
    attribute for it; the garbage collector's referents name it), else None."""
    if isinstance(awaitable, types.CoroutineType | types.GeneratorType | types.AsyncGeneratorType):
        return None
    return next(
        (r for r in gc.get_referents(awaitable) if isinstance(r, types.AsyncGeneratorType)), None
    )


def describe_waiting(tasks: Iterable[asyncio.Task[Any]]) -> str:
    """One line naming each unfinished task of ``tasks`` and where it waits."""
    parts = [f"{t.get_name()} at {await_chain(t)}" for t in tasks if not t.done()]
    return "; ".join(sorted(parts)) if parts else "no task left"


def other_tasks() -> list[asyncio.Task[Any]]:
    """The running loop's unfinished tasks other than the current one."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]
