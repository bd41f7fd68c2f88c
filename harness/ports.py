"""Ports for the services the harness starts, chosen where no outgoing connection can take them.

Binding port 0 hands out a port from the kernel's ephemeral range, the same range every
outgoing connection (a worker's PostgreSQL client, an HTTP client) draws its source port from.
Between choosing a port and the service binding it, or between a kill and the restart that
binds it again, such a connection can take it: a CI run lost a scenario to
``fakeapi: cannot bind 127.0.0.1:40553: Address already in use`` that way. The ports here
come from below (or above) ``net.ipv4.ip_local_port_range``, where only an explicit bind can
land, and each process walks its own stretch of them, so parallel runs do not pick alike.

Hand-written because no library we use offers it: ``portpicker`` and friends also bind 0.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000  # below this sit many well-known services' ports
_HIGHEST = 65_535


def ephemeral_range(path: Path = _RANGE_FILE) -> tuple[int, int] | None:
    """The kernel's ephemeral port range ``(low, high)``, or None where it cannot be read."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def candidate_ports(ephemeral: tuple[int, int] | None) -> range:
    """The ports the harness may hand out: the larger stretch outside ``ephemeral``.

    Empty when the ephemeral range leaves no room (then :func:`free_port` binds port 0).
    """
    if ephemeral is None:
        return range(0)
    low, high = ephemeral
    below = range(_LOWEST, max(_LOWEST, low))
    above = range(min(_HIGHEST + 1, max(_LOWEST, high + 1)), _HIGHEST + 1)
    return below if len(below) >= len(above) else above


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortPicker:
    """Hands out ports from ``candidates``, starting at an offset of its own, never one twice."""

    def __init__(self, candidates: range, *, start: int) -> None:
        self.candidates = candidates
        self._next = itertools.count(start)
        self._lock = threading.Lock()

    def pick(self, host: str) -> int | None:
        """A port of ``candidates`` free on ``host`` now, or None after trying each once."""
        size = len(self.candidates)
        for _ in range(size):
            with self._lock:
                port = self.candidates[next(self._next) % size]
            if _bindable(host, port):
                return port
        return None


_candidates = candidate_ports(ephemeral_range())
# Spread parallel processes (xdist workers, nested runs) over the stretch by their pid.
_picker = PortPicker(_candidates, start=(os.getpid() * 7919) % max(1, len(_candidates)))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, outside the ephemeral range where the kernel allows it."""
    port = _picker.pick(host)
    if port is not None:
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
