"""Toxics with Toxiproxy 2.12 semantics, one small module per type.

A toxic type is a :class:`Toxic` subclass registered under its Toxiproxy name. Attributes are
integers (Go ``int64``/``int`` fields): the API rejects anything else with a 400. A
:class:`ToxicWrapper` is one named toxic on a proxy (type, stream, toxicity, attributes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from harness.toxiproxy.chan import INTERRUPT, Chunk

if TYPE_CHECKING:
    from harness.toxiproxy.chan import Stub

UPSTREAM = 0
"""Client to upstream server."""
DOWNSTREAM = 1
"""Upstream server to client."""

DEFAULT_BUFFER = 64 * 1024
"""Bytes a toxic's input channel holds before the previous stage waits (backpressure)."""


class Toxic:
    """Base of every toxic type: attribute spec plus the ``pipe`` coroutine."""

    type_name: ClassVar[str] = ""
    go_struct: ClassVar[str] = ""
    # attribute name -> Go type name, in Go's JSON field order
    fields: ClassVar[dict[str, str]] = {}
    buffer_size: ClassVar[int] = DEFAULT_BUFFER
    closes_on_removal: ClassVar[bool] = False
    resets_peer: ClassVar[bool] = False

    def __init__(self, **attrs: int) -> None:
        self.attrs: dict[str, int] = {name: 0 for name in self.fields}
        self.attrs.update(attrs)

    def copy(self) -> Toxic:
        return type(self)(**self.attrs)

    def new_state(self) -> object:
        """Per-connection state kept across chain changes (``None`` when stateless)."""
        return None

    def ms(self, name: str) -> float:
        """Attribute ``name`` (milliseconds) in seconds."""
        return self.attrs[name] / 1000.0

    async def next_chunk(self, stub: Stub) -> Chunk | None:
        """The next chunk, or ``None`` when :meth:`pipe` must return: on an interrupt (the
        chain changes) or at end of stream (then the stub is closed, passing the EOF on)."""
        item = await stub.recv()
        if item is INTERRUPT:
            return None
        if item is None:
            stub.close()
            return None
        assert isinstance(item, Chunk)
        return item

    async def pipe(self, stub: Stub) -> None:
        raise NotImplementedError


REGISTRY: dict[str, type[Toxic]] = {}


def register(cls: type[Toxic]) -> type[Toxic]:
    REGISTRY[cls.type_name] = cls
    return cls


@dataclass
class ToxicWrapper:
    """One named toxic on a proxy, as the API shows it."""

    name: str
    type: str
    stream: str
    toxicity: float
    toxic: Toxic
    direction: int
    index: int = field(default=-1)

    def to_json(self) -> dict[str, object]:
        return {
            "attributes": dict(self.toxic.attrs),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
        }


def parse_direction(stream: str) -> int | None:
    """Toxiproxy's ``stream.ParseDirection``: case-insensitive ``upstream``/``downstream``."""
    lowered = stream.lower()
    if lowered == "upstream":
        return UPSTREAM
    if lowered == "downstream":
        return DOWNSTREAM
    return None


# Import the toxic modules so they register themselves (order is irrelevant).
from harness.toxiproxy.toxics import (  # noqa: E402
    bandwidth,
    latency,
    limit_data,
    noop,
    reset_peer,
    slicer,
    slow_close,
    timeout,
)

NOOP = noop.NoopToxic()
"""The hidden toxic at the head of every chain, also run when a toxicity draw fails."""

__all__ = [
    "DOWNSTREAM",
    "NOOP",
    "REGISTRY",
    "UPSTREAM",
    "Toxic",
    "ToxicWrapper",
    "bandwidth",
    "latency",
    "limit_data",
    "parse_direction",
    "reset_peer",
    "slicer",
    "slow_close",
    "timeout",
]
