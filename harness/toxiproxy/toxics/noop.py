"""``noop``: passes data through unchanged (also the hidden head of every toxic chain)."""

from __future__ import annotations

from typing import ClassVar

from harness.toxiproxy.chan import Stub
from harness.toxiproxy.toxics import Toxic, register


@register
class NoopToxic(Toxic):
    type_name = "noop"
    go_struct = "NoopToxic"
    fields: ClassVar[dict[str, str]] = {}

    async def pipe(self, stub: Stub) -> None:
        while (item := await self.next_chunk(stub)) is not None:
            await stub.send(item)
