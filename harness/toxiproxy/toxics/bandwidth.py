"""``bandwidth``: limits throughput to ``rate`` KB/s (1 KB = 1000 bytes), in 100 ms slices.

Rate 0 stalls the data but keeps the connection open. Same accounting as Toxiproxy: the sleep
owed accumulates per chunk and timer overshoot is paid back on the next chunk.
"""

from __future__ import annotations

from typing import ClassVar

from harness.toxiproxy.chan import Chunk, Stub, now
from harness.toxiproxy.toxics import Toxic, register

SLICE = 0.1


@register
class BandwidthToxic(Toxic):
    type_name = "bandwidth"
    go_struct = "BandwidthToxic"
    fields: ClassVar[dict[str, str]] = {"rate": "int64"}

    async def pipe(self, stub: Stub) -> None:
        rate = self.attrs["rate"]  # KB/s == bytes per millisecond
        sleep = 0.0
        while (item := await self.next_chunk(stub)) is not None:
            if rate <= 0:
                sleep = 0.0
            else:
                sleep += len(item.data) / rate / 1000.0
            # Large chunks at a low rate go out in 100 ms slices of rate*100 bytes.
            per_slice = max(rate, 0) * 100
            while len(item.data) > per_slice:
                if not await stub.sleep(SLICE):
                    await stub.send(item)
                    return
                if per_slice > 0:
                    await stub.send(Chunk(item.data[:per_slice], item.ts))
                    item.data = item.data[per_slice:]
                    sleep -= SLICE
            start = now()
            if not await stub.sleep(sleep):
                await stub.send(item)
                return
            sleep -= now() - start
            await stub.send(item)
