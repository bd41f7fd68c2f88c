"""The server run in-process on the test's event loop: the fast path and its hand-over to toxics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from harness.toxiproxy.link import Connection
from harness.toxiproxy.proxy import Proxy
from harness.toxiproxy.server import ToxiproxyServer
from harness.wait import wait_for_async


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def server(seed: int) -> AsyncIterator[ToxiproxyServer]:
    srv = ToxiproxyServer(host="127.0.0.1", port=0, seed=seed)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def test_links_leave_and_regain_the_fast_path(server: ToxiproxyServer) -> None:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = echo.sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=server.url) as api:
        created = await api.post(
            "/proxies", json={"name": "e", "upstream": f"127.0.0.1:{port}", "listen": ":0"}
        )
        assert created.status_code == 201
        listen = created.json()["listen"]
        assert listen.startswith("[::]:")  # Go reports a wildcard listener like this
        reader, writer = await asyncio.open_connection("127.0.0.1", int(listen.rsplit(":", 1)[1]))
        proxy: Proxy = server.api.proxies["e"]

        async def roundtrip(msg: bytes) -> float:
            start = time.monotonic()
            writer.write(msg)
            assert await reader.readexactly(len(msg)) == msg
            return time.monotonic() - start

        async def connection() -> Connection | None:
            return next(iter(proxy.connections), None)

        await roundtrip(b"hello")
        conn = (await wait_for_async(connection, timeout=2, what="the connection")).value
        assert conn.up.fast and conn.down.fast

        await api.post("/proxies/e/toxics", json={"type": "latency", "attributes": {"latency": 50}})
        assert not conn.down.fast and conn.up.fast
        assert await roundtrip(b"slow") >= 0.05 - 0.01

        assert (await api.delete("/proxies/e/toxics/latency_downstream")).status_code == 204
        assert await roundtrip(b"fast again") < 0.05
        await roundtrip(b"once more")
        assert conn.down.fast  # nothing in flight: fast path again
        writer.close()
    echo.close()
    await echo.wait_closed()
