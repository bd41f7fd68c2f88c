"""Toxic and proxy churn while many connections move data: no errors, nothing stuck."""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from harness.toxiproxy.selection import client_for, start_embedded


def _client_loop(address: tuple[str, int], stop: threading.Event, rounds: list[int]) -> None:
    """Echo round trips; reconnects whenever a fault closes the connection."""
    while not stop.is_set():
        try:
            with socket.create_connection(address, timeout=2) as sock:
                sock.settimeout(2)
                while not stop.is_set():
                    msg = b"%08d\n" % rounds[0]
                    sock.sendall(msg)
                    got = b""
                    while len(got) < len(msg):
                        data = sock.recv(len(msg) - len(got))
                        if not data:
                            raise ConnectionError("closed")
                        got += data
                    assert got == msg
                    rounds[0] += 1
        except (OSError, ConnectionError):
            continue


def test_churn_under_load(tmp_path: Path, seed: int, echo: Any) -> None:
    log = tmp_path / "toxiproxy.log"
    rng = random.Random(seed)
    with start_embedded(seed=seed, log_path=log) as handle:
        proxy = client_for(handle).create(upstream=echo.address, name="churn")
        host, port = proxy.listen.rsplit(":", 1)
        address = (host, int(port))
        stop = threading.Event()
        counters = [[0] for _ in range(8)]
        threads = [
            threading.Thread(target=_client_loop, args=(address, stop, c), daemon=True)
            for c in counters
        ]
        for thread in threads:
            thread.start()
        edits = [
            ("POST", "/proxies/churn/toxics", {"type": "latency", "attributes": {"latency": 2}}),
            ("POST", "/proxies/churn/toxics", {"type": "latency", "stream": "upstream"}),
            ("PATCH", "/proxies/churn/toxics/latency_downstream", {"attributes": {"jitter": 1}}),
            ("POST", "/proxies/churn/toxics", {"type": "bandwidth", "attributes": {"rate": 500}}),
            (
                "POST",
                "/proxies/churn/toxics",
                {"type": "slicer", "attributes": {"average_size": 3}},
            ),
            ("DELETE", "/proxies/churn/toxics/latency_downstream", None),
            ("DELETE", "/proxies/churn/toxics/bandwidth_downstream", None),
            (
                "POST",
                "/proxies/churn/toxics",
                {"type": "timeout", "stream": "upstream", "name": "t"},
            ),
            ("DELETE", "/proxies/churn/toxics/t", None),
            ("POST", "/proxies/churn/toxics", {"type": "limit_data", "attributes": {"bytes": 90}}),
            ("POST", "/reset", None),
            ("PATCH", "/proxies/churn", {"enabled": False}),
            ("PATCH", "/proxies/churn", {"enabled": True}),
        ]
        statuses = []
        with httpx.Client(base_url=handle.url, timeout=10) as api:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                method, path, body = rng.choice(edits)
                response = api.request(method, path, json=body)
                statuses.append(response.status_code)
                assert response.status_code < 500, response.text
            assert api.post("/reset").status_code == 204
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            assert not any(t.is_alive() for t in threads)
            assert sum(c[0] for c in counters) > 50
            with socket.create_connection(address, timeout=5) as sock:
                sock.sendall(b"still fine\n")
                assert sock.recv(100) == b"still fine\n"
            proxies = api.get("/proxies").json()
            assert proxies["churn"]["enabled"] and proxies["churn"]["toxics"] == []
    assert len(statuses) > 30
    bad = [x for x in log.read_text().splitlines() if any(w in x for w in ("Traceback", "ERROR"))]
    assert not bad, f"server log: {bad[:5]}"
