"""The joke API client: one GET, explicit timeouts, strict validation of the payload."""

from __future__ import annotations

from typing import Any

import httpx

#: connect/read/write/pool timeouts for the joke API (the job timeout bounds the whole run)
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)

_REQUIRED = ("id", "value", "categories", "url", "icon_url", "created_at", "updated_at")


class PermanentJokeError(Exception):
    """Retrying cannot help: a 4xx answer (other than 429) or a malformed payload."""


class TransientJokeError(Exception):
    """The API is unwell (5xx or 429): retry later."""


def parse_joke(payload: Any) -> dict[str, Any]:
    """Validate an api.chucknorris.io joke and return the row to store.

    Raises :class:`PermanentJokeError` naming the first problem.
    """
    if not isinstance(payload, dict):
        raise PermanentJokeError(
            f"malformed payload: expected an object, got {type(payload).__name__}"
        )
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise PermanentJokeError(f"malformed payload: missing {', '.join(missing)}")
    for key in ("id", "value", "url", "icon_url", "created_at", "updated_at"):
        if not isinstance(payload[key], str):
            raise PermanentJokeError(f"malformed payload: {key} is not a string")
    if not payload["id"].strip():
        raise PermanentJokeError("malformed payload: empty id")
    categories = payload["categories"]
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise PermanentJokeError("malformed payload: categories is not a list of strings")
    return {
        "joke_id": payload["id"],
        "value": payload["value"],
        "categories": categories,
        "url": payload["url"],
        "icon_url": payload["icon_url"],
        "api_created_at": payload["created_at"],
        "api_updated_at": payload["updated_at"],
    }


async def fetch_joke(
    client: httpx.AsyncClient, base_url: str, category: str | None = None
) -> dict[str, Any]:
    """``GET {base_url}/jokes/random[?category=...]`` and return the validated row.

    5xx and 429 raise :class:`TransientJokeError`; other non-2xx answers and malformed
    bodies raise :class:`PermanentJokeError`; transport errors and timeouts propagate as
    ``httpx.TransportError``.
    """
    params = {"category": category} if category else None
    response = await client.get(f"{base_url}/jokes/random", params=params, timeout=HTTP_TIMEOUT)
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientJokeError(f"joke API answered {status}")
    if status != 200:
        raise PermanentJokeError(f"joke API answered {status}: {response.text[:200]}")
    try:
        payload = response.json()
    except ValueError as exc:
        raise PermanentJokeError(f"malformed payload: not JSON ({exc})") from None
    return parse_joke(payload)
