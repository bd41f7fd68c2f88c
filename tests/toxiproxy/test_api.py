"""Conformance of the embedded server's HTTP API with Toxiproxy 2.12 (notes/toxiproxy-api.md).

Driven through the unchanged ``toxiproxy-python`` client, plus raw HTTP (httpx) for exact bodies
and for what the client cannot do (PATCH, /populate, raw errors).
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import httpx
import pytest
from toxiproxy import Toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
from toxiproxy.proxy import Proxy

from harness.toxiproxy.selection import ToxiproxyHandle


def error_body(message: str, status: int) -> str:
    return json.dumps({"error": message, "status": status}, separators=(",", ":")) + "\n"


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.text == error_body(message, status)
    assert response.headers["content-type"].startswith("text/plain")


def listening(listen: str) -> bool:
    host, port = listen.rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def create(api: httpx.Client, **body: Any) -> httpx.Response:
    body.setdefault("listen", "127.0.0.1:0")
    return api.post("/proxies", json=body)


# -- server-wide ------------------------------------------------------------------------------


def test_every_routed_response_has_a_request_id(api: httpx.Client) -> None:
    ids = set()
    for response in (api.get("/proxies"), api.get("/version"), api.get("/proxies/missing")):
        rid = response.headers["x-toxiproxy-request-id"]
        assert re.fullmatch(r"[0-9a-v]{20}", rid)
        ids.add(rid)
    assert len(ids) == 3


def test_browser_user_agents_are_refused(api: httpx.Client) -> None:
    response = api.get("/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert response.status_code == 403
    assert response.text == "User agent not allowed\n"
    assert api.get("/proxies", headers={"User-Agent": "curl/8"}).status_code == 200


def test_unknown_route_is_a_plain_404(api: httpx.Client) -> None:
    response = api.get("/nothing/here")
    assert response.status_code == 404
    assert response.text == "404 page not found\n"
    assert api.get("/proxies/").status_code == 404


def test_wrong_method_is_405(api: httpx.Client) -> None:
    assert api.put("/proxies").status_code == 405


def test_version(api: httpx.Client, tp: Toxiproxy, toxiproxy_handle: ToxiproxyHandle) -> None:
    response = api.get("/version")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    assert re.fullmatch(r'\{"version": "[^"]+"\}\n', response.text)
    assert response.json()["version"] == toxiproxy_handle.version
    assert tp.version() == response.content


# -- proxies ------------------------------------------------------------------------------------


def test_create_rewrites_listen_and_lists(tp: Toxiproxy, api: httpx.Client, echo: Any) -> None:
    assert api.get("/proxies").json() == {}
    proxy = tp.create(upstream=echo.address, name="db")
    host, port = proxy.listen.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert listening(proxy.listen)
    assert proxy.enabled is True
    assert set(tp.proxies()) == {"db"}
    raw = api.get("/proxies").text
    expected = {"name": "db", "listen": proxy.listen, "upstream": echo.address}
    assert raw == '{"db":' + json.dumps(expected, separators=(",", ":"))[:-1] + (
        ',"enabled":true,"Logger":{},"toxics":[]}}'
    )
    shown = api.get("/proxies/db")
    assert shown.headers["content-type"] == "application/json"
    assert shown.json() == {
        "name": "db",
        "listen": proxy.listen,
        "upstream": echo.address,
        "enabled": True,
        "Logger": {},
        "toxics": [],
    }


def test_create_answers_201_and_index_is_sorted(api: httpx.Client) -> None:
    for name in ("b", "c", "a"):
        response = create(api, name=name, upstream="127.0.0.1:1")
        assert response.status_code == 201
        assert response.json()["enabled"] is True
    text = api.get("/proxies").text
    assert text.index('"a":') < text.index('"b":') < text.index('"c":')  # Go sorts map keys


def test_empty_listen_binds_every_interface(api: httpx.Client) -> None:
    listen = api.post("/proxies", json={"name": "w", "upstream": "127.0.0.1:1"}).json()["listen"]
    assert re.fullmatch(r"\[::\]:\d+", listen) or re.fullmatch(r"0\.0\.0\.0:\d+", listen)
    assert listening(f"127.0.0.1:{listen.rsplit(':', 1)[1]}")


def test_create_twice_is_409(tp: Toxiproxy, api: httpx.Client) -> None:
    assert create(api, name="a", upstream="127.0.0.1:1").status_code == 201
    assert_error(create(api, name="a", upstream="127.0.0.1:1"), 409, "proxy already exists")
    with pytest.raises(ProxyExists):
        tp.create(upstream="127.0.0.1:1", name="a")


def test_missing_fields(api: httpx.Client) -> None:
    assert_error(create(api, upstream="127.0.0.1:1"), 400, "missing required field: name")
    assert_error(create(api, name="x"), 400, "missing required field: upstream")


def test_bad_bodies(api: httpx.Client) -> None:
    assert_error(api.post("/proxies", content=b""), 400, "bad request body: EOF")
    response = api.post("/proxies", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"].startswith("bad request body: ")
    response = create(api, name=1, upstream="127.0.0.1:1")
    assert response.status_code == 400
    assert "cannot unmarshal number" in response.json()["error"]


def test_create_bind_conflict_is_500_with_go_message(api: httpx.Client) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        response = create(api, name="x", upstream="127.0.0.1:1", listen=f"127.0.0.1:{port}")
    assert_error(response, 500, f"listen tcp 127.0.0.1:{port}: bind: address already in use")
    assert api.get("/proxies").json() == {}


def test_disabled_proxy_can_be_enabled(tp: Toxiproxy, api: httpx.Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    listen = f"localhost:{free}"
    response = create(api, name="off", upstream="127.0.0.1:1", listen=listen, enabled=False)
    assert response.status_code == 201
    assert response.json()["listen"] == listen  # not rewritten: nothing is bound
    assert response.json()["enabled"] is False
    assert not listening(f"127.0.0.1:{free}")
    proxy = tp.get_proxy("off")
    assert proxy is not None
    proxy.enable()
    shown = api.get("/proxies/off").json()
    assert shown["enabled"] is True
    assert shown["listen"] == f"127.0.0.1:{free}"  # localhost resolved, as Go does
    assert listening(shown["listen"])
    proxy.disable()
    assert not listening(shown["listen"])


def test_unknown_proxy_is_404(tp: Toxiproxy, api: httpx.Client) -> None:
    for response in (
        api.get("/proxies/ghost"),
        api.patch("/proxies/ghost", json={}),
        api.delete("/proxies/ghost"),
        api.get("/proxies/ghost/toxics"),
        api.post("/proxies/ghost/toxics", json={"type": "noop"}),
    ):
        assert_error(response, 404, "proxy not found")
    assert tp.get_proxy("ghost") is None
    with pytest.raises(NotFound):
        Proxy(name="ghost", upstream="127.0.0.1:1", enabled=True, listen="").destroy()


def test_patch_and_post_are_partial_updates(api: httpx.Client, echo: Any) -> None:
    created = create(api, name="p", upstream="127.0.0.1:1").json()
    updated = api.patch("/proxies/p", json={"upstream": echo.address})
    assert updated.status_code == 200
    body = updated.json()
    assert body["upstream"] == echo.address
    assert body["enabled"] is True
    assert listening(body["listen"])
    assert body["listen"].split(":")[0] == created["listen"].split(":")[0]
    disabled = api.post("/proxies/p", json={"enabled": False}).json()
    assert disabled["enabled"] is False and disabled["upstream"] == echo.address
    assert not listening(disabled["listen"])
    moved = api.patch("/proxies/p", json={"listen": "127.0.0.1:0", "enabled": True}).json()
    assert moved["enabled"] is True and moved["listen"] != "127.0.0.1:0"
    assert listening(moved["listen"])
    assert_error(api.patch("/proxies/p", content=b"[1"), 400, "bad request body: unexpected EOF")


def test_delete_is_204_and_closes(tp: Toxiproxy, api: httpx.Client, echo: Any) -> None:
    proxy = tp.create(upstream=echo.address, name="gone")
    host, port = proxy.listen.rsplit(":", 1)
    client = socket.create_connection((host, int(port)), timeout=5)
    client.sendall(b"ping")
    assert client.recv(10) == b"ping"
    response = api.delete("/proxies/gone")
    assert response.status_code == 204 and response.content == b""
    assert client.recv(10) == b""
    client.close()
    assert not listening(proxy.listen)
    assert api.get("/proxies").json() == {}


# -- toxics -------------------------------------------------------------------------------------


def add(api: httpx.Client, proxy: str, **body: Any) -> httpx.Response:
    return api.post(f"/proxies/{proxy}/toxics", json=body)


def test_toxic_defaults_and_200(api: httpx.Client, tp: Toxiproxy) -> None:
    create(api, name="t", upstream="127.0.0.1:1")
    response = add(api, "t", type="latency", attributes={"latency": 10})
    assert response.status_code == 200
    assert response.text == (
        '{"attributes":{"latency":10,"jitter":0},"name":"latency_downstream",'
        '"type":"latency","stream":"downstream","toxicity":1}'
    )
    up = add(api, "t", type="latency", stream="upstream").json()
    assert up["name"] == "latency_upstream"
    proxy = tp.get_proxy("t")
    assert proxy is not None
    assert set(proxy.toxics()) == {"latency_downstream", "latency_upstream"}


def test_toxic_index_order_upstream_first(api: httpx.Client, helpers: Any) -> None:
    create(api, name="t", upstream="127.0.0.1:1")
    add(api, "t", type="noop", name="d1")
    add(api, "t", type="noop", name="u1", stream="upstream")
    add(api, "t", type="noop", name="d2", stream="DownStream")
    add(api, "t", type="noop", name="u2", stream="UPSTREAM")
    names = [t["name"] for t in helpers.toxics_of(api, "t")]
    assert names == ["u1", "u2", "d1", "d2"]
    assert api.get("/proxies/t").json()["toxics"] == helpers.toxics_of(api, "t")


def test_toxic_names_unique_across_streams(api: httpx.Client, tp: Toxiproxy) -> None:
    create(api, name="t", upstream="127.0.0.1:1")
    assert add(api, "t", type="noop", name="x").status_code == 200
    assert_error(
        add(api, "t", type="latency", name="x", stream="upstream"), 409, "toxic already exists"
    )
    proxy = tp.get_proxy("t")
    assert proxy is not None
    with pytest.raises(ProxyExists):  # the client maps every 409 to ProxyExists
        proxy.add_toxic(type="noop", name="x")


def test_toxic_validation_order(api: httpx.Client, tp: Toxiproxy) -> None:
    create(api, name="t", upstream="127.0.0.1:1")
    add(api, "t", type="noop", name="taken")
    stream_msg = "stream was invalid, can be either upstream or downstream"
    assert_error(add(api, "t", type="bogus", stream="sideways", name="taken"), 400, stream_msg)
    assert_error(add(api, "t", type="bogus", name="taken"), 400, "invalid toxic type")
    assert_error(add(api, "t", type="latency", stream=""), 400, stream_msg)
    proxy = tp.get_proxy("t")
    assert proxy is not None
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="bogus")


@pytest.mark.parametrize("value", [1.5, "10", True, 100.0, [1], 2**63])
def test_attributes_must_be_integers(api: httpx.Client, value: Any) -> None:
    create(api, name="t", upstream="127.0.0.1:1")
    response = add(api, "t", type="latency", attributes={"latency": value})
    assert response.status_code == 400
    assert response.json()["error"].startswith("bad request body: json: cannot unmarshal ")
    assert api.get("/proxies/t/toxics").json() == []


def test_attribute_shapes_of_every_type(api: httpx.Client) -> None:
    create(api, name="t", upstream="127.0.0.1:1")
    expected = {
        "latency": {"latency": 0, "jitter": 0},
        "bandwidth": {"rate": 0},
        "slow_close": {"delay": 0},
        "timeout": {"timeout": 0},
        "reset_peer": {"timeout": 0},
        "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
        "limit_data": {"bytes": 0},
        "noop": {},
    }
    for kind, attrs in expected.items():
        body = add(api, "t", type=kind, stream="upstream", attributes={"Unknown": 1}).json()
        assert body["attributes"] == attrs, kind
        assert list(body) == ["attributes", "name", "type", "stream", "toxicity"]


def test_partial_toxic_update_keeps_the_rest(api: httpx.Client) -> None:
    create(api, name="t", upstream="127.0.0.1:1")
    add(api, "t", type="latency", attributes={"latency": 100, "jitter": 10}, toxicity=0.5)
    response = api.patch(
        "/proxies/t/toxics/latency_downstream", json={"attributes": {"latency": 1000}}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["attributes"] == {"latency": 1000, "jitter": 10}
    assert body["toxicity"] == 0.5
    body = api.post("/proxies/t/toxics/latency_downstream", json={"toxicity": 0.25}).json()
    assert body["attributes"] == {"latency": 1000, "jitter": 10} and body["toxicity"] == 0.25
    response = api.patch(
        "/proxies/t/toxics/latency_downstream", json={"attributes": {"jitter": 0.5}}
    )
    assert response.status_code == 400
    assert_error(api.patch("/proxies/t/toxics/nope", json={}), 404, "toxic not found")
    assert api.get("/proxies/t/toxics/latency_downstream").json()["attributes"]["jitter"] == 10


def test_toxic_show_and_delete(api: httpx.Client, tp: Toxiproxy) -> None:
    create(api, name="t", upstream="127.0.0.1:1")
    add(api, "t", type="bandwidth", attributes={"rate": 5})
    shown = api.get("/proxies/t/toxics/bandwidth_downstream")
    assert shown.status_code == 200 and shown.json()["attributes"] == {"rate": 5}
    assert_error(api.get("/proxies/t/toxics/nope"), 404, "toxic not found")
    deleted = api.delete("/proxies/t/toxics/bandwidth_downstream")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(api.delete("/proxies/t/toxics/bandwidth_downstream"), 404, "toxic not found")
    proxy = tp.get_proxy("t")
    assert proxy is not None
    proxy.add_toxic(type="noop", name="n")
    assert proxy.destroy_toxic("n") is True
    with pytest.raises(NotFound):
        proxy.destroy_toxic("n")


def test_reset_enables_everything_and_drops_toxics(api: httpx.Client, tp: Toxiproxy) -> None:
    create(api, name="a", upstream="127.0.0.1:1", enabled=False)
    create(api, name="b", upstream="127.0.0.1:1")
    add(api, "b", type="latency", attributes={"latency": 100})
    add(api, "b", type="timeout", stream="upstream")
    response = api.post("/reset")
    assert response.status_code == 204 and response.content == b""
    for proxy in api.get("/proxies").json().values():
        assert proxy["enabled"] is True and proxy["toxics"] == []
        assert listening(proxy["listen"])
    assert tp.reset() is True


# -- populate -----------------------------------------------------------------------------------


def test_populate_creates_and_keeps_unchanged_toxics(api: httpx.Client, echo: Any) -> None:
    first = api.post(
        "/populate",
        json=[
            {"name": "a", "listen": "127.0.0.1:0", "upstream": echo.address},
            {"name": "b", "listen": "127.0.0.1:0", "upstream": echo.address, "enabled": False},
        ],
    )
    assert first.status_code == 201
    proxies = {p["name"]: p for p in first.json()["proxies"]}
    assert proxies["a"]["enabled"] is True and proxies["b"]["enabled"] is False
    add(api, "a", type="latency", attributes={"latency": 5})
    again = api.post(
        "/populate",
        json=[
            {"name": "a", "listen": proxies["a"]["listen"], "upstream": echo.address},
            {"name": "b", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
        ],
    )
    assert again.status_code == 201
    result = {p["name"]: p for p in again.json()["proxies"]}
    assert result["a"]["listen"] == proxies["a"]["listen"]
    assert [t["name"] for t in result["a"]["toxics"]] == ["latency_downstream"]
    assert result["b"]["upstream"] == "127.0.0.1:1" and result["b"]["enabled"] is True


def test_populate_validates_everything_first(api: httpx.Client) -> None:
    response = api.post(
        "/populate",
        json=[{"name": "ok", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"}, {"name": "bad"}],
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "missing required field: upstream at proxy 2",
        "status": 400,
        "proxies": None,
    }
    assert api.get("/proxies").json() == {}
    response = api.post("/populate", json=[{"upstream": "127.0.0.1:1"}])
    assert response.json()["error"] == "missing required field: name at proxy 1"
    response = api.post("/populate", json={"name": "x"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("bad request body: json: cannot unmarshal object")


def test_populate_failure_part_way_keeps_earlier(api: httpx.Client) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        response = api.post(
            "/populate",
            json=[
                {"name": "first", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"},
                {"name": "second", "upstream": "127.0.0.1:1", "listen": f"127.0.0.1:{port}"},
            ],
        )
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == f"listen tcp 127.0.0.1:{port}: bind: address already in use"
    assert [p["name"] for p in body["proxies"]] == ["first"]
    assert set(api.get("/proxies").json()) == {"first"}


def test_client_populate_and_destroy_all(tp: Toxiproxy, echo: Any) -> None:
    made = tp.populate([{"name": "x", "upstream": echo.address, "listen": "127.0.0.1:0"}])
    assert [p.name for p in made] == ["x"]
    tp.destroy_all()
    assert tp.proxies() == {}


def test_malformed_http_is_400(toxiproxy_handle: ToxiproxyHandle) -> None:
    with socket.create_connection((toxiproxy_handle.host, toxiproxy_handle.port), timeout=5) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400 ")
