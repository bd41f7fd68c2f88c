"""``slow_close``: data passes; after the source's end of stream, closing waits ``delay`` ms.

One deliberate difference from Toxiproxy: if the toxic is interrupted (updated or removed) while
it holds the end of stream, it closes at once instead of losing the end of stream.
"""

from __future__ import annotations

from typing import ClassVar

from harness.toxiproxy.chan import INTERRUPT, Chunk, Stub
from harness.toxiproxy.toxics import Toxic, register


@register
class SlowCloseToxic(Toxic):
    type_name = "slow_close"
    go_struct = "SlowCloseToxic"
    fields: ClassVar[dict[str, str]] = {"delay": "int64"}

    async def pipe(self, stub: Stub) -> None:
        while True:
            item = await stub.recv()
            if item is INTERRUPT:
                return
            if item is None:
                await stub.sleep(self.ms("delay"))
                stub.close()
                return
            assert isinstance(item, Chunk)
            await stub.send(item)
