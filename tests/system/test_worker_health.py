"""A worker's own GET /health (system.worker_health), over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

from system import worker_health
from system.worker_health import serve_health


class State:
    def __init__(self) -> None:
        self.healthy = True

    def __call__(self) -> tuple[bool, Mapping[str, Any]]:
        return self.healthy, {"worker": "w1", "heartbeat_age": 0.2}


@pytest.fixture
async def served() -> AsyncIterator[tuple[State, str, int]]:
    state = State()
    server = await serve_health(state, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield state, f"http://127.0.0.1:{port}", port
    finally:
        server.close()
        await server.wait_closed()


async def raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


async def test_200_while_healthy_503_when_not_with_the_reasons(
    served: tuple[State, str, int],
) -> None:
    state, url, _ = served
    async with httpx.AsyncClient(base_url=url) as client:
        ok = await client.get("/health")
        assert ok.status_code == 200
        assert ok.json() == {"status": "ok", "worker": "w1", "heartbeat_age": 0.2}
        state.healthy = False
        down = await client.get("/health?verbose=1")
        assert down.status_code == 503
        assert down.json()["status"] == "unavailable"
        assert down.headers["content-type"] == "application/json"


async def test_other_paths_and_methods_get_a_clear_4xx(served: tuple[State, str, int]) -> None:
    _, url, _ = served
    async with httpx.AsyncClient(base_url=url) as client:
        missing = await client.get("/")
        assert missing.status_code == 404
        assert "GET /health" in missing.json()["error"]
        posted = await client.post("/health", content=b"x")
        assert posted.status_code == 405
        assert posted.headers["allow"] == "GET"


async def test_garbage_and_oversized_requests_get_400(served: tuple[State, str, int]) -> None:
    _, _, port = served
    assert (await raw(port, b"\x16\x03\x01 not http\r\n\r\n")).startswith(b"HTTP/1.1 400")
    huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    answer = await raw(port, huge)
    assert answer.startswith(b"HTTP/1.1 400")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"error": "bad request"}


async def test_a_silent_client_is_dropped(
    served: tuple[State, str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_health, "READ_TIMEOUT", 0.2)
    _, _, port = served
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await raw(port, b"GET /hea") == b""  # closed without an answer
    assert loop.time() - started < 0.2 + 1.0  # the default (2 s) would not pass
