"""A worker's own ``GET /health``: 200 while it takes jobs, 503 when it does not.

For workers that run without the API process (``python -m bulletproof worker --health-port
N``): what an orchestrator's probe asks, and what the harness samples in a user's app during a
database outage. The answer comes from :meth:`system.worker.Supervisor.health`: its session is
up and its last heartbeat write succeeded within the freshness limit the API applies to every
worker (:func:`system.promises.heartbeat_freshness_limit`).

Hand-written on asyncio streams with h11 (already a dependency) rather than served by uvicorn:
one GET route inside the worker's own event loop, and uvicorn's server installs its own SIGTERM
and SIGINT handlers, which the supervisor's graceful shutdown owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import h11

PATH = b"/health"
#: Seconds a client gets to send its request (a slow or silent client is dropped).
READ_TIMEOUT = 2.0
#: Largest request head accepted (h11 refuses a larger one: 400).
MAX_REQUEST = 8192

#: ``(healthy, details)``: what /health answers now.
HealthState = Callable[[], tuple[bool, Mapping[str, Any]]]

_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
    b'content-length: 26\r\nconnection: close\r\n\r\n{"error": "bad request"}\r\n'
)


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(4096))
            continue
        if isinstance(event, h11.Request):
            return event
        return None  # the client closed before a whole request


def answer(request: h11.Request, state: HealthState) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for one request: GET /health only."""
    path = request.target.split(b"?", 1)[0]
    if path != PATH:
        return 404, {"error": f"no such path; GET {PATH.decode()}"}
    if request.method != b"GET":
        return 405, {"error": f"method not allowed; GET {PATH.decode()}"}
    healthy, details = state()
    return (200 if healthy else 503), {"status": "ok" if healthy else "unavailable", **details}


async def _handle(
    state: HealthState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
    try:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                request = await _read_request(conn, reader)
        except h11.RemoteProtocolError:
            writer.write(_BAD_REQUEST)
            await writer.drain()
            return
        if request is None:
            return
        status, body = answer(request, state)
        data = json.dumps(body).encode() + b"\n"
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            ("connection", "close"),
        ]
        if status == 405:
            headers.append(("allow", "GET"))
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
        writer.write(conn.send(h11.Data(data=data)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass  # a client that is too slow or gone gets nothing more
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()


async def serve_health(state: HealthState, *, host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port) and answer ``GET /health`` from ``state``.

    The caller closes the returned server (``server.close()``) when the worker stops.
    """
    return await asyncio.start_server(
        lambda r, w: _handle(state, r, w), host=host, port=port, reuse_address=True
    )
