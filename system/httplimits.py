"""Resource limits of the API's HTTP server: body size and read time, header read time,
connections, and log volume.

uvicorn bounds the size of a request head (h11: 16 KiB) and answers 503 over
``limit_concurrency``, but it has no body-size limit and no header or body read timeout (its
keep-alive timer only runs between requests), and it keeps accepting connections until the
process runs out of file descriptors. No maintained library adds these to uvicorn, so they are
written here, small: an ASGI middleware for the body, a subclass of uvicorn's h11 protocol for
the head and the connection cap, and a logging filter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("system.api")

ASGIApp = Callable[..., Any]

#: File descriptors kept for the process itself (logs, listening socket, libraries, ...).
FD_RESERVE = 64
#: uvicorn's listen backlog. asyncio accepts up to this many connections in one go before
#: any of them reaches our protocol (which refuses those over the cap), and the refused ones
#: are closed a few loop turns later: a burst can hold about 3 x BACKLOG descriptors.
BACKLOG = 128


def _json_answer(status: int, reason: str, detail: str) -> tuple[bytes, bytes]:
    """A complete ``Connection: close`` HTTP/1.1 answer: (head, body)."""
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    return head, body


class BodyLimit:
    """ASGI middleware: read each request body up front, at most ``max_bytes`` within
    ``timeout`` seconds; otherwise answer 413 or 408 (and close) without calling the app.

    A declared ``Content-Length`` over the limit is refused before any of the body is read.
    The app then sees the same body, replayed from memory (it is small by construction).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = (
            413,
            f"the request body is over {self.max_bytes} bytes (API_MAX_BODY_BYTES)",
        )
        for name, value in scope["headers"]:
            if name == b"content-length" and int(value) > self.max_bytes:  # h11 checked digits
                await self._refuse(send, *too_large)
                return
        messages: list[dict[str, Any]] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    messages.append(message)
                    if message["type"] != "http.request":
                        break
                    size += len(message.get("body", b""))
                    if size > self.max_bytes:
                        await self._refuse(send, *too_large)
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            detail = f"the request body did not arrive within {self.timeout:g}s (API_BODY_TIMEOUT)"
            await self._refuse(send, 408, detail)
            return

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Any, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the rest of the body is never read
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def connection_cap(wanted: int, *, db_connections: int = 0) -> int:
    """``wanted``, lowered so that client connections, ``db_connections`` database
    connections and a burst of accepted-then-refused connections fit in the open-files limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE - db_connections - 3 * BACKLOG))


def limited_protocol(
    *, header_timeout: float, max_connections: int, log: logging.Logger = logger
) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request-head read timeout and a hard connection cap.

    - Head timeout: from the moment a connection is open, or a response is complete, the next
      request head must arrive within ``header_timeout`` seconds; otherwise the connection is
      closed (with a 408 if part of a head arrived). Slowloris clients cannot hold it.
    - Connection cap: a connection over ``max_connections`` gets a 503 and is closed at once,
      so file descriptors stay bounded whatever the clients do.
    """
    busy_head, busy_body = _json_answer(
        503,
        "Service Unavailable",
        f"too many connections (API_MAX_CONNECTIONS={max_connections}); retry later",
    )
    slow_head, slow_body = _json_answer(
        408,
        "Request Timeout",
        f"the request head did not arrive within {header_timeout:g}s (API_HEADER_TIMEOUT)",
    )

    class LimitedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                log.warning("connection refused: %d open (API_MAX_CONNECTIONS)", max_connections)
                transport.write(busy_head + busy_body)
                transport.close()
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request head arrived
                self._disarm()

        def on_response_complete(self) -> None:
            self._arm()  # before: a pipelined request handled inside disarms it again
            super().on_response_complete()

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being served: not waiting for a head
            if self.conn.trailing_data[0]:  # part of a head arrived: say why we close
                log.info("request head not complete within %gs: closed", header_timeout)
                self.transport.write(slow_head + slow_body)
            self.transport.close()

    return LimitedH11Protocol


class LogRateLimit(logging.Filter):
    """A token bucket for log records: ``burst`` at once, then ``rate`` per second.

    Passing records become one bounded line: a traceback is cut to its last line, line
    breaks become `` | ``, long text is cut to ``max_chars``; the next line that passes
    says how many were suppressed meanwhile.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_chars: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.rate = rate
        self.burst = burst
        self.max_chars = max_chars
        self.clock = clock
        self.tokens = float(burst)
        self.last = clock()
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            self.suppressed += 1
            return False
        self.tokens -= 1.0
        extra = ""
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            said = str(exc).strip().splitlines()
            extra += f" ({type(exc).__name__}: {said[-1] if said else ''})"
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        if self.suppressed:
            extra += f" [{self.suppressed} log lines suppressed before this one: API_LOG_RATE]"
            self.suppressed = 0
        if isinstance(record.args, tuple) and record.args:
            # keep the args (uvicorn's access formatter reads them), cut each one
            record.args = tuple(self._clip(a) if isinstance(a, str) else a for a in record.args)
            record.msg = str(record.msg) + extra.replace("%", "%%")
        else:
            text = " | ".join(record.getMessage().splitlines())
            record.msg, record.args = self._clip(text) + extra, None
        return True

    def _clip(self, text: str) -> str:
        return text if len(text) <= self.max_chars else text[: self.max_chars] + "...[cut]"


#: Loggers that write one line per request or per connection: flood material.
FLOOD_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "system.api")


def limit_log_rate(rate: float, burst: int) -> LogRateLimit:
    """Attach one shared :class:`LogRateLimit` to every logger in :data:`FLOOD_LOGGERS`."""
    limiter = LogRateLimit(rate, burst)
    for name in FLOOD_LOGGERS:
        logging.getLogger(name).addFilter(limiter)
    return limiter
