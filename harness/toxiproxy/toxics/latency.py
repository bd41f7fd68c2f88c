"""``latency``: each chunk leaves ``latency`` ± ``jitter`` ms after it arrived.

Delays are measured from the chunk's arrival, so back-to-back chunks do not add up; two latency
toxics in a chain do add (the second measures from when the first released the chunk). The input
buffer is large so throughput is not throttled by the delay (Toxiproxy buffers 1024 chunks).
"""

from __future__ import annotations

from typing import ClassVar

from harness.toxiproxy.chan import Stub, now
from harness.toxiproxy.toxics import Toxic, register


@register
class LatencyToxic(Toxic):
    type_name = "latency"
    go_struct = "LatencyToxic"
    fields: ClassVar[dict[str, str]] = {"latency": "int64", "jitter": "int64"}
    buffer_size = 4 * 1024 * 1024

    def delay(self, stub: Stub) -> float:
        """Toxiproxy's draw: ``latency + Int63n(2*jitter) - jitter`` milliseconds, in seconds."""
        delay = self.attrs["latency"]
        jitter = self.attrs["jitter"]
        if jitter > 0:
            delay += stub.rng.randrange(jitter * 2) - jitter
        return delay / 1000.0

    async def pipe(self, stub: Stub) -> None:
        while (item := await self.next_chunk(stub)) is not None:
            sleep = self.delay(stub) - (now() - item.ts)
            if not await stub.sleep(sleep):
                await stub.send(item)  # interrupted: pass it on at once, never drop data
                return
            item.ts += sleep
            await stub.send(item)
