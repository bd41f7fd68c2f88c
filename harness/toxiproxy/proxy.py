"""Proxies: a listener, the connections it accepted, and its toxic chains (Toxiproxy semantics).

Errors meant for API clients are raised as :class:`ApiError` with Toxiproxy's message and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import random
import socket
from typing import Any

from harness.toxiproxy import gojson
from harness.toxiproxy.link import NOOP_WRAPPER, Connection, Side
from harness.toxiproxy.splice import AVAILABLE as SPLICE
from harness.toxiproxy.splice import SplicedConnection
from harness.toxiproxy.toxics import (
    DOWNSTREAM,
    REGISTRY,
    UPSTREAM,
    ToxicWrapper,
    parse_direction,
)

log = logging.getLogger("harness.toxiproxy")


class ApiError(Exception):
    """An error the API reports as ``{"error": message, "status": status}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def joined(self, detail: str) -> ApiError:
        """Toxiproxy's ``joinError``: ``"<message>: <detail>"`` with the same status."""
        return ApiError(f"{self.message}: {detail}", self.status)


ERR_BAD_REQUEST_BODY = ApiError("bad request body", 400)
ERR_MISSING_FIELD = ApiError("missing required field", 400)
ERR_PROXY_NOT_FOUND = ApiError("proxy not found", 404)
ERR_PROXY_ALREADY_EXISTS = ApiError("proxy already exists", 409)
ERR_INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
ERR_INVALID_TOXIC_TYPE = ApiError("invalid toxic type", 400)
ERR_TOXIC_ALREADY_EXISTS = ApiError("toxic already exists", 409)
ERR_TOXIC_NOT_FOUND = ApiError("toxic not found", 404)

UPDATE_STRUCT = (
    'struct { Attributes interface {} "json:\\"attributes\\""; '
    'Toxicity float32 "json:\\"toxicity\\"" }'
)
"""Go's anonymous struct a toxic update decodes into, as its type errors name it."""
POPULATE_ITEM = 'struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'
PROXY_FIELDS = {"name": "string", "listen": "string", "upstream": "string", "enabled": "bool"}
WRAPPER_FIELDS = {
    "attributes": "object:toxics.NoopToxic",
    "name": "string",
    "type": "string",
    "stream": "string",
    "toxicity": "float32",
}


def split_host_port(address: str, op: str) -> tuple[str, int]:
    """Go's ``net.SplitHostPort`` plus a numeric port, with Go-style error text.

    ``op`` prefixes errors as Go's ``OpError`` does (``listen tcp``); ``""`` gives the bare text
    of ``net.ResolveTCPAddr``. An empty address means every interface and a free port, as in
    ``net.Listen("tcp", "")``.
    """
    prefix = f"{op}: " if op else ""
    if address == "":
        return "", 0
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ApiError(f"{prefix}address {address}: missing ']' in address", 500)
        host, rest = address[1:end], address[end + 1 :]
        if not rest.startswith(":"):
            raise ApiError(f"{prefix}address {address}: missing port in address", 500)
        port_text = rest[1:]
    else:
        if ":" not in address:
            raise ApiError(f"{prefix}address {address}: missing port in address", 500)
        host, port_text = address.rsplit(":", 1)
        if ":" in host:
            raise ApiError(f"{prefix}address {address}: too many colons in address", 500)
    if port_text == "":
        port = 0
    elif port_text.isdigit() and port_text.isascii():
        port = int(port_text)
        if port > 65535:
            raise ApiError(f"{prefix}address {port_text}: invalid port", 500)
    else:
        raise ApiError(f"{prefix}lookup tcp/{port_text}: unknown port", 500)
    return host, port


async def resolve_tcp_addr(address: str) -> str:
    """Go's ``net.ResolveTCPAddr("tcp", address).String()``: the first IPv4 address of a host
    name (else its first IPv6), ``:port`` for an empty host. Raises ``ApiError`` (500) with Go's
    text, e.g. ``address bad: missing port in address``."""
    host, port = split_host_port(address, "")
    if host == "":
        return f":{port}"
    try:
        return format_addr(str(ipaddress.ip_address(host)), port)
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ApiError(f"lookup {host}: no such host", 500) from None
    v4 = [i for i in infos if i[0] == socket.AF_INET]
    return format_addr(str((v4 or infos)[0][4][0]), port)


