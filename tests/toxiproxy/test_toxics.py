"""Toxic behaviour against real sockets, with Toxiproxy's own tolerances (about 10 ms).

Timing bounds: never earlier than configured (minus ``TOL``), and never later than configured
plus ``TOL + LOAD``. ``LOAD`` is the one loosening: these machines have 2 cores shared with other
engineers' test runs, so a wake-up can be late by tens of milliseconds; it is never early.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from toxiproxy import Toxiproxy
from toxiproxy.proxy import Proxy

from harness.toxiproxy.selection import ToxiproxyHandle
from harness.wait import wait_for

TOL = 0.010
LOAD = 0.040
Connect = Callable[[Proxy], socket.socket]


def assert_about(actual: float, expected: float, spread: float = 0.0) -> None:
    assert expected - spread - TOL <= actual <= expected + spread + TOL + LOAD, (
        f"took {actual * 1000:.1f} ms, expected {expected * 1000:.0f} ± {spread * 1000:.0f} ms"
    )


def proxied(tp: Toxiproxy, upstream: Any, name: str = "p") -> Proxy:
    return tp.create(upstream=upstream.address, name=name)


def pair(proxy: Proxy, connect: Connect, upstream: Any) -> tuple[socket.socket, socket.socket]:
    client = connect(proxy)
    return client, upstream.accept()


def latency_round(
    client: socket.socket,
    server: socket.socket,
    helpers: Any,
    up: tuple[int, int],
    down: tuple[int, int],
) -> None:
    """Like Toxiproxy's doLatencyRound: a 32 KiB message each way, timed per direction."""
    msg = b"hello world " + b"a" * 32 * 1024 + b"\n"
    start = time.monotonic()
    client.sendall(msg)
    assert helpers.recv_exactly(server, len(msg)) == msg
    assert_about(time.monotonic() - start, up[0] / 1000, up[1] / 1000)
    start = time.monotonic()
    server.sendall(msg)
    assert helpers.recv_exactly(client, len(msg)) == msg
    assert_about(time.monotonic() - start, down[0] / 1000, down[1] / 1000)


def test_passthrough_keeps_data_intact(
    tp: Toxiproxy, echo: Any, connect: Connect, helpers: Any
) -> None:
    proxy = proxied(tp, echo)
    client = connect(proxy)
    payload = os.urandom(4 * 1024 * 1024)
    client.sendall(payload[:1000])
    assert helpers.recv_exactly(client, 1000) == payload[:1000]
    # Bigger than every buffer on the way: needs reads interleaved with writes.
    received = bytearray()
    client.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 20
    while len(received) < len(payload) and time.monotonic() < deadline:
        want_write = [client] if sent < len(payload) else []
        readable, writable, _ = select.select([client], want_write, [], 5)
        if writable:
            with contextlib.suppress(BlockingIOError):
                sent += client.send(payload[sent : sent + 65536])
        if readable:
            received += client.recv(1 << 20)
    assert bytes(received) == payload


@pytest.mark.parametrize(
    ("up", "down"),
    [((100, 0), (0, 0)), ((0, 0), (100, 0)), ((100, 20), (50, 10)), ((0, 0), (0, 0))],
    ids=["upstream", "downstream", "both-jitter", "zero"],
)
def test_latency_per_direction(
    tp: Toxiproxy,
    upstream: Any,
    connect: Connect,
    helpers: Any,
    up: tuple[int, int],
    down: tuple[int, int],
) -> None:
    proxy = proxied(tp, upstream)
    client, server = pair(proxy, connect, upstream)
    proxy.add_toxic(
        type="latency", stream="upstream", attributes={"latency": up[0], "jitter": up[1]}
    )
    proxy.add_toxic(type="latency", attributes={"latency": down[0], "jitter": down[1]})
    latency_round(client, server, helpers, up, down)
    latency_round(client, server, helpers, up, down)


