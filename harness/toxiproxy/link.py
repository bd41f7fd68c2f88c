"""One proxied TCP connection: two sockets and a :class:`Link` per direction.

A link with no toxics runs on a fast path: bytes read from the source are written straight to the
destination transport inside ``data_received`` (no task, no queue), with flow control both ways
(the destination's write buffer pausing the source's reads). With toxics, the link runs
Toxiproxy's pipeline: ``source -> input Chan -> [noop, toxic1, ...] stubs -> output Chan ->
writer task -> destination``, each channel bounded in bytes. When the last toxic goes and nothing
is in flight, the link falls back to the fast path.

As in Toxiproxy, the end of one direction closes its destination socket completely (there is no
half-close), which in turn ends the other direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import TYPE_CHECKING, cast

from harness.toxiproxy.chan import Chan, Chunk, Stub, now
from harness.toxiproxy.toxics import DEFAULT_BUFFER, NOOP, ToxicWrapper

if TYPE_CHECKING:
    from harness.toxiproxy.proxy import Proxy

log = logging.getLogger("harness.toxiproxy")

NOOP_WRAPPER = ToxicWrapper(
    name="", type="noop", stream="", toxicity=1.0, toxic=NOOP, direction=-1, index=0
)
WRITE_HIGH_WATER = 256 * 1024
"""Bytes a destination transport buffers before its source stops reading."""
OUTPUT_BUFFER = DEFAULT_BUFFER


class Side(asyncio.Protocol):
    """The protocol on one socket; forwards events to the links it feeds and drains."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reads: Link | None = None  # the link whose source is this socket
        self.writes: Link | None = None  # the link whose destination is this socket
        self.paused_reasons: set[str] = set()
        self.write_paused = False
        self.lost = False
        self.conn: Connection | None = None
        self._early: list[bytes] = []
        self._early_eof = False

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but quack alike.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        link = self.reads
        if link is None:
            self._early.append(data)
            self.pause("setup")
            return
        link.feed(data)

    def eof_received(self) -> bool:
        if self.reads is None:
            self._early_eof = True
        else:
            self.reads.feed_eof()
        return True  # the links decide when to close

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.reads is not None:
            self.reads.feed_eof()
        else:
            self._early_eof = True
        if self.writes is not None:
            self.writes.dest_lost()
        if self.conn is not None:
            self.conn.side_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.writes is not None:
            self.writes.dest_paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.writes is not None:
            self.writes.dest_resumed()

    # -- helpers -------------------------------------------------------------------------------
    def pause(self, reason: str) -> None:
        if not self.paused_reasons and self.transport is not None and not self.lost:
            self.transport.pause_reading()
        self.paused_reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.paused_reasons:
            self.paused_reasons.discard(reason)
            if not self.paused_reasons and self.transport is not None and not self.lost:
                self.transport.resume_reading()

    def attach(self, reads: Link, writes: Link) -> None:
        """Wire the links, replaying anything that arrived while the upstream was dialled."""
        self.reads = reads
        self.writes = writes
        early, self._early = self._early, []
        for data in early:
            reads.feed(data)
        if self._early_eof or self.lost:
            reads.feed_eof()
        self.resume("setup")

    def set_linger_zero(self) -> None:
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Link:
    """One direction of a connection with its toxic chain."""

    def __init__(self, conn: Connection, direction: int, source: Side, dest: Side) -> None:
        self.conn = conn
        self.direction = direction
        self.source = source
        self.dest = dest
        self.rng = conn.proxy.rng
        self.fast = True
        self.stubs: list[Stub] = []
        self.input: Chan | None = None
        self.output: Chan | None = None
        self.writer: asyncio.Task[None] | None = None
        self.eof = False  # the source ended (fast path)
        self.done = False  # the destination was closed by this link
        self.dead = False  # a stub closed: the link is ending, chain edits are ignored
        self.editing = False  # a chain edit is awaiting stubs: no fast-path switch meanwhile
        self._dest_ready: asyncio.Event | None = None

    # -- start ---------------------------------------------------------------------------------
    def start(self, chain: list[ToxicWrapper]) -> None:
        """Begin with the proxy's current chain for this direction (``chain[0]`` is the noop)."""
        if len(chain) > 1:
            self._build_pipeline(chain)

    def _build_pipeline(self, chain: list[ToxicWrapper]) -> None:
        self.fast = False
        self.input = Chan(chain[0].toxic.buffer_size)
        self.input.set_on_room(lambda: self.source.resume("chan"))
        self.stubs = []
        chans = [self.input]
        for i in range(1, len(chain)):
            chans.append(Chan(chain[i].toxic.buffer_size))
        self.output = Chan(OUTPUT_BUFFER)
        chans.append(self.output)
        for i, wrapper in enumerate(chain):
            stub = Stub(chans[i], chans[i + 1], self.rng)
            stub.state = wrapper.toxic.new_state()
            self.stubs.append(stub)
        for stub, wrapper in zip(self.stubs, chain, strict=True):
            stub.start(wrapper)
        self._dest_ready = asyncio.Event()
        if not self.dest.write_paused:
            self._dest_ready.set()
        self.writer = asyncio.get_running_loop().create_task(self._write(self.output))

    # -- source events -------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self.fast:
            if self.eof or self.done:
                return
            transport = self.dest.transport
            if transport is not None and not transport.is_closing():
                transport.write(data)
            return
        assert self.input is not None
        self.input.put_nowait(Chunk(data, now()))
        if not self.input.has_room():
            self.source.pause("chan")

    def feed_eof(self) -> None:
        if self.eof:
            return
        self.eof = True
        if self.fast:
            self._finish()
        else:
            assert self.input is not None
            self.input.put_nowait(None)

    # -- destination events --------------------------------------------------------------------
    def dest_paused(self) -> None:
        if self.fast:
            self.source.pause("dest")
        elif self._dest_ready is not None:
            self._dest_ready.clear()

    def dest_resumed(self) -> None:
        self.source.resume("dest")
        if self._dest_ready is not None:
            self._dest_ready.set()

    def dest_lost(self) -> None:
        self.source.resume("dest")
        if self._dest_ready is not None:
            self._dest_ready.set()

    # -- writer (pipeline mode) ----------------------------------------------------------------
    async def _write(self, output: Chan) -> None:
        assert self._dest_ready is not None
        while True:
            if not output._items:
                if self._try_collapse():
                    return
                await output.wait_readable()
                continue
            item = output.get_nowait()
            if item is None:
                self._finish()
                return
            transport = self.dest.transport
            if transport is None or transport.is_closing():
                continue  # like a failed write in Toxiproxy: the data is lost
            transport.write(item.data)
            if self.dest.write_paused:
                self._dest_ready.clear()
                await self._dest_ready.wait()

    def _try_collapse(self) -> bool:
        """Back to the fast path when only the noop is left and nothing is in flight."""
        if len(self.stubs) != 1 or self.dead or self.eof or self.editing:
            return False
        stub = self.stubs[0]
        assert self.input is not None and self.output is not None
        if self.input._items or self.output._items or not stub.idle:
            return False
        stub.cancel()
        self.stubs = []
        self.input = self.output = None
        self.writer = None
        self._dest_ready = None
        self.fast = True
        self.source.resume("chan")
        if self.dest.write_paused:
            self.source.pause("dest")
        return True

    def _finish(self) -> None:
        """End of this direction: close the destination (with RST if SO_LINGER 0 was set)."""
        if self.done:
            return
        self.done = True
        self.dest.close()
        self.conn.link_done()

    # -- chain edits (called with the proxy's toxic lock held) ---------------------------------
    async def add_toxic(self, wrapper: ToxicWrapper, chain: list[ToxicWrapper]) -> None:
        if self.done or self.dead:
            return
        if self.fast:
            if not self.eof:
                self._build_pipeline(chain)
            return
        self.editing = True
        try:
            last = self.stubs[-1]
            newin = Chan(wrapper.toxic.buffer_size)
            stub = Stub(newin, last.output, self.rng)
            stub.state = wrapper.toxic.new_state()
            if await last.interrupt() and not self.conn.closed:
                last.output = newin
                self.stubs.append(stub)
                stub.start(wrapper)
                last.start(chain[len(self.stubs) - 2])
            else:
                self.dead = True
        finally:
            self.editing = False

    async def update_toxic(self, wrapper: ToxicWrapper) -> None:
        if self.fast or self.dead or wrapper.index >= len(self.stubs):
            return
        self.editing = True
        try:
            stub = self.stubs[wrapper.index]
            if await stub.interrupt() and not self.conn.closed:
                stub.start(wrapper)
        finally:
            self.editing = False

    async def remove_toxic(self, wrapper: ToxicWrapper, index: int, prev: ToxicWrapper) -> None:
        if self.fast or self.dead or index >= len(self.stubs):
            return
        self.editing = True
        try:
            stub = self.stubs[index]
            if not await stub.interrupt() or self.conn.closed:
                self.dead = True
                return
            if wrapper.toxic.closes_on_removal:
                stub.close()
                self.dead = True
                return
            before = self.stubs[index - 1]
            restart = await before.interrupt() and not self.conn.closed
            stub.input.drain_into(stub.output)
            before.output = stub.output
            del self.stubs[index]
            if restart:
                before.start(prev)
        finally:
            self.editing = False
        if len(self.stubs) == 1 and self.output is not None:
            self.output.wake_readers()  # the writer re-checks whether the fast path can resume

    def cancel(self) -> None:
        for stub in self.stubs:
            stub.cancel()
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()


