"""``slicer``: splits data into chunks of about ``average_size`` ± ``size_variation`` bytes.

``delay`` microseconds pass between slices. Same recursive split as Toxiproxy.
"""

from __future__ import annotations

from typing import ClassVar

from harness.toxiproxy.chan import Chunk, Stub
from harness.toxiproxy.toxics import Toxic, register


@register
class SlicerToxic(Toxic):
    type_name = "slicer"
    go_struct = "SlicerToxic"
    fields: ClassVar[dict[str, str]] = {
        "average_size": "int",
        "size_variation": "int",
        "delay": "int",
    }

    def chunk(self, stub: Stub, start: int, end: int) -> list[int]:
        """Offsets ``[s0, e0, s1, e1, ...]`` slicing ``data[start:end]``."""
        avg = self.attrs["average_size"]
        var = self.attrs["size_variation"]
        out: list[int] = []
        stack = [(start, end)]
        while stack:
            s, e = stack.pop()
            if (e - s) - avg <= var or e - s <= 1:
                out += [s, e]
                continue
            mid = s + (e - s) // 2
            if var > 0:
                mid += stub.rng.randrange(var * 2) - var
            mid = min(max(mid, s + 1), e - 1)
            stack.append((mid, e))
            stack.append((s, mid))
        return out

    async def pipe(self, stub: Stub) -> None:
        delay = self.attrs["delay"] / 1_000_000
        while (item := await self.next_chunk(stub)) is not None:
            data = item.data
            offsets = self.chunk(stub, 0, len(data))
            for i in range(1, len(offsets), 2):
                await stub.send(Chunk(data[offsets[i - 1] : offsets[i]], item.ts))
                if not await stub.sleep(delay):
                    if offsets[i] < len(data):
                        await stub.send(Chunk(data[offsets[i] :], item.ts))
                    return
