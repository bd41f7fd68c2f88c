"""The server in-process on the test's event loop: the fast paths and the hand-over to toxics."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from harness.toxiproxy.link import Connection
from harness.toxiproxy.proxy import Proxy
from harness.toxiproxy.server import ToxiproxyServer
from harness.toxiproxy.splice import AVAILABLE as SPLICE
from harness.toxiproxy.splice import SplicedConnection
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

        async def spliced() -> SplicedConnection | None:
            return next(iter(proxy.spliced), None)

        await roundtrip(b"hello")
        if SPLICE:  # no toxic: zero-copy, no asyncio transports
            await wait_for_async(spliced, timeout=2, what="the spliced connection")
            assert not proxy.connections
        await roundtrip(b"x" * 300_000)  # more than a pipe holds, in flight while the toxic comes

        await api.post("/proxies/e/toxics", json={"type": "latency", "attributes": {"latency": 50}})
        conn = (await wait_for_async(connection, timeout=2, what="the connection")).value
        assert not proxy.spliced
        assert not conn.down.fast and conn.up.fast
        assert await roundtrip(b"slow") >= 0.05 - 0.01

        assert (await api.delete("/proxies/e/toxics/latency_downstream")).status_code == 204
        assert await roundtrip(b"fast again") < 0.05
        await roundtrip(b"once more")
        assert conn.down.fast  # nothing in flight: the transports' fast path again
        writer.close()
    echo.close()
    await echo.wait_closed()


@pytest.mark.skipif(not SPLICE, reason="os.splice is Linux-only")
async def test_bytes_held_in_the_pipe_survive_the_hand_over(
    server: ToxiproxyServer, seed: int
) -> None:
    """Data the zero-copy path holds when a toxic arrives is delivered first, in order."""
    received = bytearray()
    may_read = asyncio.Event()
    done = asyncio.Event()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await may_read.wait()
        while data := await reader.read(1 << 20):
            received.extend(data)
        done.set()
        writer.close()

    upstream = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    payload = random.Random(seed).randbytes(8 * 1024 * 1024)
    async with httpx.AsyncClient(base_url=server.url) as api:
        created = await api.post(
            "/proxies", json={"name": "s", "upstream": f"127.0.0.1:{port}", "listen": ":0"}
        )
        proxy: Proxy = server.api.proxies["s"]
        listen_port = int(created.json()["listen"].rsplit(":", 1)[1])
        _, writer = await asyncio.open_connection("127.0.0.1", listen_port)
        writer.write(payload)

        async def held() -> bool:
            spliced = next(iter(proxy.spliced), None)
            return spliced is not None and spliced.up.pending > 0

        await wait_for_async(held, timeout=5, what="bytes held in the pipe (sink not reading)")
        toxic = {"type": "latency", "stream": "upstream", "attributes": {"latency": 1}}
        assert (await api.post("/proxies/s/toxics", json=toxic)).status_code == 200
        assert not proxy.spliced and proxy.connections
        may_read.set()
        await writer.drain()
        writer.close()
        await asyncio.wait_for(done.wait(), 30)
    assert bytes(received) == payload
    upstream.close()
    await upstream.wait_closed()
