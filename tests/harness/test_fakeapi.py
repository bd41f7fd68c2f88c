"""The fake joke API, run as a real server process and spoken to over real sockets."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.fakeapi.app import CATEGORIES, joke_id
from harness.fakeapi.client import FakeApiClient
from harness.processes import ManagedProcess, log_line
from harness.wait import wait_for

LISTENING = r"fakeapi: listening on (http://\S+)"


def start_fakeapi(tmp: Path, seed: int, name: str = "fakeapi") -> tuple[ManagedProcess, str]:
    proc = ManagedProcess(
        name,
        [sys.executable, "-m", "harness.fakeapi", "--port", "0", "--seed", str(seed)],
        log_path=tmp / f"{name}.log",
        ready=log_line(LISTENING),
    )
    proc.start(timeout=30)
    match = re.search(LISTENING, proc.output())
    assert match is not None
    return proc, match.group(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_fakeapi(tmp_path_factory.mktemp("fakeapi"), seed=7)
    try:
        yield url
    finally:
        proc.close()


@pytest.fixture
def api(server: str) -> Iterator[FakeApiClient]:
    client = FakeApiClient(server)
    client.reset()
    yield client
    client.reset()


def test_shaped_like_the_real_api(api: FakeApiClient) -> None:
    assert httpx.get(f"{api.url}/jokes/categories").json() == CATEGORIES
    joke = httpx.get(f"{api.url}/jokes/random").json()
    assert set(joke) == {"categories", "created_at", "icon_url", "id", "updated_at", "url", "value"}
    assert len(joke["id"]) == 22 and joke["url"].endswith(joke["id"])
    dev = httpx.get(f"{api.url}/jokes/random", params={"category": "dev"}).json()
    assert dev["categories"] == ["dev"]
    missing = httpx.get(f"{api.url}/jokes/random", params={"category": "nope"})
    assert missing.status_code == 404 and missing.json()["error"] == "Not Found"
    found = httpx.get(f"{api.url}/jokes/search", params={"query": "chuck"}).json()
    assert found["total"] == len(found["result"]) > 0
    assert httpx.get(f"{api.url}/jokes/search", params={"query": "x"}).status_code == 400
    outcomes = [(r["path"], r["status"], r["outcome"]) for r in api.requests()]
    assert outcomes == [
        ("/jokes/categories", 200, "ok"),
        ("/jokes/random", 200, "ok"),
        ("/jokes/random", 200, "ok"),
        ("/jokes/random", 404, "not_found"),
        ("/jokes/search", 200, "ok"),
        ("/jokes/search", 400, "error"),
    ]
    assert api.requests()[1]["joke_id"] == joke["id"]


def test_seeded_draws_are_reproducible_and_pool_of_one_forces_duplicates(
    api: FakeApiClient, tmp_path: Path
) -> None:
    first = [httpx.get(f"{api.url}/jokes/random").json()["id"] for _ in range(5)]
    api.reset()
    again = [httpx.get(f"{api.url}/jokes/random").json()["id"] for _ in range(5)]
    assert first == again and len(set(first)) == 5
    other, other_url = start_fakeapi(tmp_path, seed=8, name="other")
    try:
        different = [httpx.get(f"{other_url}/jokes/random").json()["id"] for _ in range(5)]
    finally:
        other.close()
    assert different != first
    api.set_pool(1)
    ids = {httpx.get(f"{api.url}/jokes/random").json()["id"] for _ in range(4)}
    assert ids == {joke_id(7, 0)}


def test_status_fault_for_the_next_n_requests(api: FakeApiClient) -> None:
    api.status(503, count=3)
    codes = [httpx.get(f"{api.url}/jokes/random").status_code for _ in range(4)]
    assert codes == [503, 503, 503, 200]
    record = api.requests()
    seen = [(r["outcome"], r["fault"]) for r in record]
    assert seen == [("fault", "status")] * 3 + [("ok", None)]
    assert record[-1]["joke_id"] is not None and record[0]["joke_id"] is None


def test_429_with_retry_after_for_a_time_window(api: FakeApiClient) -> None:
    api.status(429, retry_after=1, duration=0.6)
    response = httpx.get(f"{api.url}/jokes/random")
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    waited = wait_for(
        lambda: httpx.get(f"{api.url}/jokes/random").status_code == 200,
        timeout=5,
        what="the 429 window to end",
        interval=0.05,
    )
    assert waited.elapsed < 5
    assert api.faults() == []


def test_slow_responses_are_slow(api: FakeApiClient) -> None:
    api.slow(0.4, count=1)
    started = time.monotonic()
    assert httpx.get(f"{api.url}/jokes/random").status_code == 200
    slow = time.monotonic() - started
    started = time.monotonic()
    httpx.get(f"{api.url}/jokes/random")
    fast = time.monotonic() - started
    assert slow >= 0.4 and fast < slow
    first = api.requests()[0]
    assert first["t_end"] - first["t_start"] >= 0.4 and first["fault"] == "slow"


def test_hang_makes_the_client_time_out_and_is_recorded(api: FakeApiClient) -> None:
    api.hang(duration=30)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{api.url}/jokes/random", timeout=0.3)
    # The server notices the client went away and records it.
    waited = wait_for(api.requests, timeout=5, what="the hung request to be recorded")
    assert waited.value[0]["status"] == 499 and waited.value[0]["outcome"] == "fault"
    api.clear_faults()
    assert httpx.get(f"{api.url}/jokes/random", timeout=2).status_code == 200


def test_malformed_json(api: FakeApiClient) -> None:
    api.malformed(count=1)
    response = httpx.get(f"{api.url}/jokes/random")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    assert httpx.get(f"{api.url}/jokes/random").json()["id"]


def test_bad_fault_is_one_clear_error(api: FakeApiClient) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        api.add_fault("explode", count=1)
    with pytest.raises(ValueError, match="give 'count'"):
        api.status(503)
    response = httpx.post(f"{api.url}/_control/faults", content=b"{not json")
    assert response.status_code == 400


def test_requests_since(api: FakeApiClient) -> None:
    for _ in range(3):
        httpx.get(f"{api.url}/jokes/categories")
    assert len(api.requests()) == 3 and len(api.requests(since=2)) == 1


def test_bind_failure_is_one_line(tmp_path: Path, server: str) -> None:
    port = server.rsplit(":", 1)[1]
    proc = ManagedProcess(
        "clash",
        [sys.executable, "-m", "harness.fakeapi", "--port", port],
        log_path=tmp_path / "clash.log",
    )
    proc.start(timeout=10)
    assert proc.wait_exit(timeout=20) == 2
    assert proc.output().strip().startswith(f"fakeapi: cannot bind 127.0.0.1:{port}")
    assert "Traceback" not in proc.output()
