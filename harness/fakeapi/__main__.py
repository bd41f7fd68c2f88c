"""``python -m harness.fakeapi [--host 127.0.0.1] [--port 0] [--seed N]``.

Binds first, then prints ``fakeapi: listening on http://HOST:PORT`` (flushed) and serves until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import socket
import sys

import uvicorn

from harness.fakeapi.app import create_app


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
    config = uvicorn.Config(
        create_app(args.seed), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    print(f"fakeapi: listening on http://{shown}:{port}", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
