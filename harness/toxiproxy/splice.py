"""The zero-copy path for a connection without toxics: ``splice(2)`` through a pipe.

Each direction moves bytes ``source socket -> pipe -> destination socket`` with ``os.splice``, so
they never enter Python (no ``bytes`` objects, no copies in userspace), driven by
``loop.add_reader``/``add_writer`` on the raw sockets. Backpressure: when the destination cannot
take what the pipe holds, the source stops being read until the pipe is empty, so a connection
holds at most one pipe (256 KiB) per direction besides the kernel's socket buffers.

As on the toxic path (``link.py``), the end of one direction closes its destination socket
completely, which ends the other direction once its pipe is flushed. When a toxic is added, the
connection moves to the toxic path for good: what the pipes hold is read out and written first,
then both sockets get asyncio transports and ``link.Connection`` takes over (see
:meth:`SplicedConnection.upgrade`). Linux only; ``proxy.py`` uses it when ``os.splice`` exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.toxiproxy.link import Side

log = logging.getLogger("harness.toxiproxy")

AVAILABLE = (
    hasattr(os, "splice")
    and hasattr(os, "SPLICE_F_NONBLOCK")
    and os.environ.get("TOXIPROXY_SPLICE", "1") != "0"
)
"""``os.splice`` exists (Linux) and ``TOXIPROXY_SPLICE=0`` does not turn the path off."""
_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if AVAILABLE else 0
PIPE_SIZE = 256 * 1024
"""Pipe capacity asked for (the bytes a direction holds besides the socket buffers)."""
CHUNK = PIPE_SIZE
"""Bytes moved per splice call at most."""


class _Direction:
    """``src`` -> pipe -> ``dst``."""

    def __init__(self, conn: SplicedConnection, src: socket.socket, dst: socket.socket) -> None:
        self.conn = conn
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # bigger moves per call; memory stays bounded
            fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.pending = 0  # bytes in the pipe
        self.reading = False
        self.writing = False
        self.eof = False  # the source ended (or failed)
        self.done = False  # the destination was closed for this direction

    # -- registration ----------------------------------------------------------------------
    def start_reading(self) -> None:
        if not self.reading and not self.eof and not self.done:
            self.conn.loop.add_reader(self.src_fd, self._readable)
            self.reading = True

    def stop_reading(self) -> None:
        if self.reading:
            self.conn.loop.remove_reader(self.src_fd)
            self.reading = False

    def _start_writing(self) -> None:
        if not self.writing:
            self.conn.loop.add_writer(self.dst_fd, self._flush)
            self.writing = True

    def _stop_writing(self) -> None:
        if self.writing:
            self.conn.loop.remove_writer(self.dst_fd)
            self.writing = False

    # -- events ----------------------------------------------------------------------------
    def _readable(self) -> None:
        try:
            n = os.splice(self.src_fd, self.w, CHUNK, flags=_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by peer and the like: the end of this source, as in Go
            n = 0
        if n == 0:
            self.eof = True
            self.stop_reading()
            if self.pending == 0:
                self.conn.direction_ended(self)
            return
        self.pending += n
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            try:
                n = os.splice(self.r, self.dst_fd, self.pending, flags=_FLAGS)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # the destination is gone: what the pipe holds is lost
                self.pending = 0
                self.eof = True
                self.stop_reading()
                self._stop_writing()
                self.conn.direction_ended(self)
                return
            self.pending -= n
        if self.pending:
            self.stop_reading()  # backpressure: the destination is full
            self._start_writing()
            return
        self._stop_writing()
        if self.eof:
            self.conn.direction_ended(self)
        else:
            self.start_reading()

    def source_closed(self) -> None:
        """The source socket was closed by the other direction's end."""
        self.reading = False  # its registrations went with it
        self.eof = True
        if self.pending == 0 or self.done:
            self.conn.direction_ended(self)

    def take(self) -> bytes:
        """Read out what the pipe holds (moving to the toxic path)."""
        chunks = []
        while self.pending > 0:
            data = os.read(self.r, self.pending)
            if not data:
                break
            chunks.append(data)
            self.pending -= len(data)
        return b"".join(chunks)

    def close_pipe(self) -> None:
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)


class SplicedConnection:
    """A client socket and its upstream socket, joined by two splice directions."""

    def __init__(
        self,
        client: socket.socket,
        upstream: socket.socket,
        on_closed: Callable[[SplicedConnection], None],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.upstream = upstream
        self.on_closed = on_closed
        self.closed = False
        self.upgrading = False
        self.up = _Direction(self, client, upstream)
        try:
            self.down = _Direction(self, upstream, client)
        except OSError:
            self.up.close_pipe()
            raise

    def start(self) -> None:
        self.up.start_reading()
        self.down.start_reading()

    def _close_socket(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if fd < 0:
            return
        for direction in (self.up, self.down):
            if direction.src is sock:
                direction.stop_reading()
            if direction.dst is sock:
                direction._stop_writing()
        sock.close()

    def direction_ended(self, direction: _Direction) -> None:
        """``direction``'s source ended and its pipe is empty: close its destination."""
        if direction.done or self.closed:
            return
        direction.done = True
        self._close_socket(direction.dst)
        other = self.down if direction is self.up else self.up
        if other.done:
            self._release()
        else:
            other.source_closed()

    def _release(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            self._close_socket(sock)
        self.up.close_pipe()
        self.down.close_pipe()
        self.on_closed(self)

    def abort(self) -> None:
        """Close both sockets at once (proxy disabled or deleted)."""
        self._release()

    async def upgrade(self, make_side: Callable[[], Side]) -> tuple[Side, Side] | None:
        """Hand both sockets to asyncio transports (for toxics); ``None`` if the connection is
        ending. What the pipes held is written first, so no byte is lost or reordered."""
        if self.closed or self.up.eof or self.down.eof or self.upgrading:
            return None
        self.upgrading = True
        for direction in (self.up, self.down):
            direction.stop_reading()
            direction._stop_writing()
        to_upstream, to_client = self.up.take(), self.down.take()
        self.up.close_pipe()
        self.down.close_pipe()
        self.closed = True
        self.on_closed(self)
        client_side, upstream_side = make_side(), make_side()
        try:
            await self.loop.connect_accepted_socket(lambda: client_side, sock=self.client)
            await self.loop.connect_accepted_socket(lambda: upstream_side, sock=self.upstream)
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.ENOTCONN):
                log.warning("cannot hand a connection to the toxic path: %s", exc)
            for side, sock in ((client_side, self.client), (upstream_side, self.upstream)):
                if side.transport is not None:
                    side.abort()
                else:
                    sock.close()
            return None
        if to_upstream and upstream_side.transport is not None:
            upstream_side.transport.write(to_upstream)
        if to_client and client_side.transport is not None:
            client_side.transport.write(to_client)
        return client_side, upstream_side


__all__ = ["AVAILABLE", "SplicedConnection"]
