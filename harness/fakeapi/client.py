"""A small client for the fake joke API's control endpoints (``/_control/...``)."""

from __future__ import annotations

from typing import Any

from harness import http


class FakeApiClient:
    """Script faults, force duplicates and read the request record of a running fake API."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = http.request(method, self.url + path, json=body, timeout=self._timeout)
        if response.status_code >= 400:
            raise ValueError(f"fake API {method} {path}: {response.json().get('error')}")
        return response.json()

    def add_fault(self, kind: str, **spec: Any) -> dict[str, Any]:
        """Add one fault, e.g. ``add_fault("status", status=503, count=3)``; returns it with id."""
        body = {"kind": kind, **{k: v for k, v in spec.items() if v is not None}}
        result: dict[str, Any] = self._call("POST", "/_control/faults", body)
        return result

    def status(
        self,
        status: int,
        *,
        count: int | None = None,
        duration: float | None = None,
        retry_after: float | None = None,
    ) -> dict[str, Any]:
        """Answer ``status`` to the next ``count`` requests or for ``duration`` seconds."""
        return self.add_fault(
            "status", status=status, count=count, duration=duration, retry_after=retry_after
        )

    def slow(
        self, delay: float, *, count: int | None = None, duration: float | None = None
    ) -> dict[str, Any]:
        """Delay responses by ``delay`` seconds."""
        return self.add_fault("slow", delay=delay, count=count, duration=duration)

    def hang(self, *, count: int | None = None, duration: float | None = None) -> dict[str, Any]:
        """Hold requests without answering (until the window ends or the client gives up)."""
        return self.add_fault("hang", count=count, duration=duration)

    def malformed(
        self, *, count: int | None = None, duration: float | None = None
    ) -> dict[str, Any]:
        """Answer 200 with truncated JSON."""
        return self.add_fault("malformed", count=count, duration=duration)

    def faults(self) -> list[dict[str, Any]]:
        """The faults still active."""
        result: list[dict[str, Any]] = self._call("GET", "/_control/faults")["faults"]
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "/_control/faults")

    def set_pool(self, pool_size: int) -> None:
        """Draw jokes from ``pool_size`` ids (1 forces the same joke every time)."""
        self._call("POST", "/_control/jokes", {"pool_size": pool_size})

    def reset(self) -> None:
        """Clear faults and the request record, restore the default pool and the seeded draws."""
        self._call("POST", "/_control/reset")

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """The request record (from index ``since``), oldest first."""
        response = http.get(
            f"{self.url}/_control/requests", params={"since": since}, timeout=self._timeout
        )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result
