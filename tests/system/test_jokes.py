"""The joke API client against respx: validation, and which answers are permanent or transient."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from system.jokes import PermanentJokeError, TransientJokeError, fetch_joke, parse_joke

BASE = "http://jokes.test"
JOKE: dict[str, Any] = {
    "id": "abc123",
    "value": "Chuck Norris can divide by zero.",
    "categories": ["dev"],
    "url": "https://api.chucknorris.io/jokes/abc123",
    "icon_url": "https://api.chucknorris.io/img/avatar/chuck-norris.png",
    "created_at": "2020-01-05 13:42:19.324003",
    "updated_at": "2020-01-05 13:42:19.324003",
}


async def fetch(category: str | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        return await fetch_joke(client, BASE, category)


@respx.mock
async def test_valid_joke_becomes_a_row_and_category_is_sent() -> None:
    route = respx.get(f"{BASE}/jokes/random").mock(return_value=httpx.Response(200, json=JOKE))
    row = await fetch("dev")
    assert row["joke_id"] == "abc123"
    assert row["categories"] == ["dev"]
    assert row["api_created_at"] == JOKE["created_at"]
    assert route.calls.last.request.url.params["category"] == "dev"
    await fetch()
    assert "category" not in route.calls.last.request.url.params


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
@respx.mock
async def test_5xx_and_429_are_transient(status: int) -> None:
    respx.get(f"{BASE}/jokes/random").mock(return_value=httpx.Response(status))
    with pytest.raises(TransientJokeError, match=str(status)):
        await fetch()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
@respx.mock
async def test_other_4xx_are_permanent(status: int) -> None:
    respx.get(f"{BASE}/jokes/random").mock(return_value=httpx.Response(status, text="nope"))
    with pytest.raises(PermanentJokeError, match=str(status)):
        await fetch()


@respx.mock
async def test_truncated_json_is_permanent() -> None:
    respx.get(f"{BASE}/jokes/random").mock(return_value=httpx.Response(200, text='{"id": "x'))
    with pytest.raises(PermanentJokeError, match="not JSON"):
        await fetch()


@respx.mock
async def test_transport_errors_and_timeouts_propagate() -> None:
    respx.get(f"{BASE}/jokes/random").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(httpx.TransportError):
        await fetch()
    respx.get(f"{BASE}/jokes/random").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(httpx.TimeoutException):
        await fetch()


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda j: j.pop("id"), "missing id"),
        (lambda j: j.pop("updated_at"), "missing updated_at"),
        (lambda j: j.update(value=3), "value is not a string"),
        (lambda j: j.update(categories="dev"), "categories is not a list"),
        (lambda j: j.update(id="  "), "empty id"),
    ],
)
def test_malformed_payloads_are_permanent(mutate: Any, needle: str) -> None:
    payload = dict(JOKE)
    mutate(payload)
    with pytest.raises(PermanentJokeError, match=needle):
        parse_joke(payload)


def test_non_object_payload_is_permanent() -> None:
    with pytest.raises(PermanentJokeError, match="expected an object"):
        parse_joke(["not", "a", "joke"])
