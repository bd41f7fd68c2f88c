"""Toxiproxy's HTTP API v2: routes, handlers, the proxy collection, error bodies.

Follows Shopify/toxiproxy 2.12 (``api.go``, ``proxy_collection.go``) and the project's contract in
``shared/notes/toxiproxy-api.md``. Every response of a matched route carries
``X-Toxiproxy-Request-Id`` (unknown routes and wrong methods do not, as with gorilla/mux); errors
are ``{"error": msg, "status": code}`` + newline as text/plain (Go's ``http.Error``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import threading
import time
from typing import Any
from urllib.parse import unquote

from harness.toxiproxy import gojson
from harness.toxiproxy.http import Request, Response
from harness.toxiproxy.proxy import (
    ERR_BAD_REQUEST_BODY,
    ERR_MISSING_FIELD,
    ERR_PROXY_ALREADY_EXISTS,
    ERR_PROXY_NOT_FOUND,
    ERR_TOXIC_NOT_FOUND,
    POPULATE_ITEM,
    ApiError,
    Proxy,
    bind_listener,
    parse_proxy,
    toxic_json,
)

log = logging.getLogger("harness.toxiproxy")

VERSION = "2.12.0"
"""Reported by ``GET /version``: the Toxiproxy release whose API this server speaks (clients such
as the Ruby one parse it to choose their requests, so it carries no build tag)."""
IMPLEMENTATION_HEADER = ("X-Toxiproxy-Implementation", "bulletproof-embedded")
"""On ``GET /version``: tells this server from Go's Toxiproxy (clients ignore the header)."""

JSON = ("Content-Type", "application/json")


# -- request ids (the xid format Toxiproxy's hlog middleware uses) ---------------------------
_XID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"
_xid_lock = threading.Lock()
_xid_counter = int.from_bytes(os.urandom(3), "big")
_xid_machine = os.urandom(3)


def request_id() -> str:
    """A 20-character xid: time, machine, pid and counter, base32hex lowercase."""
    global _xid_counter
    with _xid_lock:
        _xid_counter = (_xid_counter + 1) & 0xFFFFFF
        counter = _xid_counter
    raw = (
        int(time.time()).to_bytes(4, "big")
        + _xid_machine
        + (os.getpid() & 0xFFFF).to_bytes(2, "big")
        + counter.to_bytes(3, "big")
    )
    value = int.from_bytes(raw, "big") << 4  # 96 bits -> 100 bits = 20 base32 digits
    return "".join(_XID_ALPHABET[(value >> (5 * (19 - i))) & 31] for i in range(20))


# -- responses ---------------------------------------------------------------------------------
def json_response(status: int, value: Any) -> Response:
    return Response(status, gojson.dumps(value).encode(), [JSON])


def error_response(err: ApiError) -> Response:
    body = gojson.dumps({"error": err.message, "status": err.status}) + "\n"
    return plain(err.status, body)


