"""Hostile input to the embedded Toxiproxy's API (issue 11): clear 4xx, no state change, whole.

Hand-made cases for each finding, then Hypothesis-generated bodies for every endpoint that reads
one. A request may fail only the way Go's server fails: 4xx, or a 500 naming a listen address
that cannot be used. Afterwards ``GET /proxies`` is valid strict JSON, a refused request (4xx)
left the state as it was, and every proxy can still be deleted.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from harness.toxiproxy.selection import ToxiproxyHandle

# Listen values the generated bodies may use: none binds a fixed port on this shared machine.
SAFE_LISTENS = ["127.0.0.1:0", "localhost:0", "bad", "", "[::1", "a:b:c", "127.0.0.1:x", ":99999"]
GO_500 = re.compile(r"^(listen tcp|address |lookup )")


def strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"non-JSON constant {name} in {text[:200]!r}")

    return json.loads(text, parse_constant=refuse)


def state(api: httpx.Client) -> str:
    response = api.get("/proxies")
    assert response.status_code == 200, response.text
    strict_json(response.text)
    return response.text


def check_whole(api: httpx.Client) -> None:
    """Listing works and every proxy can be deleted."""
    for name in strict_json(state(api)):
        response = api.delete(f"/proxies/{quote(name, safe='')}")
        assert response.status_code == 204, (name, response.text)
    assert state(api) == "{}"


def setup_base(api: httpx.Client) -> None:
    check_whole(api)
    body = {"name": "base", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}
    assert api.post("/proxies", json=body).status_code == 201
    toxic = {"name": "t", "type": "latency", "attributes": {"latency": 1}}
    assert api.post("/proxies/base/toxics", json=toxic).status_code == 200


def assert_go_like(response: httpx.Response) -> None:
    assert "Traceback" not in response.text
    if response.status_code < 500:
        return
    assert response.status_code == 500, response.text
    body = strict_json(response.text)
    assert GO_500.match(body["error"]), body


# -- the findings of issue 11 ----------------------------------------------------------------


def test_lone_surrogate_name_becomes_replacement_character(api: httpx.Client) -> None:
    body = b'{"name":"\\ud800","listen":"127.0.0.1:0","upstream":"127.0.0.1:1"}'
    response = api.post("/proxies", content=body)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "\ufffd"
    assert list(strict_json(state(api))) == ["\ufffd"]
    assert api.delete(f"/proxies/{quote(chr(0xFFFD))}").status_code == 204
    assert state(api) == "{}"


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        (
            "1e39",
            "json: cannot unmarshal number 1e39 into Go struct field ToxicWrapper.toxicity of "
            "type float32",
        ),
        ("NaN", "invalid character 'N' looking for beginning of value"),
        ("Infinity", "invalid character 'I' looking for beginning of value"),
        ("-Infinity", "invalid character 'I' in numeric literal"),
    ],
)
def test_non_finite_toxicity_is_refused(api: httpx.Client, literal: str, message: str) -> None:
    setup_base(api)
    before = state(api)
    response = api.post(
        "/proxies/base/toxics", content=f'{{"type":"latency","toxicity":{literal}}}'.encode()
    )
    assert response.status_code == 400
    assert response.json()["error"] == f"bad request body: {message}"
    response = api.patch("/proxies/base/toxics/t", content=f'{{"toxicity":{literal}}}'.encode())
    assert response.status_code == 400
    assert response.json()["error"].startswith("bad request body: ")
    assert state(api) == before


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deep_json_is_a_400(api: httpx.Client, opener: bytes) -> None:
    response = api.post("/proxies", content=opener * 100_000)
    assert response.status_code == 400
    char = opener[:1].decode()
    assert response.json()["error"] == (
        f"bad request body: invalid character '{char}' exceeded max depth"
    )
    assert state(api) == "{}"


def test_deep_json_within_go_limit_is_read(api: httpx.Client) -> None:
    """Go reads nesting up to 10000 levels; deeper than Python's recursion limit here."""
    deep = b"[" * 5000 + b"]" * 5000
    body = b'{"name":"d","listen":"127.0.0.1:0","upstream":"127.0.0.1:1","x":' + deep + b"}"
    assert api.post("/proxies", content=body).status_code == 201


