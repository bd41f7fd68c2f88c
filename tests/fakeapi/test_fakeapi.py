"""The fake joke API, run as a real server process and spoken to over real sockets."""

from __future__ import annotations

import json
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.fakeapi.app import (
    CATEGORIES,
    DEFAULT_POOL_SIZE,
    FAILING_CATEGORY,
    STUCK_CATEGORY,
    joke_id,
)
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


def test_the_failing_category_always_answers_500(api: FakeApiClient) -> None:
    for _ in range(3):
        answer = httpx.get(f"{api.url}/jokes/random", params={"category": FAILING_CATEGORY})
        assert answer.status_code == 500
    assert FAILING_CATEGORY not in httpx.get(f"{api.url}/jokes/categories").json()
    assert [r["status"] for r in api.requests()][:3] == [500, 500, 500]


def test_the_stuck_category_is_held_until_the_client_gives_up(api: FakeApiClient) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{api.url}/jokes/random", params={"category": STUCK_CATEGORY}, timeout=0.3)
    record = wait_for(lambda: api.requests(), timeout=5.0, what="the request recorded").value
    assert record[0]["status"] == 499 and record[0]["t_end"] - record[0]["t_start"] >= 0.3


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


# -- hostile input on the control endpoints (issue 11) -----------------------------------------


def _strict_json(text: str) -> Any:
    """RFC 8259 JSON only: NaN/Infinity in an answer make it unreadable for most clients."""

    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _faults_now(url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/_control/faults", timeout=5)
    assert response.status_code == 200, response.text[:200]
    faults: list[dict[str, Any]] = _strict_json(response.text)["faults"]
    return faults


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind": "status", "status": 503, "duration": Infinity}',
        b'{"kind": "status", "status": 503, "duration": NaN}',
        b'{"kind": "status", "status": 503, "duration": 1e999}',
        b'{"kind": "status", "status": 429, "retry_after": Infinity, "count": 1}',
        b'{"kind": "slow", "delay": Infinity, "count": 1}',
        b'{"kind": "slow", "delay": NaN, "count": 1}',
        b'{"kind": "slow", "delay": 1e9, "count": 1}',
        b'{"kind": "hang", "duration": 1e12}',
        b'{"kind": "status", "status": 503, "count": 1e999}',
        b'{"kind": "status", "status": 503, "count": true}',
        b'{"kind": "status", "status": true, "count": 1}',
        b'{"kind": "status", "status": 503, "count": 1, "path": "/jokes\\ud800"}',
        b'{"kind": "status", "status": 503, "count": 1, "\\ud800": 1}',
        b'{"kind": "\\ud800", "count": 1}',
        b"[" * 100_000,
        b'{"kind": "status", "status": 503, "count": 1, "path": "/' + b"x" * 200_000 + b'"}',
    ],
)
def test_hostile_fault_is_refused_and_nothing_is_stored(server: str, body: bytes) -> None:
    httpx.delete(f"{server}/_control/faults", timeout=5)
    response = httpx.post(f"{server}/_control/faults", content=body, timeout=10)
    assert response.status_code in (400, 413), (response.status_code, response.text[:200])
    error = _strict_json(response.text)["error"]
    assert 0 < len(error) < 500  # one clear line, never the input echoed back
    assert _faults_now(server) == []
    assert httpx.get(f"{server}/jokes/random", timeout=5).status_code == 200


@pytest.mark.parametrize(
    "pool_size", ["10**18", "1000001", "0", "-1", "1.5", "true", "1e999", "NaN", '"10"', "null"]
)
def test_pool_size_out_of_range_is_refused(api: FakeApiClient, pool_size: str) -> None:
    body = b'{"pool_size": ' + (str(10**18) if pool_size == "10**18" else pool_size).encode()
    response = httpx.post(f"{api.url}/_control/jokes", content=body + b"}", timeout=5)
    assert response.status_code == 400, response.text[:200]
    error = response.json()["error"]
    assert "1_000_000" in error or "finite" in error, error  # names the rule
    # nothing changed: the draws are those of the default pool
    assert httpx.get(f"{api.url}/jokes/random").json()["id"] == joke_id(7, _first_draw(7))