def plain(status: int, text: str) -> Response:
    return Response(
        status,
        text.encode(),
        [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")],
    )


_ROUTES: list[tuple[re.Pattern[str], dict[str, str]]] = [
    (re.compile(r"^/reset$"), {"POST": "reset"}),
    (re.compile(r"^/proxies$"), {"GET": "proxy_index", "POST": "proxy_create"}),
    (re.compile(r"^/populate$"), {"POST": "populate"}),
    (
        re.compile(r"^/proxies/(?P<proxy>[^/]+)$"),
        {
            "GET": "proxy_show",
            "POST": "proxy_update",
            "PATCH": "proxy_update",
            "DELETE": "proxy_delete",
        },
    ),
    (
        re.compile(r"^/proxies/(?P<proxy>[^/]+)/toxics$"),
        {"GET": "toxic_index", "POST": "toxic_create"},
    ),
    (
        re.compile(r"^/proxies/(?P<proxy>[^/]+)/toxics/(?P<toxic>[^/]+)$"),
        {
            "GET": "toxic_show",
            "POST": "toxic_update",
            "PATCH": "toxic_update",
            "DELETE": "toxic_delete",
        },
    ),
    (re.compile(r"^/version$"), {"GET": "version"}),
]


class Api:
    """The proxy collection and the handlers of every route."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()  # Toxiproxy's ProxyCollection mutex

    async def handle(self, request: Request) -> Response:
        """Route like gorilla/mux: middlewares (request id, browser check) only run on a
        matched route; an unknown path is a bare 404, a known one with another method a 405."""
        path = unquote(request.target.split("?", 1)[0], errors="surrogateescape")
        allowed = False
        for pattern, methods in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            name = methods.get(request.method)
            if name is None:
                allowed = True
                continue
            response = await self._run(request, name, match.groupdict())
            response.headers.append(("X-Toxiproxy-Request-Id", request_id()))
            return response
        if allowed:
            return Response(405)
        return plain(404, "404 page not found\n")

    async def _run(self, request: Request, name: str, params: dict[str, str]) -> Response:
        if request.headers.get("user-agent", "").startswith("Mozilla/"):
            return plain(403, "User agent not allowed\n")
        try:
            result: Response = await getattr(self, name)(request, **params)
        except ApiError as err:
            return error_response(err)
        return result

    def _get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ERR_PROXY_NOT_FOUND
        return proxy

    # -- proxies -------------------------------------------------------------------------------
    async def proxy_index(self, request: Request) -> Response:
        # Go marshals a map with its keys sorted.
        return json_response(200, {n: self.proxies[n].to_json() for n in sorted(self.proxies)})

    async def proxy_create(self, request: Request) -> Response:
        try:
            value = gojson.loads(request.body)
        except gojson.DecodeError as exc:
            raise ERR_BAD_REQUEST_BODY.joined(str(exc)) from None
        fields = parse_proxy(value, {"name": "", "listen": "", "upstream": "", "enabled": True})
        if not fields["name"]:
            raise ERR_MISSING_FIELD.joined("name")
        if not fields["upstream"]:
            raise ERR_MISSING_FIELD.joined("upstream")
        async with self.lock:
            if fields["name"] in self.proxies:
                raise ERR_PROXY_ALREADY_EXISTS
            proxy = Proxy(fields["name"], fields["listen"], fields["upstream"], self.rng)
            if fields["enabled"]:
                async with proxy.lock:
                    await proxy.start()
            self.proxies[proxy.name] = proxy
        return json_response(201, proxy.to_json())

    async def populate(self, request: Request) -> Response:
        created: list[Proxy] = []
        error: ApiError | None = None
        try:
            created = await self._populate(request.body, created)
        except ApiError as err:
            error = err
        body: dict[str, Any] = {}
        if error is not None:
            body = {"error": error.message, "status": error.status}
        body["proxies"] = [p.to_json() for p in created] or None
        return json_response(error.status if error is not None else 201, body)

    async def _populate(self, raw: bytes, created: list[Proxy]) -> list[Proxy]:
        """Validate every entry, then add or replace each; a failure keeps earlier ones."""
        try:
            value = gojson.loads(raw)
        except gojson.DecodeError as exc:
            raise ERR_BAD_REQUEST_BODY.joined(str(exc)) from None
        if value is None:
            value = []
        if not isinstance(value, list):
            raise ERR_BAD_REQUEST_BODY.joined(
                f"json: cannot unmarshal {gojson.json_kind(value)} into Go value of type "
                f"[]{POPULATE_ITEM}"
            )
        entries = []
        for item in value:
            fields = parse_proxy(
                item, {"name": "", "listen": "", "upstream": "", "enabled": None}, POPULATE_ITEM
            )
            entries.append(fields)
        for i, fields in enumerate(entries):
            if not fields["name"]:
                raise ERR_MISSING_FIELD.joined(f"name at proxy {i + 1}")
            if not fields["upstream"]:
                raise ERR_MISSING_FIELD.joined(f"upstream at proxy {i + 1}")
        async with self.lock:
            for fields in entries:
                enabled = True if fields["enabled"] is None else fields["enabled"]
                existing = self.proxies.get(fields["name"])
                if existing is not None:
                    if not await existing.differs(fields["listen"], fields["upstream"]):
                        created.append(existing)
                        continue
                    async with existing.lock:
                        await existing.stop()
                proxy = Proxy(fields["name"], fields["listen"], fields["upstream"], self.rng)
                if enabled:
                    async with proxy.lock:
                        await proxy.start()
                self.proxies[proxy.name] = proxy
                created.append(proxy)
        return created

    async def proxy_show(self, request: Request, proxy: str) -> Response:
        return json_response(200, self._get(proxy).to_json())

    async def proxy_update(self, request: Request, proxy: str) -> Response:
        target = self._get(proxy)
        try:
            value = gojson.loads(request.body)
        except gojson.DecodeError as exc:
            raise ERR_BAD_REQUEST_BODY.joined(str(exc)) from None
        async with target.lock:
            fields = parse_proxy(
                value,
                {
                    "name": target.name,
                    "listen": target.listen,
                    "upstream": target.upstream,
                    "enabled": target.enabled,
                },
            )
            await target.update(fields["listen"], fields["upstream"], fields["enabled"])
        return json_response(200, target.to_json())

    async def proxy_delete(self, request: Request, proxy: str) -> Response:
        async with self.lock:
            target = self._get(proxy)
            async with target.lock:
                await target.stop()
            del self.proxies[proxy]
        return Response(204)

    async def reset(self, request: Request) -> Response:
        for proxy in list(self.proxies.values()):
            async with proxy.lock:
                await proxy.start()
                await proxy.reset_toxics()
        return Response(204)

    # -- toxics --------------------------------------------------------------------------------
    async def toxic_index(self, request: Request, proxy: str) -> Response:
        return json_response(200, [toxic_json(t) for t in self._get(proxy).toxics()])

    async def toxic_create(self, request: Request, proxy: str) -> Response:
        target = self._get(proxy)
        async with target.lock:
            wrapper = await target.add_toxic(request.body)
        return json_response(200, toxic_json(wrapper))

    async def toxic_show(self, request: Request, proxy: str, toxic: str) -> Response:
        wrapper = self._get(proxy).find_toxic(toxic)
        if wrapper is None:
            raise ERR_TOXIC_NOT_FOUND
        return json_response(200, toxic_json(wrapper))

    async def toxic_update(self, request: Request, proxy: str, toxic: str) -> Response:
        target = self._get(proxy)
        async with target.lock:
            wrapper = await target.update_toxic(toxic, request.body)
        return json_response(200, toxic_json(wrapper))

    async def toxic_delete(self, request: Request, proxy: str, toxic: str) -> Response:
        target = self._get(proxy)
        async with target.lock:
            await target.remove_toxic(toxic)
        return Response(204)

    async def version(self, request: Request) -> Response:
        body = f'{{"version": "{VERSION}"}}\n'.encode()
        headers = [("Content-Type", "application/json;charset=utf-8"), IMPLEMENTATION_HEADER]
        return Response(200, body, headers)

    # -- shutdown ------------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop every proxy: listeners and connections."""
        for proxy in list(self.proxies.values()):
            async with proxy.lock:
                await proxy.stop()


__all__ = ["VERSION", "Api", "bind_listener"]