def format_addr(host: str, port: int) -> str:
    """Go's ``TCPAddr.String``: ``1.2.3.4:5`` or ``[::1]:5``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _go_errno_text(exc: OSError) -> str:
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


async def bind_listener(listen: str) -> tuple[socket.socket, str]:
    """Bind and listen like ``net.Listen("tcp", listen)``; returns the socket and bound address."""
    host, port = split_host_port(listen, "listen tcp")
    loop = asyncio.get_running_loop()
    wildcard = host in ("", "0.0.0.0", "::")
    candidates: list[tuple[int, str]] = []
    if wildcard:
        candidates = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
    else:
        try:
            ip = ipaddress.ip_address(host)
            candidates = [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, host)]
        except ValueError:
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError):
                raise ApiError(f"listen tcp: lookup {host}: no such host", 500) from None
            v4 = [(int(i[0]), str(i[4][0])) for i in infos if i[0] == socket.AF_INET]
            v6 = [(int(i[0]), str(i[4][0])) for i in infos if i[0] == socket.AF_INET6]
            candidates = (v4 or v6)[:1]
    last: OSError | None = None
    # Go names the address it tried: resolved for a host name, as given for a wildcard.
    tried = format_addr(host, port)
    for family, addr in candidates:
        if not wildcard:
            tried = format_addr(addr, port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and wildcard:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((addr, port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            last = exc
            if wildcard and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                continue
            break
        bound = sock.getsockname()
        return sock, format_addr(str(bound[0]), int(bound[1]))
    assert last is not None
    raise ApiError(f"listen tcp {tried}: bind: {_go_errno_text(last)}", 500) from None


def _nodelay(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Proxy:
    """One named proxy (Toxiproxy's ``Proxy`` plus its ``ToxicCollection``)."""

    def __init__(self, name: str, listen: str, upstream: str, rng: random.Random) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.rng = rng
        self.chains: list[list[ToxicWrapper]] = [[NOOP_WRAPPER], [NOOP_WRAPPER]]
        self.connections: set[Connection] = set()  # on asyncio transports (toxic path)
        self.spliced: set[SplicedConnection] = set()  # without toxics: zero-copy
        self.lock = asyncio.Lock()  # serialises start/stop/update and chain edits
        self._listener: socket.socket | None = None
        self._dials: set[asyncio.Task[None]] = set()
        self._pending: set[socket.socket] = set()

    # -- JSON ----------------------------------------------------------------------------------
    def toxics(self) -> list[ToxicWrapper]:
        return self.chains[UPSTREAM][1:] + self.chains[DOWNSTREAM][1:]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "Logger": {},  # Go marshals the proxy's exported *zerolog.Logger as an empty object
            "toxics": [toxic_json(t) for t in self.toxics()],
        }

    # -- lifecycle (callers hold self.lock) ----------------------------------------------------
    async def start(self) -> None:
        if self.enabled:
            return
        sock, bound = await bind_listener(self.listen)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept_ready)
        self._listener = sock
        self.listen = bound
        self.enabled = True
        log.info("proxy %s listening on %s -> %s", self.name, self.listen, self.upstream)

    async def stop(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        for task in list(self._dials):
            task.cancel()
        for sock in list(self._pending):
            sock.close()
        self._pending.clear()
        for spliced in list(self.spliced):
            spliced.abort()
        self.spliced.clear()
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()
        log.info("proxy %s stopped", self.name)

    async def differs(self, listen: str, upstream: str) -> bool:
        """Toxiproxy's ``Proxy.Differs``: the resolved ``listen`` or the upstream changed.

        Raises ``ApiError`` (500) for a ``listen`` that does not resolve, before anything changes.
        """
        resolved = await resolve_tcp_addr(listen)
        return resolved != self.listen or upstream != self.upstream

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        """Toxiproxy's ``Proxy.Update``: address changes restart, then apply ``enabled``."""
        if await self.differs(listen, upstream):
            await self.stop()
            self.listen = listen
            self.upstream = upstream
        if enabled != self.enabled:
            if enabled:
                await self.start()
            else:
                await self.stop()

    # -- connections ---------------------------------------------------------------------------
    def _accept_ready(self) -> None:
        """Accept what the backlog holds; dial the upstream for each client."""
        loop = asyncio.get_running_loop()
        for _ in range(64):
            if self._listener is None:
                return
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: the client waits
                log.warning("proxy %s: accept failed: %s", self.name, exc)
                return
            client.setblocking(False)
            _nodelay(client)
            self._pending.add(client)
            task = loop.create_task(self._dial(client))
            self._dials.add(task)
            task.add_done_callback(self._dials.discard)

    async def _connect_upstream(self) -> socket.socket:
        host, port = split_host_port(self.upstream, "dial tcp")
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host or "localhost", port, type=socket.SOCK_STREAM)
        last: OSError = OSError(f"no address for {self.upstream}")
        for family, kind, proto, _, addr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, addr)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            except BaseException:
                sock.close()
                raise
            _nodelay(sock)
            return sock
        raise last

    async def _dial(self, client: socket.socket) -> None:
        try:
            upstream = await self._connect_upstream()
        except (OSError, ApiError) as exc:
            log.warning("proxy %s: cannot reach upstream %s: %s", self.name, self.upstream, exc)
            self._pending.discard(client)
            client.close()
            return
        except asyncio.CancelledError:
            self._pending.discard(client)
            client.close()
            raise
        self._pending.discard(client)
        if not self.enabled or client.fileno() < 0:
            client.close()
            upstream.close()
            return
        if SPLICE and len(self.chains[UPSTREAM]) == 1 and len(self.chains[DOWNSTREAM]) == 1:
            try:
                spliced = SplicedConnection(client, upstream, self.spliced.discard)
            except OSError as exc:  # no pipe (out of descriptors): the transport path instead
                log.warning("proxy %s: no zero-copy path: %s", self.name, exc)
            else:
                self.spliced.add(spliced)
                spliced.start()
                return
        loop = asyncio.get_running_loop()
        client_side, upstream_side = Side(), Side()
        try:
            await loop.connect_accepted_socket(lambda: client_side, sock=client)
            await loop.connect_accepted_socket(lambda: upstream_side, sock=upstream)
        except OSError as exc:
            log.warning("proxy %s: connection lost while set up: %s", self.name, exc)
            client_side.abort()
            upstream_side.abort()
            client.close()
            upstream.close()
            return
        self._join(client_side, upstream_side, opened=True)

    def _join(self, client: Side, upstream: Side, *, opened: bool) -> None:
        """Run a connection on the toxic path with the current chains."""
        if not self.enabled or client.lost:
            client.abort()
            upstream.abort()
            return
        conn = Connection(self, client, upstream)
        self.connections.add(conn)
        conn.start(self.chains[UPSTREAM], self.chains[DOWNSTREAM], opened=opened)

    async def _upgrade(self, spliced: SplicedConnection) -> None:
        sides = await spliced.upgrade(Side)
        if sides is not None:
            self._join(*sides, opened=False)

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)

    def _links(self, direction: int) -> list[Any]:
        return [c.link(direction) for c in list(self.connections) if not c.closed]

    # -- toxics (callers hold self.lock) -------------------------------------------------------
    def find_toxic(self, name: str) -> ToxicWrapper | None:
        for chain in self.chains:
            for wrapper in chain[1:]:
                if wrapper.name == name:
                    return wrapper
        return None

    async def add_toxic(self, body: bytes) -> ToxicWrapper:
        """Toxiproxy's ``AddToxicJson``: stream, then type, then name clash, then attributes."""
        fields: dict[str, Any] = {"stream": "downstream", "toxicity": 1.0, "name": "", "type": ""}
        try:
            value = gojson.loads(body)
            gojson.decode_struct(value, WRAPPER_FIELDS, fields, "toxics.ToxicWrapper")
        except gojson.DecodeError as exc:
            raise ERR_BAD_REQUEST_BODY.joined(str(exc)) from None
        direction = parse_direction(fields["stream"])
        if direction is None:
            raise ERR_INVALID_STREAM
        name = fields["name"] or f"{fields['type']}_{fields['stream']}"
        cls = REGISTRY.get(fields["type"])
        if cls is None:
            raise ERR_INVALID_TOXIC_TYPE
        if self.find_toxic(name) is not None:
            raise ERR_TOXIC_ALREADY_EXISTS
        attrs: dict[str, Any] = {}
        try:
            gojson.decode_struct(
                fields.get("attributes"), cls.fields, attrs, cls.go_struct, "attributes."
            )
        except gojson.DecodeError as exc:
            raise ERR_BAD_REQUEST_BODY.joined(str(exc)) from None
        wrapper = ToxicWrapper(
            name=name,
            type=fields["type"],
            stream=fields["stream"],
            toxicity=gojson.to_float32(float(fields["toxicity"])),
            toxic=cls(**attrs),
            direction=direction,
        )
        chain = self.chains[direction]
        wrapper.index = len(chain)
        chain.append(wrapper)
        links = self._links(direction)  # before the spliced ones join the toxic path
        await asyncio.gather(
            *(link.add_toxic(wrapper, chain) for link in links),
            *(self._upgrade(spliced) for spliced in list(self.spliced)),
        )
        return wrapper

    async def update_toxic(self, name: str, body: bytes) -> ToxicWrapper:
        """Toxiproxy's ``UpdateToxicJson``: partial attributes and toxicity."""
        wrapper = self.find_toxic(name)
        if wrapper is None:
            raise ERR_TOXIC_NOT_FOUND
        toxic = wrapper.toxic
        attrs = dict(toxic.attrs)
        fields: dict[str, Any] = {"toxicity": wrapper.toxicity}
        try:
            value = gojson.loads(body)
            gojson.decode_struct(
                value,
                {"attributes": f"object:toxics.{toxic.go_struct}", "toxicity": "float32"},
                fields,
                UPDATE_STRUCT,
                struct_name="",
            )
            gojson.decode_struct(
                fields.get("attributes"), type(toxic).fields, attrs, toxic.go_struct, "attributes."
            )
        except gojson.DecodeError as exc:
            raise ERR_BAD_REQUEST_BODY.joined(str(exc)) from None
        wrapper.toxic = type(toxic)(**attrs)
        wrapper.toxicity = gojson.to_float32(float(fields["toxicity"]))
        links = self._links(wrapper.direction)
        await asyncio.gather(*(link.update_toxic(wrapper) for link in links))
        return wrapper

    async def remove_toxic(self, name: str) -> None:
        wrapper = self.find_toxic(name)
        if wrapper is None:
            raise ERR_TOXIC_NOT_FOUND
        await self._chain_remove(wrapper)

    async def reset_toxics(self) -> None:
        for chain in self.chains:
            while len(chain) > 1:
                await self._chain_remove(chain[1])

    async def _chain_remove(self, wrapper: ToxicWrapper) -> None:
        chain = self.chains[wrapper.direction]
        index = wrapper.index
        del chain[index]
        for i in range(index, len(chain)):
            chain[i].index = i
        prev = chain[index - 1]
        links = self._links(wrapper.direction)
        await asyncio.gather(*(link.remove_toxic(wrapper, index, prev) for link in links))
        wrapper.index = -1


def toxic_json(wrapper: ToxicWrapper) -> dict[str, Any]:
    data = wrapper.to_json()
    data["toxicity"] = gojson.Float32(wrapper.toxicity)
    return data


def parse_proxy(
    value: Any, defaults: dict[str, Any], go_type: str = "toxiproxy.Proxy"
) -> dict[str, Any]:
    """Decode a proxy body over ``defaults`` (raises the 400 ``bad request body: ...``)."""
    fields = dict(defaults)
    struct_name = "" if go_type == POPULATE_ITEM else None
    try:
        gojson.decode_struct(value, PROXY_FIELDS, fields, go_type, struct_name=struct_name)
    except gojson.DecodeError as exc:
        raise ERR_BAD_REQUEST_BODY.joined(str(exc)) from None
    return fields
