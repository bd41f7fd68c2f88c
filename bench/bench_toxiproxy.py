"""The embedded Toxiproxy's cost: pgbench and bulk transfer, direct versus through the proxy.

Side by side in one run, on this machine:

- pgbench select-only (``-S``) with several clients against a private PostgreSQL, directly and
  through an embedded proxy with no toxics: TPS ratio (proxied / direct), and the proxy's CPU
  time per transaction (user and system);
- one pgbench client logging every transaction (``-l``): median latency direct and proxied,
  and the difference (the latency the proxy adds);
- bulk transfer over loopback (a sender thread to a sink thread): MB/s direct and proxied.

When ``socat`` is installed it is measured too, as a reference for what one extra userspace hop
costs here whatever the proxy is written in (a process per connection). Targets (issue 14): TPS
ratio >= 0.75 (aim 0.8), bulk ratio >= 0.6, added median latency <= 0.1 ms; the proxy's CPU per
transaction is printed beside them. Every figure is a median of alternating runs, and the load
average is printed before and after: other work on the machine moves these figures a lot.
Prints figures, asserts nothing. Environment: ``BENCH_TOXIPROXY_SECONDS`` (pgbench run
length, default 4), ``BENCH_TOXIPROXY_ROUNDS`` (alternations, default 4),
``BENCH_TOXIPROXY_CLIENTS`` (default 8), ``BENCH_TOXIPROXY_RT=1`` (experiment:
run the proxy at real-time priority, to tell scheduling delay from the proxy's own cost),
``BENCH_TOXIPROXY_NICE=-10`` (experiment: a bigger CPU share for the one proxy process).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.ports import free_port
from harness.postgres import LocalPostgres
from harness.toxiproxy.selection import ToxiproxyHandle, client_for, start_embedded
from harness.wait import wait_for

TPS_TARGET = 0.75
LATENCY_TARGET_MS = 0.1
BULK_TARGET = 0.6
BULK_BYTES = 256 * 1024 * 1024


@dataclass
class Route:
    """One way to reach PostgreSQL: direct, or through a proxy process."""

    name: str
    host: str
    port: int
    pid: int | None = None
    tps: list[float] = field(default_factory=list)
    cpu: tuple[float, float] = (0.0, 0.0)


def _pgbench(host: str, port: int, *args: str, cwd: Path | None = None) -> str:
    argv = ["pgbench", "-h", host, "-p", str(port), "-U", "postgres", *args, "bench"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _tps(output: str) -> float:
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    if match is None:
        raise RuntimeError(f"no tps in pgbench output: {output!r}")
    return float(match.group(1))


def _median_latency_ms(host: str, port: int, seconds: int) -> float:
    """One client, every transaction logged; the median latency in milliseconds."""
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as tmp:
        _pgbench(host, port, "-S", "-c", "1", "-T", str(seconds), "-l", cwd=Path(tmp))
        latencies = []
        for log in Path(tmp).glob("pgbench_log.*"):
            for line in log.read_text().splitlines():
                latencies.append(int(line.split()[2]) / 1000.0)  # microseconds -> ms
    return statistics.median(latencies)


def _bulk_mb_s(host: str, port: int, sink_accept: socket.socket) -> float:
    """Send BULK_BYTES to ``host:port`` (which reaches ``sink_accept``); MB/s (1 MB = 10^6 B)."""
    received = [0]

    def sink() -> None:
        conn, _ = sink_accept.accept()
        with conn:
            while data := conn.recv(1 << 20):
                received[0] += len(data)

    thread = threading.Thread(target=sink)
    thread.start()
    block = b"\0" * (1 << 20)
    start = time.monotonic()
    with socket.create_connection((host, port)) as sender:
        for _ in range(BULK_BYTES // len(block)):
            sender.sendall(block)
        sender.shutdown(socket.SHUT_WR)
        thread.join(timeout=120)
    elapsed = time.monotonic() - start
    if received[0] != BULK_BYTES:
        raise RuntimeError(f"bulk: sink got {received[0]} of {BULK_BYTES} bytes")
    return BULK_BYTES / elapsed / 1e6


def _cpu_seconds(pid: int | None) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` and its reaped children (Linux /proc)."""
    if pid is None:
        return 0.0, 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[13])) / tick, (int(fields[12]) + int(fields[14])) / tick


def _proxy(handle: ToxiproxyHandle, name: str, upstream: str) -> tuple[str, int]:
    proxy = client_for(handle).create(upstream=upstream, name=name)
    host, port = proxy.listen.rsplit(":", 1)
    return host, int(port)


