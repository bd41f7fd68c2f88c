"""``python -m harness.fakeapi [--host 127.0.0.1] [--port 0] [--seed N]``.

Binds first, then prints ``fakeapi: listening on http://HOST:PORT`` (flushed) and serves until
SIGTERM/SIGINT; requests held by a ``slow`` or ``hang`` fault end at once on SIGTERM.
"""

from __future__ import annotations

import argparse
import socket
import sys

import uvicorn

from harness.fakeapi.app import State, create_app

#: After SIGTERM, requests still running after this many seconds are cancelled.
GRACEFUL_SHUTDOWN = 5


class _Server(uvicorn.Server):
    """uvicorn that first ends the requests held by slow and hang faults, then shuts down."""

    def __init__(self, config: uvicorn.Config, state: State) -> None:
        super().__init__(config)
        self.fake_state = state

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.fake_state.stopping.set()
        await super().shutdown(sockets=sockets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.fakeapi", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument("--seed", type=int, default=0, help="seed for joke draws (default 0)")
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"fakeapi: cannot bind {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    # Listening before uvicorn takes over: connections queue in the backlog, none are refused.
    sock.listen(128)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    app = create_app(args.seed)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    server = _Server(config, app.state.fake)
    print(f"fakeapi: listening on http://{shown}:{port}", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
