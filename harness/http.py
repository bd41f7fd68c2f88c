"""The harness's HTTP calls, sharing one TLS context.

httpx builds a new TLS context (loading the whole CA bundle: about 25 ms of CPU) for every
client, and ``httpx.get`` makes a client per call. The harness polls loopback services many
times a second while a stack starts, so in a chaos run these contexts were the pytest
process's largest CPU cost (12 of its 37 CPU seconds over six scenarios, by py-spy), taken
from the processes it was timing. The context is built once per process instead, with
httpx's own defaults (:func:`httpx.create_ssl_context`), so verification is unchanged.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once (an ``SSLContext`` is thread-safe)."""
    return httpx.create_ssl_context()


def client(**options: Any) -> httpx.Client:
    """``httpx.Client(**options)`` on the shared TLS context."""
    return httpx.Client(verify=tls_context(), **options)


def request(method: str, url: str, **options: Any) -> httpx.Response:
    """One request, like ``httpx.request``, on the shared TLS context."""
    return httpx.request(method, url, verify=tls_context(), **options)


def get(url: str, **options: Any) -> httpx.Response:
    """``GET url``, like ``httpx.get``, on the shared TLS context."""
    return request("GET", url, **options)
