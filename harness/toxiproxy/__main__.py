"""``python -m harness.toxiproxy [--host 127.0.0.1] [--port 8474] [--seed N] [--loop auto]``

Prints exactly one line ``toxiproxy: API listening on http://HOST:PORT`` on stdout once the API
listens (HOST:PORT is the bound address, so ``--port 0`` shows the port picked). SIGTERM or SIGINT
closes every listener and connection and exits 0. A bad argument prints one line on stderr and
exits 2 (also for a host that does not resolve); an address that cannot be bound (in use, not
ours) prints one line and exits 1. Logs go to stderr
(``TOXIPROXY_LOG_LEVEL``, default ``WARNING``). ``--loop auto`` (the default) runs on uvloop when
it is installed (optional: it makes the proxy cheaper per packet), else on asyncio's own loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from harness.toxiproxy.proxy import ApiError
from harness.toxiproxy.server import ToxiproxyServer

USAGE = "usage: python -m harness.toxiproxy [--host HOST] [--port PORT] [--seed N] [--loop L]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"toxiproxy: {message} ({USAGE})", file=sys.stderr, flush=True)
        raise SystemExit(2)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer from 0 to 65535, got {text!r}")
    return int(text)


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer, got {text!r}") from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="python -m harness.toxiproxy", add_help=True)
    parser.add_argument("--host", default="127.0.0.1", help="address the API binds (127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8474, help="API port; 0 picks a free one")
    parser.add_argument("--seed", type=_seed, default=None, help="seed for toxicity and jitter")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop if installed (auto), or force one",
    )
    return parser.parse_args(argv)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The uvloop event loop factory if chosen (or ``auto`` and installed), else ``None``."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            print(f"toxiproxy: --loop uvloop: uvloop is not installed ({USAGE})", file=sys.stderr)
            raise SystemExit(2) from None
        return None
    return uvloop.new_event_loop


async def serve(args: argparse.Namespace) -> int:
    server = ToxiproxyServer(host=args.host, port=args.port, seed=args.seed)
    try:
        await server.start()
    except ApiError as err:
        print(
            f"toxiproxy: cannot listen on {args.host}:{args.port}: {err.message}", file=sys.stderr
        )
        # A host that does not resolve or parse is a bad argument; a port in use is not.
        return 2 if ("lookup" in err.message or "in address" in err.message) else 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"toxiproxy: API listening on {server.url}", flush=True)
    await stop.wait()
    await server.close()
    return 0


def raise_open_files_limit() -> None:
    """A connection without toxics holds two sockets and two pipes (six descriptors): lift the
    soft limit on open files to the hard one, so a 1024 default does not cap it at ~170."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (OSError, ValueError):
        pass  # keep the soft limit: fewer connections, nothing else changes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    raise_open_files_limit()
    level = os.environ.get("TOXIPROXY_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING),
        stream=sys.stderr,
        format="%(asctime)s toxiproxy %(levelname)s %(message)s",
    )
    factory = loop_factory(args.loop)
    if factory is None:
        return asyncio.run(serve(args))
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
