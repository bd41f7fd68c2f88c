"""``limit_data``: forwards at most ``bytes`` per connection and direction, then closes.

The count lives in per-connection state, so it survives changes to the toxic chain.
"""

from __future__ import annotations

from typing import ClassVar

from harness.toxiproxy.chan import Chunk, Stub
from harness.toxiproxy.toxics import Toxic, register


class LimitState:
    __slots__ = ("transmitted",)

    def __init__(self) -> None:
        self.transmitted = 0


@register
class LimitDataToxic(Toxic):
    type_name = "limit_data"
    go_struct = "LimitDataToxic"
    fields: ClassVar[dict[str, str]] = {"bytes": "int64"}

    def new_state(self) -> object:
        return LimitState()

    async def pipe(self, stub: Stub) -> None:
        state = stub.state
        assert isinstance(state, LimitState)
        limit = self.attrs["bytes"]
        remaining = limit - state.transmitted
        while (item := await self.next_chunk(stub)) is not None:
            remaining = max(remaining, 0)
            if remaining < len(item.data):
                item = Chunk(item.data[:remaining], item.ts)
            if item.data:
                await stub.send(item)
                state.transmitted += len(item.data)
            remaining = limit - state.transmitted
            if remaining <= 0:
                stub.close()
                return