def _first_draw(seed: int) -> int:
    return random.Random(seed).randrange(DEFAULT_POOL_SIZE)


def test_the_largest_pool_is_accepted(api: FakeApiClient) -> None:
    api.set_pool(1_000_000)
    assert httpx.get(f"{api.url}/jokes/random").status_code == 200


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
_json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_fault_bodies = st.fixed_dictionaries(
    {"kind": st.sampled_from(["status", "slow", "hang", "malformed"]) | st.text(max_size=8)},
    optional={
        "status": _scalars,
        "retry_after": _scalars,
        "delay": _scalars,
        "count": _scalars,
        "duration": _scalars,
        "path": _scalars,
    },
)


def _encode(value: Any) -> bytes:
    # allow_nan: send NaN/Infinity as a hostile client would; ensure_ascii: lone surrogates
    # travel as \\udXXX escapes, which Python's json module decodes back into lone surrogates
    return json.dumps(value, allow_nan=True, ensure_ascii=True).encode()


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # a fixed seed: the same bodies on every run
    suppress_health_check=[HealthCheck.too_slow],
)
@given(body=_fault_bodies.map(_encode) | _json_values.map(_encode) | st.binary(max_size=64))
def test_generated_hostile_faults_get_201_or_a_clear_400(server: str, body: bytes) -> None:
    with httpx.Client(base_url=server, timeout=10) as http:
        http.delete("/_control/faults")
        response = http.post("/_control/faults", content=body)
        assert response.status_code in (201, 400), (body[:200], response.status_code)
        answer = _strict_json(response.text)
        faults = _faults_now(server)
        if response.status_code == 400:
            assert faults == [] and 0 < len(answer["error"]) < 500
        else:
            assert [f["id"] for f in faults] == [answer["id"]]
        http.delete("/_control/faults")
        assert http.get("/jokes/categories").status_code == 200


@settings(max_examples=150, deadline=None, derandomize=True)
@given(body=st.fixed_dictionaries({"pool_size": _scalars}).map(_encode) | _json_values.map(_encode))
def test_generated_hostile_pool_sizes_get_200_or_a_clear_400(server: str, body: bytes) -> None:
    with httpx.Client(base_url=server, timeout=10) as http:
        response = http.post("/_control/jokes", content=body)
        assert response.status_code in (200, 400), (body[:200], response.status_code)
        _strict_json(response.text)
        joke = http.get("/jokes/random")
        assert joke.status_code == 200, joke.text[:200]
        http.post("/_control/reset")


@pytest.mark.parametrize("kind", ["slow", "hang"])
def test_sigterm_stops_the_server_while_a_long_fault_holds_a_request(
    tmp_path: Path, kind: str
) -> None:
    proc, url = start_fakeapi(tmp_path, seed=1, name=f"long-{kind}")
    outcome: list[object] = []
    try:
        spec = {"delay": 3000} if kind == "slow" else {}
        control = FakeApiClient(url)
        control.add_fault(kind, count=1, **spec)  # a count-only hang holds for an hour

        def held_request() -> None:
            try:
                outcome.append(httpx.get(f"{url}/jokes/random", timeout=60).status_code)
            except httpx.HTTPError as exc:
                outcome.append(type(exc).__name__)

        thread = threading.Thread(target=held_request, daemon=True)
        thread.start()
        # the request took the fault (its count is used up): it is now held by the server
        wait_for(lambda: control.faults() == [], timeout=10, what="the request to take the fault")
        proc.terminate()
        # uvicorn re-raises the signal once it has shut down: killed by SIGTERM, on time
        assert proc.wait_exit(timeout=15) in (0, -signal.SIGTERM)
        thread.join(timeout=20)
        assert outcome, "the held request never ended"
        assert outcome[0] in (503, 504, "RemoteProtocolError", "ReadError"), outcome
        assert "Traceback" not in proc.output()
    finally:
        proc.close()