def test_two_latency_toxics_add_up(
    tp: Toxiproxy, upstream: Any, connect: Connect, helpers: Any
) -> None:
    proxy = proxied(tp, upstream)
    client, server = pair(proxy, connect, upstream)
    for name in ("l1", "l2"):
        proxy.add_toxic(type="latency", name=name, stream="upstream", attributes={"latency": 100})
    latency_round(client, server, helpers, (200, 0), (0, 0))


def _past(due: float) -> Callable[[], bool]:
    return lambda: time.monotonic() >= due


def test_latency_delays_do_not_add_up(
    tp: Toxiproxy, upstream: Any, connect: Connect, helpers: Any
) -> None:
    """Chunks sent 20 ms apart each leave 100 ms after they came, not 100 ms after each other."""
    proxy = proxied(tp, upstream)
    client, server = pair(proxy, connect, upstream)
    proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 100})
    start = time.monotonic()
    for i in range(5):
        client.sendall(b"%d" % i)
        wait_for(_past(start + 0.02 * (i + 1)), timeout=1, what="the next send", interval=0.002)
    assert helpers.recv_exactly(server, 5) == b"01234"
    assert_about(time.monotonic() - start, 0.100 + 0.08)


def test_toxics_apply_to_open_connections(
    tp: Toxiproxy, echo: Any, connect: Connect, helpers: Any
) -> None:
    proxy = proxied(tp, echo)
    client = connect(proxy)
    client.sendall(b"x")
    assert helpers.recv_exactly(client, 1) == b"x"
    proxy.add_toxic(type="latency", attributes={"latency": 100})
    start = time.monotonic()
    client.sendall(b"y")
    assert helpers.recv_exactly(client, 1) == b"y"
    assert_about(time.monotonic() - start, 0.100)
    proxy.destroy_toxic("latency_downstream")
    start = time.monotonic()
    client.sendall(b"z")
    assert helpers.recv_exactly(client, 1) == b"z"
    assert_about(time.monotonic() - start, 0.0)


def test_bandwidth_paces(tp: Toxiproxy, upstream: Any, connect: Connect, helpers: Any) -> None:
    """480 KB at 1000 KB/s takes 480 ms (Toxiproxy's bandwidth test)."""
    proxy = proxied(tp, upstream)
    client, server = pair(proxy, connect, upstream)
    proxy.add_toxic(type="bandwidth", attributes={"rate": 1000})
    payload = os.urandom(480_000)
    start = time.monotonic()
    server.sendall(payload)
    assert helpers.recv_exactly(client, len(payload)) == payload
    assert_about(time.monotonic() - start, 0.480)


def test_bandwidth_zero_stalls_but_keeps_open(
    tp: Toxiproxy, upstream: Any, connect: Connect, helpers: Any
) -> None:
    proxy = proxied(tp, upstream)
    client, server = pair(proxy, connect, upstream)
    proxy.add_toxic(type="bandwidth", attributes={"rate": 0})
    server.sendall(b"stuck")
    client.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.recv(10)
    client.settimeout(5)
    proxy.destroy_toxic("bandwidth_downstream")
    assert helpers.recv_exactly(client, 5) == b"stuck"


def test_slow_close_holds_the_close(
    tp: Toxiproxy, upstream: Any, connect: Connect, helpers: Any
) -> None:
    proxy = proxied(tp, upstream)
    client, server = pair(proxy, connect, upstream)
    proxy.add_toxic(type="slow_close", attributes={"delay": 200})
    server.sendall(b"bye")
    assert helpers.recv_exactly(client, 3) == b"bye"
    start = time.monotonic()
    server.close()
    assert client.recv(10) == b""
    assert_about(time.monotonic() - start, 0.200)


def test_timeout_closes_after_silence(tp: Toxiproxy, upstream: Any, connect: Connect) -> None:
    proxy = proxied(tp, upstream)
    client, server = pair(proxy, connect, upstream)
    proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 200})
    start = time.monotonic()
    client.sendall(b"dropped")  # restarts the timer
    assert client.recv(10) == b""
    assert_about(time.monotonic() - start, 0.200)
    server.settimeout(5)
    assert server.recv(10) == b""  # nothing got through; the upstream side was closed too


