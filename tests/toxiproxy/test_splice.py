"""The zero-copy path (no toxic) and its hand-over to the toxic path while data flows."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from typing import Any

import httpx
import pytest

from harness.toxiproxy.splice import AVAILABLE

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="os.splice is Linux-only")

TOTAL = 24 * 1024 * 1024


def _pattern(seed: int) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB blocks


def test_toxics_come_and_go_mid_stream_without_loss(
    api: httpx.Client, upstream: Any, seed: int
) -> None:
    created = api.post(
        "/proxies", json={"name": "s", "listen": "127.0.0.1:0", "upstream": upstream.address}
    )
    host, port = created.json()["listen"].rsplit(":", 1)
    blocks = [_pattern(seed + i) for i in range(TOTAL // 65536)]
    expected = hashlib.sha256(b"".join(blocks)).hexdigest()
    client = socket.create_connection((host, int(port)), timeout=30)
    server = upstream.accept()
    server.settimeout(30)
    digests: dict[str, str] = {}

    def send() -> None:
        for block in blocks:
            client.sendall(block)
        client.shutdown(socket.SHUT_WR)

    def receive() -> None:
        digest = hashlib.sha256()
        while data := server.recv(1 << 20):
            digest.update(data)
        digests["up"] = digest.hexdigest()

    threads = [threading.Thread(target=send), threading.Thread(target=receive)]
    for thread in threads:
        thread.start()
    toxics = [
        {"type": "noop", "stream": "upstream"},
        {"type": "latency", "stream": "upstream", "attributes": {"latency": 1}},
        {"type": "slicer", "stream": "upstream", "attributes": {"average_size": 4096}},
    ]
    for _ in range(3):
        for toxic in toxics:
            assert api.post("/proxies/s/toxics", json=toxic).status_code == 200
        for toxic in toxics:
            name = f"{toxic['type']}_upstream"
            assert api.delete(f"/proxies/s/toxics/{name}").status_code == 204
    for thread in threads:
        thread.join(timeout=60)
    client.close()
    assert digests.get("up") == expected


def test_spliced_connection_echoes_both_ways_and_ends(
    api: httpx.Client, echo: Any, helpers: Any
) -> None:
    created = api.post(
        "/proxies", json={"name": "e", "listen": "127.0.0.1:0", "upstream": echo.address}
    )
    host, port = created.json()["listen"].rsplit(":", 1)
    payload = os.urandom(1_000_000)
    with socket.create_connection((host, int(port)), timeout=10) as client:
        sender = threading.Thread(target=client.sendall, args=(payload,))
        sender.start()
        assert helpers.recv_exactly(client, len(payload)) == payload
        sender.join()
        client.shutdown(socket.SHUT_WR)
        assert client.recv(1) == b""  # the end of one direction ends the other
