"""``slow_close``: data passes; after the source's end of stream, closing waits ``delay`` ms.

As in Toxiproxy (whose closed input channel keeps yielding end of stream), an update while the
end of stream is held starts the new delay afresh; removing the toxic passes the end on at once.
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
                if await stub.sleep(self.ms("delay")):
                    stub.close()
                else:  # interrupted: leave the end of stream for whatever runs next
                    stub.input.push_front(None)
                return
            assert isinstance(item, Chunk)
            await stub.send(item)
