"""The embedded Toxiproxy's cost: pgbench and bulk transfer, direct versus through the proxy.

Side by side in one run, on this machine:

- pgbench select-only (``-S``) with several clients against a private PostgreSQL, directly and
  through an embedded proxy with no toxics: TPS ratio (proxied / direct);
- one pgbench client logging every transaction (``-l``): median latency direct and proxied,
  and the difference (the latency the proxy adds);
- bulk transfer over loopback (a sender thread to a sink thread): MB/s direct and proxied.

Targets: TPS ratio >= 0.7, added median latency <= 0.3 ms. Prints figures, asserts nothing.
Environment: ``BENCH_TOXIPROXY_SECONDS`` (pgbench run length, default 8), ``..._CLIENTS`` (8).
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
from pathlib import Path

from harness.postgres import LocalPostgres
from harness.toxiproxy.select import ToxiproxyHandle, client_for, start_embedded

TPS_TARGET = 0.7
LATENCY_TARGET_MS = 0.3
BULK_BYTES = 256 * 1024 * 1024


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
                fields = line.split()
                latencies.append(int(fields[2]) / 1000.0)  # microseconds -> ms
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


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proxy(handle: ToxiproxyHandle, name: str, upstream: str) -> tuple[str, int]:
    proxy = client_for(handle).create(upstream=upstream, name=name)
    host, port = proxy.listen.rsplit(":", 1)
    return host, int(port)


def main() -> None:
    if shutil.which("pgbench") is None:
        print("toxiproxy bench: pgbench not found (Debian: postgresql-client-15); skipped")
        return
    seconds = int(os.environ.get("BENCH_TOXIPROXY_SECONDS", "8"))
    clients = int(os.environ.get("BENCH_TOXIPROXY_CLIENTS", "8"))
    with LocalPostgres() as pg, start_embedded(seed=0) as handle:
        if nice := int(os.environ.get("BENCH_TOXIPROXY_NICE", "0")):
            assert handle.pid is not None
            os.setpriority(os.PRIO_PROCESS, handle.pid, nice)
            print(f"proxy process reniced to {nice}")
        pg.create_database("bench")
        _pgbench(pg.host, pg.port, "-i", "-s", "1", "-q")
        phost, pport = _proxy(handle, "postgres", f"{pg.host}:{pg.port}")
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        print(f"postgres {pg.host}:{pg.port}, embedded toxiproxy {handle.url} on {loop}")
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")

        # Alternate direct and proxied runs so drift from other load hits both alike.
        direct_tps: list[float] = []
        proxied_tps: list[float] = []
        common = ["-S", "-c", str(clients), "-j", "2", "-T", str(seconds)]
        proxy_cpu = 0.0
        for _ in range(2):
            direct_tps.append(_tps(_pgbench(pg.host, pg.port, *common)))
            cpu_before = _cpu_seconds(handle.pid)
            proxied_tps.append(_tps(_pgbench(phost, pport, *common)))
            proxy_cpu += _cpu_seconds(handle.pid) - cpu_before
        d_tps, p_tps = statistics.median(direct_tps), statistics.median(proxied_tps)
        ratio = p_tps / d_tps
        print(f"pgbench -S -c {clients} -j 2 -T {seconds} (x2, median):")
        print(f"  direct  {d_tps:10.0f} tps   runs {', '.join(f'{t:.0f}' for t in direct_tps)}")
        print(f"  proxied {p_tps:10.0f} tps   runs {', '.join(f'{t:.0f}' for t in proxied_tps)}")
        transactions = sum(proxied_tps) * seconds
        print(
            f"  proxy CPU {proxy_cpu / (2 * seconds) * 100:.0f}% of a core, "
            f"{proxy_cpu / transactions * 1e6:.0f} µs per transaction"
        )
        verdict = "meets" if ratio >= TPS_TARGET else "MISSES"
        print(f"  TPS ratio {ratio:.2f} (target >= {TPS_TARGET}: {verdict})")

        lat_seconds = max(2, seconds // 2)
        d_lat = _median_latency_ms(pg.host, pg.port, lat_seconds)
        p_lat = _median_latency_ms(phost, pport, lat_seconds)
        added = p_lat - d_lat
        verdict = "meets" if added <= LATENCY_TARGET_MS else "MISSES"
        print(f"pgbench -S -c 1 -T {lat_seconds} -l (median per-transaction latency):")
        print(f"  direct {d_lat:.3f} ms, proxied {p_lat:.3f} ms")
        print(f"  added median latency {added:.3f} ms (target <= {LATENCY_TARGET_MS}: {verdict})")

        with socket.socket() as sink:
            sink.bind(("127.0.0.1", 0))
            sink.listen()
            sink_addr = f"127.0.0.1:{sink.getsockname()[1]}"
            direct_mb = _bulk_mb_s("127.0.0.1", sink.getsockname()[1], sink)
            bhost, bport = _proxy(handle, "bulk", sink_addr)
            proxied_mb = _bulk_mb_s(bhost, bport, sink)
        print(f"bulk transfer {BULK_BYTES // 2**20} MiB over loopback:")
        print(
            f"  direct {direct_mb:.0f} MB/s, proxied {proxied_mb:.0f} MB/s "
            f"(ratio {proxied_mb / direct_mb:.2f})"
        )


if __name__ == "__main__":
    main()
