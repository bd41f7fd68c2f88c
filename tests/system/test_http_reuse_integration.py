"""Issue 12: a worker session keeps one HTTP client, so runs reuse joke-API connections."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, ClassVar

import pytest

if TYPE_CHECKING:
    from conftest import Sut  # the fixture's class (tests/system/conftest.py)

pytestmark = pytest.mark.integration


class _JokeHandler(BaseHTTPRequestHandler):
    """A keep-alive joke API that records the client port of every request."""

    protocol_version = "HTTP/1.1"
    ports: ClassVar[list[int]] = []
    url: ClassVar[str] = ""

    def do_GET(self) -> None:
        type(self).ports.append(self.client_address[1])
        n = len(type(self).ports)
        body = json.dumps(
            {
                "id": f"joke{n}",
                "value": "x",
                "categories": [],
                "url": "u",
                "icon_url": "i",
                "created_at": "c",
                "updated_at": "u",
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def keepalive_api() -> Iterator[type[_JokeHandler]]:
    _JokeHandler.ports = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JokeHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _JokeHandler.url = f"http://127.0.0.1:{server.server_address[1]}"
        yield _JokeHandler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_runs_of_one_worker_session_reuse_the_api_connection(
    sut: Sut, keepalive_api: type[_JokeHandler]
) -> None:
    sut.overrides.update(
        API_BASE_URL=keepalive_api.url,
        SCHEDULED_FETCH_INTERVAL="off",
    )
    sut.migrate()
    sut.worker("w1")
    job_ids = []
    for _ in range(5):  # one after the other: each run finds the previous connection idle
        job_ids += sut.defer()
        sut.wait_status(job_ids, {"succeeded"}, timeout=15)
    ports = keepalive_api.ports
    assert len(ports) == 5
    print(f"\n5 runs, {len(set(ports))} connection(s) to the joke API")
    assert len(set(ports)) == 1, ports
