"""The embedded Toxiproxy server: HTTP API plus proxies on one asyncio event loop.

In-process use (tests, tools)::

    server = ToxiproxyServer(host="127.0.0.1", port=0, seed=1)
    await server.start()          # server.url -> "http://127.0.0.1:PORT"
    ...
    await server.close()          # closes the API, every proxy listener and connection

The harness runs it as a subprocess instead (``python -m harness.toxiproxy``, see
``harness.toxiproxy.selection``) so the proxy never shares a GIL with the code under test.
"""

from __future__ import annotations

import random

from harness.toxiproxy.api import Api
from harness.toxiproxy.http import HttpServer
from harness.toxiproxy.proxy import bind_listener, format_addr, split_host_port


class ToxiproxyServer:
    """Toxiproxy-compatible API on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8474, seed: int | None = None) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self.api = Api(random.Random(seed))
        self._http = HttpServer(self.api.handle)
        self.address = ""

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def start(self) -> None:
        """Bind the API socket (raises ``ApiError`` with Go's message if it cannot)."""
        sock, bound = await bind_listener(format_addr(self.host, self.port))
        self.address = bound
        self.host, self.port = split_host_port(bound, "listen tcp")
        self.host = self.host or "::"
        await self._http.start(sock)

    async def close(self) -> None:
        await self._http.close()
        await self.api.close()