def test_timeout_zero_blackholes_until_removed(
    tp: Toxiproxy, upstream: Any, connect: Connect, api: httpx.Client
) -> None:
    proxy = proxied(tp, upstream)
    client, server = pair(proxy, connect, upstream)
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    server.sendall(b"lost")
    client.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.recv(10)
    client.settimeout(5)
    proxy.destroy_toxic("timeout_downstream")
    assert client.recv(10) == b""  # removing a timeout toxic closes what it held
    # /reset removes it the same way
    client2, _server2 = pair(proxy, connect, upstream)
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    assert api.post("/reset").status_code == 204
    assert client2.recv(10) == b""


def test_toxicity_zero_passes_and_one_applies(
    tp: Toxiproxy, upstream: Any, connect: Connect, helpers: Any
) -> None:
    proxy = proxied(tp, upstream)
    proxy.add_toxic(type="timeout", toxicity=0.0, attributes={"timeout": 0})
    client, server = pair(proxy, connect, upstream)
    server.sendall(b"passes")
    assert helpers.recv_exactly(client, 6) == b"passes"
    proxy.destroy_toxic("timeout_downstream")
    proxy.add_toxic(type="timeout", toxicity=1.0, attributes={"timeout": 100})
    client2, server2 = pair(proxy, connect, upstream)
    server2.sendall(b"dropped")
    assert client2.recv(10) == b""


def test_toxicity_is_drawn_per_connection(tp: Toxiproxy, echo: Any, connect: Connect) -> None:
    """With toxicity 0.5 some connections are blackholed and others pass (seeded draws)."""
    proxy = proxied(tp, echo)
    proxy.add_toxic(type="timeout", stream="upstream", toxicity=0.5, attributes={"timeout": 0})
    clients = [connect(proxy) for _ in range(24)]
    for sock in clients:
        sock.sendall(b"?")
    answered: set[socket.socket] = set()
    deadline = time.monotonic() + 0.5
    while len(answered) < len(clients) and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([c for c in clients if c not in answered], [], [], left)
        for sock in readable:
            assert sock.recv(1) == b"?"
            answered.add(sock)
    assert 0 < len(answered) < len(clients), f"{len(answered)} of {len(clients)} passed"


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
def test_reset_peer_gives_econnreset_then_eof(
    tp: Toxiproxy, upstream: Any, connect: Connect, stream: str
) -> None:
    proxy = proxied(tp, upstream)
    proxy.add_toxic(type="reset_peer", stream=stream, attributes={"timeout": 100})
    client, server = pair(proxy, connect, upstream)
    start = time.monotonic()
    client.sendall(b"reset toxic payload\n")
    if stream == "downstream":
        assert server.recv(100) == b"reset toxic payload\n"
        server.sendall(b"reply\n")
    with pytest.raises(ConnectionResetError):
        client.recv(100)
    assert_about(time.monotonic() - start, 0.100)
    assert client.recv(100) == b""


def test_reset_peer_on_open_connection_closes_without_rst(
    tp: Toxiproxy, upstream: Any, connect: Connect
) -> None:
    """As in Toxiproxy, SO_LINGER 0 is only set on connections opened after the toxic."""
    proxy = proxied(tp, upstream)
    client, _server = pair(proxy, connect, upstream)
    proxy.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": 0})
    client.sendall(b"x")
    assert client.recv(10) == b""


def test_slicer_splits_and_keeps_data(tp: Toxiproxy, upstream: Any, connect: Connect) -> None:
    proxy = proxied(tp, upstream)
    client, server = pair(proxy, connect, upstream)
    attrs = {"average_size": 10, "size_variation": 5, "delay": 2000}
    proxy.add_toxic(type="slicer", attributes=attrs)
    payload = os.urandom(1000)
    server.sendall(payload)
    reads = []
    total = 0
    while total < len(payload):
        data = client.recv(65536)
        assert data
        reads.append(data)
        total += len(data)
    assert b"".join(reads) == payload
    assert len(reads) >= 20, f"only {len(reads)} reads"