@contextmanager
def _socat(upstream_host: str, upstream_port: int) -> Iterator[Route | None]:
    """socat as a reference proxy (a process per connection), if installed."""
    socat = shutil.which("socat")
    if socat is None:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen(
        [
            socat,
            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,nodelay",
            f"TCP:{upstream_host}:{upstream_port},nodelay",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, timeout=5, what="socat to listen")
        yield Route("socat", "127.0.0.1", port, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    if shutil.which("pgbench") is None:
        print("toxiproxy bench: pgbench not found (Debian: postgresql-client-15); skipped")
        return
    seconds = int(os.environ.get("BENCH_TOXIPROXY_SECONDS", "4"))
    rounds = int(os.environ.get("BENCH_TOXIPROXY_ROUNDS", "4"))
    clients = int(os.environ.get("BENCH_TOXIPROXY_CLIENTS", "8"))
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    with LocalPostgres() as pg, start_embedded(seed=0) as handle, _socat(pg.host, pg.port) as soc:
        if os.environ.get("BENCH_TOXIPROXY_RT"):
            assert handle.pid is not None
            os.sched_setscheduler(handle.pid, os.SCHED_RR, os.sched_param(1))
            print("experiment: proxy process at SCHED_RR priority 1")
        if nice := int(os.environ.get("BENCH_TOXIPROXY_NICE", "0")):
            assert handle.pid is not None
            os.setpriority(os.PRIO_PROCESS, handle.pid, nice)
            print(f"experiment: proxy process at nice {nice}")
        pg.create_database("bench")
        _pgbench(pg.host, pg.port, "-i", "-s", "1", "-q")
        phost, pport = _proxy(handle, "postgres", f"{pg.host}:{pg.port}")
        paths = [
            Route("direct", pg.host, pg.port),
            Route(f"embedded ({loop})", phost, pport, handle.pid),
        ]
        if soc is not None:
            paths.append(soc)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")

        # Alternate the paths so drift in other load on the machine hits them alike.
        common = ["-S", "-c", str(clients), "-j", "2", "-T", str(seconds)]
        for _ in range(rounds):
            for path in paths:
                before = _cpu_seconds(path.pid)
                path.tps.append(_tps(_pgbench(path.host, path.port, *common)))
                after = _cpu_seconds(path.pid)
                path.cpu = (
                    path.cpu[0] + after[0] - before[0],
                    path.cpu[1] + after[1] - before[1],
                )
        direct = statistics.median(paths[0].tps)
        print(f"pgbench -S -c {clients} -j 2 -T {seconds}, {rounds} alternating runs each, median:")
        for path in paths:
            tps = statistics.median(path.tps)
            runs = ", ".join(f"{t:.0f}" for t in path.tps)
            line = f"  {path.name:18} {tps:8.0f} tps (runs {runs})"
            if path.pid is not None:
                txns = sum(path.tps) * seconds
                user, system = (1e6 * c / txns for c in path.cpu)
                line += f"  ratio {tps / direct:.2f}; proxy CPU {user:.0f}+{system:.0f} µs/txn"
                line += " (user+sys)"
            print(line)
        ratio = statistics.median(paths[1].tps) / direct
        verdict = "meets" if ratio >= TPS_TARGET else "MISSES"
        user, system = (1e6 * c / (sum(paths[1].tps) * seconds) for c in paths[1].cpu)
        print(
            f"  embedded TPS ratio {ratio:.2f} (target >= {TPS_TARGET}: {verdict}); "
            f"proxy CPU {user + system:.0f} µs per transaction"
        )

        lat_seconds = max(2, seconds)
        lat = {p.name: _median_latency_ms(p.host, p.port, lat_seconds) for p in paths}
        print(f"pgbench -S -c 1 -T {lat_seconds} -l, median per-transaction latency:")
        for name, ms in lat.items():
            print(f"  {name:18} {ms:.3f} ms (+{ms - lat['direct']:.3f})")
        added = lat[paths[1].name] - lat["direct"]
        verdict = "meets" if added <= LATENCY_TARGET_MS else "MISSES"
        print(
            f"  embedded added median latency {added:.3f} ms (target <= {LATENCY_TARGET_MS}: "
            f"{verdict})"
        )

        direct_runs: list[float] = []
        proxied_runs: list[float] = []
        with socket.socket() as sink:
            sink.bind(("127.0.0.1", 0))
            sink.listen()
            sink_addr = f"127.0.0.1:{sink.getsockname()[1]}"
            bhost, bport = _proxy(handle, "bulk", sink_addr)
            for _ in range(rounds):
                direct_runs.append(_bulk_mb_s("127.0.0.1", sink.getsockname()[1], sink))
                proxied_runs.append(_bulk_mb_s(bhost, bport, sink))
        direct_mb = statistics.median(direct_runs)
        proxied_mb = statistics.median(proxied_runs)
        bulk_ratio = proxied_mb / direct_mb
        print(f"bulk transfer {BULK_BYTES // 2**20} MiB over loopback, {rounds} runs each, median:")
        print(
            f"  direct {direct_mb:.0f} MB/s (runs {', '.join(f'{r:.0f}' for r in direct_runs)}), "
            f"embedded {proxied_mb:.0f} MB/s (runs {', '.join(f'{r:.0f}' for r in proxied_runs)})"
        )
        verdict = "meets" if bulk_ratio >= BULK_TARGET else "MISSES"
        print(f"  embedded bulk ratio {bulk_ratio:.2f} (target >= {BULK_TARGET}: {verdict})")
        print(f"machine: load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
