"""Bounded byte channels and toxic stubs: the plumbing between toxics in a link.

This mirrors Toxiproxy's ``stream.StreamChunk`` / ``toxics.ToxicStub`` model on asyncio.
Hand-written because the semantics (interruptible receive, sleep and send, so a toxic chain
can be rewired while data flows) are Toxiproxy's own and no library offers them.

A :class:`Chan` is a FIFO of :class:`Chunk` (or ``None`` for end of stream) bounded in *bytes*: a
``put`` waits while the channel holds ``limit`` bytes or more, so memory stays bounded by the limit
plus one chunk. A :class:`Stub` runs one toxic between an input and an output channel; every wait a
toxic makes goes through the stub (``recv``, ``sleep``, ``send``) so :meth:`Stub.interrupt` can stop
it promptly without losing data.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from harness.toxiproxy.toxics import ToxicWrapper


class Chunk:
    """Bytes read from a socket, with the monotonic time they arrived (moved on by latency)."""

    __slots__ = ("data", "ts")

    def __init__(self, data: bytes, ts: float) -> None:
        self.data = data
        self.ts = ts


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


INTERRUPT: Final = _Sentinel("INTERRUPT")
"""Returned by :meth:`Stub.recv` when the stub was interrupted: the toxic must return."""
TIMEOUT: Final = _Sentinel("TIMEOUT")
"""Returned by :meth:`Stub.recv` when its timeout passed with no input."""

Item = Chunk | None


class Chan:
    """A single-consumer FIFO of chunks bounded in bytes (``None`` marks end of stream)."""

    __slots__ = ("_bytes", "_items", "_on_room", "_readers", "_writers", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Item] = deque()
        self._bytes = 0
        self._readers: list[asyncio.Future[None]] = []
        self._writers: list[asyncio.Future[None]] = []
        self._on_room: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def has_room(self) -> bool:
        return self._bytes < self.limit

    def put_nowait(self, item: Item) -> None:
        """Append regardless of the bound (callers check :meth:`has_room` for backpressure)."""
        self._items.append(item)
        if item is not None:
            self._bytes += len(item.data)
        _wake(self._readers)

    def push_front(self, item: Item) -> None:
        """Put ``item`` back at the head (a toxic returning what it took but did not pass on)."""
        self._items.appendleft(item)
        if item is not None:
            self._bytes += len(item.data)
        _wake(self._readers)

    def get_nowait(self) -> Item:
        item = self._items.popleft()
        if item is not None:
            self._bytes -= len(item.data)
        if self._bytes < self.limit:
            _wake(self._writers)
            if self._on_room is not None:
                self._on_room()
        return item

    def drain_into(self, other: Chan) -> None:
        """Move everything queued here to the end of ``other``, keeping order."""
        while self._items:
            other.put_nowait(self.get_nowait())

    def wake_readers(self) -> None:
        """Wake whoever waits to read, without an item (they re-check their condition)."""
        _wake(self._readers)

    def set_on_room(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` whenever a get leaves the channel below its limit."""
        self._on_room = callback

    def wait_readable(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._readers.append(fut)
        return fut

    def wait_room(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writers.append(fut)
        return fut

    async def get(self) -> Item:
        """Wait for and return the next item (used by the link writer, never interrupted)."""
        while not self._items:
            await self.wait_readable()
        return self.get_nowait()


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    if waiters:
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        waiters.clear()


class Stub:
    """Runs one toxic between ``input`` and ``output``; every wait is interruptible."""

    def __init__(self, input: Chan, output: Chan, rng: random.Random) -> None:
        self.input = input
        self.output = output
        self.rng = rng
        self.state: object = None
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        self._interrupted = False
        self._waiter: asyncio.Future[None] | None = None
        self._receiving = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, wrapper: ToxicWrapper) -> None:
        """Run ``wrapper``'s toxic (or a noop when the toxicity draw fails) in a new task."""
        self._interrupted = False
        self.task = asyncio.get_running_loop().create_task(self._run(wrapper))

    async def _run(self, wrapper: ToxicWrapper) -> None:
        from harness.toxiproxy.toxics import NOOP

        toxic = wrapper.toxic if self.rng.random() < wrapper.toxicity else NOOP
        await toxic.pipe(self)

    async def interrupt(self) -> bool:
        """Stop the running toxic; ``False`` when the stub is (or got) closed instead."""
        if self.closed:
            return False
        self._interrupted = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self.task is not None and not self.task.done():
            await asyncio.wait({self.task})  # never raises, even if the task was cancelled
        return not self.closed

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def close(self) -> None:
        """End the stream: the output gets end-of-stream and the stub is marked closed."""
        if not self.closed:
            self.closed = True
            self.output.put_nowait(None)

    @property
    def idle(self) -> bool:
        """Parked in :meth:`recv` with nothing held (safe to stop without losing data)."""
        return self._receiving and not self.input._items

    # -- waits for toxics --------------------------------------------------------------------
    async def recv(self, timeout: float | None = None) -> Item | _Sentinel:
        """Next input item, :data:`INTERRUPT`, or :data:`TIMEOUT` after ``timeout`` seconds."""
        if self._interrupted:
            return INTERRUPT
        if self.input._items:
            return self.input.get_nowait()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            fut = self.input.wait_readable()
            self._waiter = fut
            self._receiving = True
            handle = None
            if deadline is not None:
                handle = loop.call_at(deadline, _set_if_pending, fut)
            try:
                await fut
            finally:
                self._waiter = None
                self._receiving = False
                if handle is not None:
                    handle.cancel()
            if self._interrupted:
                return INTERRUPT
            if self.input._items:
                return self.input.get_nowait()
            if deadline is not None and loop.time() >= deadline:
                return TIMEOUT

    async def sleep(self, seconds: float) -> bool:
        """Sleep; ``False`` if interrupted first (the toxic must pass on what it holds)."""
        if self._interrupted:
            return False
        if seconds <= 0:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiter = fut
        handle = loop.call_later(seconds, _set_if_pending, fut)
        try:
            await fut
        finally:
            self._waiter = None
            handle.cancel()
        return not self._interrupted

    async def send(self, chunk: Chunk) -> None:
        """Pass ``chunk`` on, waiting for room; when interrupted it is queued anyway (no loss)."""
        out = self.output
        while not out.has_room() and not self._interrupted:
            fut = out.wait_room()
            self._waiter = fut
            try:
                await fut
            finally:
                self._waiter = None
        out.put_nowait(chunk)


def _set_if_pending(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def now() -> float:
    """The clock chunks are stamped with (the event loop's clock is monotonic too)."""
    return time.monotonic()
