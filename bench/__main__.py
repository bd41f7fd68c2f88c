"""Run every benchmark module (`bench/bench_*.py`), or those named on the command line.

Usage: ``python -m bench [NAME ...]`` where NAME is e.g. ``worker`` for ``bench_worker.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str]) -> int:
    names = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(bench.__path__)
        if m.name.startswith("bench_")
    )
    chosen = argv or names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        print(f"bench: unknown benchmark {', '.join(unknown)}; choose from {', '.join(names)}")
        return 2
    for name in chosen:
        print(f"== bench {name} ==", flush=True)
        started = time.monotonic()
        importlib.import_module(f"bench.bench_{name}").main()
        print(f"== bench {name} done in {time.monotonic() - started:.1f}s ==", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
