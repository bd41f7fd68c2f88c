"""The client's outcome rules (Jepsen's ok / error / unknown) and its records."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import respx

from harness.client import Client, HealthMonitor
from harness.history import read_history
from harness.history.store import HistoryWriter
from harness.wait import wait_for

URL = "http://sut.test"


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return Client(URL, HistoryWriter(tmp_path / "h.jsonl"))


@pytest.mark.parametrize(
    ("response", "outcome", "job_id"),
    [
        (httpx.Response(202, json={"job_id": 7}), "ok", 7),
        (httpx.Response(422, json={"detail": "bad category"}), "error", None),
        (httpx.Response(503, json={"detail": "db down"}), "unknown", None),
        (httpx.Response(202, json={"nope": 1}), "unknown", None),
        (httpx.Response(202, json={"job_id": "7"}), "unknown", None),
        (httpx.ConnectError("refused"), "error", None),
        (httpx.ReadTimeout("slow"), "unknown", None),
        (httpx.RemoteProtocolError("dropped"), "unknown", None),
    ],
)
@respx.mock
def test_submit_outcomes(
    client: Client, response: httpx.Response | Exception, outcome: str, job_id: int | None
) -> None:
    route = respx.post(f"{URL}/tasks/fetch-joke")
    if isinstance(response, Exception):
        route.mock(side_effect=response)
    else:
        route.mock(return_value=response)
    record = client.submit("dev")
    assert (record.outcome, record.job_id) == (outcome, job_id)
    assert record.args == {"category": "dev"}
    assert record.t_invoke <= record.t_complete
    assert (record.error is None) == (outcome == "ok")
    assert read_history(client.history.path).submits == [record]


@respx.mock
def test_submit_many_numbers_operations_and_sends_no_body_without_category(
    client: Client,
) -> None:
    route = respx.post(f"{URL}/tasks/fetch-joke").mock(
        side_effect=[httpx.Response(202, json={"job_id": n}) for n in (1, 2, 3)]
    )
    records = client.submit_many(3)
    assert [r.op_id for r in records] == [1, 2, 3]
    assert [r.job_id for r in records] == [1, 2, 3]
    assert route.calls[0].request.content == b""


@respx.mock
def test_health_monitor_records_statuses_and_no_answer(client: Client) -> None:
    respx.get(f"{URL}/health").mock(
        side_effect=[httpx.Response(200), httpx.ConnectError("down")] + [httpx.Response(503)] * 1000
    )
    with HealthMonitor(client, interval=0.01) as monitor:
        wait_for(lambda: monitor.samples >= 3, timeout=5.0, what="three health samples")
    values = [o.value for o in client.history.history.observations("health_status")]
    assert values[:3] == [200, None, 503]