# -- generated bodies --------------------------------------------------------------------------

FIELD_NAMES = [
    "name",
    "Name",
    "listen",
    "upstream",
    "enabled",
    "type",
    "stream",
    "toxicity",
    "attributes",
    "latency",
    "jitter",
    "rate",
    "delay",
    "timeout",
    "bytes",
]
TOXIC_TYPES = ["latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "noop"]

text = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=["Cs"]), st.sampled_from(["\ud800", "\udfff", "\x00"])
    ),
    max_size=12,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e39, -1e39, 1e-50, 0.5, 2**63, -(2**63) - 1]),
    text,
    st.sampled_from([*TOXIC_TYPES, "upstream", "downstream", "UPSTREAM", "bogus"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), text), children, max_size=5),
    ),
    max_leaves=10,
)
objects = st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), text), values, max_size=6)
documents = st.one_of(objects, st.lists(objects, max_size=3), values)


def _addressable(name: Any) -> Any:
    """A name a URL path can carry (Go cannot route ``..`` or ``a/b`` either)."""
    if isinstance(name, str) and (name in (".", "..") or "/" in name):
        return "n"
    return name


def safe_listens(value: Any, pick: int) -> Any:
    """Replace every ``listen`` value (any case) by a harmless one, and unroutable names."""
    if isinstance(value, dict):
        return {
            k: (
                SAFE_LISTENS[pick % len(SAFE_LISTENS)]
                if k.lower() == "listen"
                else _addressable(v)
                if k.lower() == "name"
                else safe_listens(v, pick)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [safe_listens(v, pick) for v in value]
    return value


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A JSON document (NaN and Infinity allowed, surrogates escaped), maybe broken."""
    doc = safe_listens(draw(documents), draw(st.integers(0, 100)))
    raw = json.dumps(doc, allow_nan=True).encode()
    damage = draw(st.sampled_from(["none", "none", "cut", "insert", "bytes"]))
    if damage == "cut" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif damage == "insert":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at:]
    elif damage == "bytes":
        raw = draw(st.binary(max_size=40))
    if damage != "none":  # damage must not turn a safe listen unsafe, nor a name unroutable
        raw = re.sub(rb"(?i)ame", b"ane", re.sub(rb"(?i)isten", b"istem", raw))
    return raw


ENDPOINTS = [
    ("POST", "/proxies"),
    ("POST", "/populate"),
    ("PATCH", "/proxies/base"),
    ("POST", "/proxies/base/toxics"),
    ("PATCH", "/proxies/base/toxics/t"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_generated_bodies_get_go_like_answers(
    api: httpx.Client, toxiproxy_handle: ToxiproxyHandle, seed: int, method: str, path: str
) -> None:
    @hypothesis_seed(seed)
    @settings(
        max_examples=75,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies())
    def check(body: bytes) -> None:
        setup_base(api)
        before = state(api)
        response = api.request(method, path, content=body)
        assert_go_like(response)
        if 400 <= response.status_code < 500 and path != "/populate":
            assert state(api) == before, body
        if response.status_code in (200, 201):
            strict_json(response.text)
        check_whole(api)

    check()


def test_generated_proxy_names_round_trip(api: httpx.Client, seed: int) -> None:
    """Any name Go accepts can be shown, listed and deleted by its (escaped) name."""

    @hypothesis_seed(seed)
    @settings(max_examples=50, deadline=None, database=None)
    @given(name=text.filter(lambda s: s not in ("", ".", "..") and "/" not in s))
    def check(name: str) -> None:
        check_whole(api)
        body = json.dumps({"name": name, "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"})
        response = api.post("/proxies", content=body.encode())
        assert response.status_code == 201, response.text
        stored = response.json()["name"]
        assert not re.search("[\ud800-\udfff]", stored)
        shown = api.get(f"/proxies/{quote(stored, safe='')}")
        assert shown.status_code == 200 and shown.json()["name"] == stored
        check_whole(api)

    check()
