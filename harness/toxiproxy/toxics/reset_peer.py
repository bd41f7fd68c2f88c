"""``reset_peer``: on the first chunk (dropped) or end of stream, wait ``timeout`` ms, then close.

Connections opened while the toxic exists get SO_LINGER 0 on both sockets, so the close is a TCP
RST (the peer sees ECONNRESET). Connections that were already open close normally (FIN): that is
Toxiproxy's behaviour too. Like Toxiproxy, the wait is not interrupted by chain changes.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from harness.toxiproxy.chan import INTERRUPT, Stub
from harness.toxiproxy.toxics import Toxic, register


@register
class ResetPeerToxic(Toxic):
    type_name = "reset_peer"
    go_struct = "ResetToxic"
    fields: ClassVar[dict[str, str]] = {"timeout": "int64"}
    resets_peer = True

    async def pipe(self, stub: Stub) -> None:
        item = await stub.recv()
        if item is INTERRUPT:
            return
        timeout = self.ms("timeout")
        if timeout > 0:
            await asyncio.sleep(timeout)
        stub.close()
