"""A Jepsen-style client: submits jobs through the SUT's API and records every submission.

Outcomes follow Jepsen's rule: ``ok`` only with a job id in hand; ``error`` only when the job
certainly does not exist (a 4xx answer, or the connection was refused so nothing was sent);
``unknown`` for everything else (timeouts, dropped connections, 5xx), because the API may have
committed the job before failing to answer. The checker counts unknown submissions that ran
anyway as ``recovered``.
"""

from __future__ import annotations

import itertools
import threading
import time
from types import TracebackType
from typing import Any

import httpx

from harness import http
from harness.history.records import Observation, Submit
from harness.history.store import HistoryWriter

SUBMIT_PATH = "/tasks/fetch-joke"


class Client:
    """Submit ``fetch_and_cache_joke`` jobs to the SUT's API and record ``submit`` operations."""

    def __init__(
        self,
        base_url: str,
        history: HistoryWriter,
        *,
        timeout: float = 5.0,
        health_timeout: float = 2.0,
        health_path: str = "/health",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.health_timeout = health_timeout
        self.health_path = health_path
        self.history = history
        self._http = http.client(base_url=self.base_url, timeout=timeout)
        self._ops = itertools.count(1)
        self._lock = threading.Lock()

    def submit(self, category: str | None = None) -> Submit:
        """POST /tasks/fetch-joke once and record the outcome; never raises for SUT failures."""
        with self._lock:
            op_id = next(self._ops)
        args: dict[str, Any] = {} if category is None else {"category": category}
        t_invoke = time.time()
        outcome, job_id, error = "unknown", None, None
        try:
            response = self._http.post(SUBMIT_PATH, json=args or None)
        except httpx.ConnectError as exc:
            outcome, error = "error", f"connection refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            outcome, job_id, error = _classify(response)
        record = Submit(
            op_id=op_id,
            t_invoke=t_invoke,
            t_complete=time.time(),
            outcome=outcome,
            job_id=job_id,
            args=args,
            error=error,
        )
        self.history.write(record)
        return record

    def submit_many(self, n: int, category: str | None = None) -> list[Submit]:
        """Submit ``n`` jobs one after the other."""
        return [self.submit(category) for _ in range(n)]

    def health(self) -> int | None:
        """GET ``health_path`` (/health) and record a ``health_status`` observation (None: no
        answer)."""
        try:
            status: int | None = self._http.get(
                self.health_path, timeout=self.health_timeout
            ).status_code
        except httpx.HTTPError:
            status = None
        self.history.write(Observation(name="health_status", value=status, t=time.time()))
        return status

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _classify(response: httpx.Response) -> tuple[str, int | None, str | None]:
    if 200 <= response.status_code < 300:
        try:
            job_id = response.json()["job_id"]
        except (ValueError, KeyError, TypeError):
            return (
                "unknown",
                None,
                f"{response.status_code} without a job id: {response.text[:200]}",
            )
        if isinstance(job_id, int):
            return "ok", job_id, None
        return "unknown", None, f"job_id is not an integer: {job_id!r}"
    if 400 <= response.status_code < 500:
        return "error", None, f"{response.status_code}: {response.text[:200]}"
    return "unknown", None, f"{response.status_code}: {response.text[:200]}"


class HealthMonitor:
    """Samples ``GET /health`` every ``interval`` seconds in a thread while the block runs.

    The pacing uses ``Event.wait`` (a sampling period, not synchronisation): stopping is
    immediate, and each sample is written as a ``health_status`` observation.
    """

    def __init__(self, client: Client, *, interval: float = 0.05) -> None:
        self.client = client
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-monitor", daemon=True)
        self.samples = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.client.health()
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> HealthMonitor:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)
