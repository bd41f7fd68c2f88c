"""The harness's HTTP calls share one TLS context (httpx builds one per client)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from harness import http


@pytest.fixture
def contexts_made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    made: list[int] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(1)
        return real(*args, **kwargs)

    http.tls_context.cache_clear()
    monkeypatch.setattr(ssl, "create_default_context", counting)
    yield made
    http.tls_context.cache_clear()


def test_many_calls_build_one_tls_context(contexts_made: list[int], fakeapi_url: str) -> None:
    for _ in range(5):
        assert http.get(f"{fakeapi_url}/jokes/categories").status_code == 200
    assert http.request("GET", f"{fakeapi_url}/jokes/categories").status_code == 200
    with http.client(base_url=fakeapi_url) as client:
        assert client.get("/jokes/categories").status_code == 200
    assert len(contexts_made) == 1


def test_plain_httpx_builds_one_per_call(contexts_made: list[int], fakeapi_url: str) -> None:
    # why harness.http exists: each of these loads the CA bundle again
    for _ in range(3):
        httpx.get(f"{fakeapi_url}/jokes/categories")
    assert len(contexts_made) == 3


def test_verification_is_httpx_default() -> None:
    ctx = http.tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