def test_limit_data_truncates(tp: Toxiproxy, upstream: Any, connect: Connect, helpers: Any) -> None:
    proxy = proxied(tp, upstream)
    proxy.add_toxic(type="limit_data", attributes={"bytes": 1000})
    client, server = pair(proxy, connect, upstream)
    payload = os.urandom(600)
    server.sendall(payload)
    assert helpers.recv_exactly(client, 600) == payload
    # The count survives a change of the chain.
    proxy.add_toxic(type="noop", name="n")
    server.sendall(payload)
    assert helpers.recv_all(client) == payload[:400]


def test_connections_survive_toxic_churn(
    tp: Toxiproxy, echo: Any, connect: Connect, api: httpx.Client, helpers: Any
) -> None:
    proxy = proxied(tp, echo)
    client = connect(proxy)
    for i in range(30):
        if i % 2 == 0:
            proxy.add_toxic(type="noop", name="up", stream="upstream")
            proxy.add_toxic(type="noop", name="down")
        elif i % 3 == 0:
            assert api.post("/reset").status_code == 204
        else:
            proxy.destroy_toxic("up")
            proxy.destroy_toxic("down")
        msg = b"round %d\n" % i
        client.sendall(msg)
        assert helpers.recv_exactly(client, len(msg)) == msg


def test_disable_closes_and_refuses(
    tp: Toxiproxy, echo: Any, connect: Connect, helpers: Any
) -> None:
    proxy = proxied(tp, echo)
    client = connect(proxy)
    client.sendall(b"a")
    assert helpers.recv_exactly(client, 1) == b"a"
    with proxy.down():
        assert client.recv(10) == b""
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(helpers.address(proxy), timeout=2).close()
    again = connect(proxy)
    again.sendall(b"b")
    assert helpers.recv_exactly(again, 1) == b"b"


def test_unreachable_upstream_closes_client(tp: Toxiproxy, connect: Connect) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    proxy = tp.create(upstream=f"127.0.0.1:{dead}", name="dead")
    client = connect(proxy)
    client.settimeout(2)
    start = time.monotonic()
    assert client.recv(10) == b""
    assert time.monotonic() - start < 1.0


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("toxic", [None, "latency"])
def test_slow_reader_is_backpressured_not_buffered(
    tp: Toxiproxy,
    upstream: Any,
    connect: Connect,
    toxiproxy_handle: ToxiproxyHandle,
    toxic: str | None,
) -> None:
    """A client that stops reading stops the upstream's writes; the proxy holds a few MB at most."""
    proxy = proxied(tp, upstream)
    if toxic:
        proxy.add_toxic(type=toxic, attributes={"latency": 1})
    client, server = pair(proxy, connect, upstream)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    assert toxiproxy_handle.pid is not None
    before = _rss_kib(toxiproxy_handle.pid)
    server.setblocking(False)
    chunk = b"x" * 65536
    sent = 0
    deadline = time.monotonic() + 10
    # Write until the upstream socket stays unwritable for 0.5 s (the proxy stopped reading).
    while time.monotonic() < deadline and sent < 256 * 1024 * 1024:
        if not select.select([], [server], [], 0.5)[1]:
            break
        with contextlib.suppress(BlockingIOError):
            sent += server.send(chunk)
    grown_mib = (_rss_kib(toxiproxy_handle.pid) - before) / 1024
    assert sent < 32 * 1024 * 1024, f"upstream wrote {sent / 2**20:.0f} MiB to a stalled reader"
    assert grown_mib < 24, f"proxy grew by {grown_mib:.1f} MiB"
    received = 0
    while received < sent:
        assert select.select([client], [], [], 5)[0], f"stuck after {received} of {sent} bytes"
        data = client.recv(1 << 20)
        assert data
        received += len(data)
    assert received == sent
