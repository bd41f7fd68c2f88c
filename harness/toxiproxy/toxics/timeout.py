"""``timeout``: drops all data; with ``timeout`` > 0 closes after that many ms without input.

The timer restarts with every chunk that arrives (and is dropped). ``timeout`` 0 never closes.
Removing the toxic (also through ``/reset``) closes the connections it held.
"""

from __future__ import annotations

from typing import ClassVar

from harness.toxiproxy.chan import INTERRUPT, TIMEOUT, Stub
from harness.toxiproxy.toxics import Toxic, register


@register
class TimeoutToxic(Toxic):
    type_name = "timeout"
    go_struct = "TimeoutToxic"
    fields: ClassVar[dict[str, str]] = {"timeout": "int64"}
    closes_on_removal = True

    async def pipe(self, stub: Stub) -> None:
        timeout = self.ms("timeout")
        while True:
            item = await stub.recv(timeout if timeout > 0 else None)
            if item is INTERRUPT:
                return
            if item is None or item is TIMEOUT:
                stub.close()
                return
            # Anything else is data: dropped on the floor.
