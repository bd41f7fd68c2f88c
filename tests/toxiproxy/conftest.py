"""Fixtures for the embedded Toxiproxy tests: one server subprocess per session, real sockets.

``toxiproxy_handle`` is the embedded server (always the embedded flavour, whatever
``TOXIPROXY_URL`` says: these tests are about it). ``tp`` is a ``toxiproxy-python`` client on it,
and every test starts with no proxies. ``upstream`` is a TCP listener whose accepted sockets the
test drives itself; ``echo`` is an echo server.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from toxiproxy import Toxiproxy
from toxiproxy.proxy import Proxy

from harness.toxiproxy.selection import ToxiproxyHandle, client_for, start_embedded


@pytest.fixture(scope="session")
def toxiproxy_handle(seed: int) -> Iterator[ToxiproxyHandle]:
    handle = start_embedded(seed=seed)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def tp(toxiproxy_handle: ToxiproxyHandle) -> Iterator[Toxiproxy]:
    """A client on the embedded server; every proxy is deleted before and after the test."""
    client = client_for(toxiproxy_handle)
    client.destroy_all()
    try:
        yield client
    finally:
        client_for(toxiproxy_handle).destroy_all()


@pytest.fixture
def api(toxiproxy_handle: ToxiproxyHandle, tp: Toxiproxy) -> Iterator[httpx.Client]:
    """Raw HTTP on the embedded server's API (for what the client cannot do)."""
    with httpx.Client(base_url=toxiproxy_handle.url, timeout=10.0) as client:
        yield client


class Upstream:
    """A listening socket; accepted connections are handed to the test."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: queue.Queue[socket.socket] = queue.Queue()
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.put(conn)

    def accept(self, timeout: float = 5.0) -> socket.socket:
        """The next connection the proxy opened to us."""
        conn = self.accepted.get(timeout=timeout)
        conn.settimeout(10.0)
        return conn

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self.conns:
            conn.close()
        self._thread.join(timeout=5)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    try:
        yield server
    finally:
        server.close()


class Echo(Upstream):
    """Echoes every byte back on every connection."""

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)
        with contextlib.suppress(OSError):
            conn.close()


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    try:
        yield server
    finally:
        server.close()


def address(proxy: Proxy) -> tuple[str, int]:
    host, port = proxy.listen.rsplit(":", 1)
    return host, int(port)


@pytest.fixture
def connect() -> Iterator[Callable[[Proxy], socket.socket]]:
    """Open a client socket to a proxy (closed after the test)."""
    opened: list[socket.socket] = []

    def _connect(proxy: Proxy) -> socket.socket:
        sock = socket.create_connection(address(proxy), timeout=10.0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opened.append(sock)
        return sock

    yield _connect
    for sock in opened:
        sock.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` bytes (fails the test on EOF)."""
    buf = bytearray()
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


def recv_all(sock: socket.socket) -> bytes:
    """Read until EOF."""
    buf = bytearray()
    while data := sock.recv(65536):
        buf += data
    return bytes(buf)


def toxics_of(api: httpx.Client, proxy: str) -> list[dict[str, Any]]:
    response = api.get(f"/proxies/{proxy}/toxics")
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()
    return result


@pytest.fixture
def helpers() -> Any:
    """Socket helpers shared by the test modules (importlib mode has no test package)."""

    class _Helpers:
        recv_exactly = staticmethod(recv_exactly)
        recv_all = staticmethod(recv_all)
        address = staticmethod(address)
        toxics_of = staticmethod(toxics_of)

    return _Helpers