class Connection:
    """A client socket, its upstream socket and the two links between them."""

    def __init__(self, proxy: Proxy, client: Side, upstream: Side) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        from harness.toxiproxy.toxics import DOWNSTREAM, UPSTREAM

        self.up = Link(self, UPSTREAM, client, upstream)
        self.down = Link(self, DOWNSTREAM, upstream, client)
        self._done = 0
        self.closed = False
        client.conn = upstream.conn = self

    def start(
        self, up_chain: list[ToxicWrapper], down_chain: list[ToxicWrapper], opened: bool = True
    ) -> None:
        """Run both links; ``opened``: a new connection (``reset_peer`` then arms SO_LINGER 0,
        as Toxiproxy does only for connections opened after the toxic was added)."""
        for chain in (up_chain, down_chain):
            if opened and any(w.toxic.resets_peer for w in chain):
                self.client.set_linger_zero()
                self.upstream.set_linger_zero()
        self.up.start(up_chain)
        self.down.start(down_chain)
        self.client.attach(self.up, self.down)
        self.upstream.attach(self.down, self.up)

    def link(self, direction: int) -> Link:
        return self.up if direction == self.up.direction else self.down

    def link_done(self) -> None:
        self._done += 1
        if self._done >= 2 and not self.closed:
            self.closed = True
            self.proxy.connection_closed(self)
            self.up.cancel()
            self.down.cancel()

    def side_lost(self) -> None:
        """Both sockets are gone: nothing can be delivered any more, stop every task."""
        if self.client.lost and self.upstream.lost and not self.closed:
            self.closed = True
            self.proxy.connection_closed(self)
            self.up.cancel()
            self.down.cancel()

    def abort(self) -> None:
        """Close both sockets at once (proxy disabled or deleted)."""
        self.closed = True
        self.up.cancel()
        self.down.cancel()
        self.client.abort()
        self.upstream.abort()
