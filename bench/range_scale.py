"""`spanlite bench ranges`: what many ranges cost — idle CPU per node, and write throughput
with the writes spread evenly over every range — for several range counts, side by side.

For each count N in `--ranges` (e.g. `10,1000`) it starts a fresh 3-node process cluster in
`DIR/N`, splits the user keyspace into N ranges at evenly spaced keys, lets it settle, then:

1. idle: samples each node process's CPU time (utime + stime from /proc) over `--idle` seconds;
2. writes: `--concurrency` tasks put 100-byte values at uniformly random keys (so every range
   is busy) for `--duration` seconds; reports writes/s, p50/p99 latency and node CPU per write.

    spanlite bench ranges --dir /tmp/scale --ranges 10,1000 --duration 20

The clusters run one after the other on the same machine, in one command, so the figures are
comparable; run it several times on a shared machine and take medians.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import trio

from bench import process_cluster
from cluster.client import connect

KEY_SPACE = 100_000_000
VALUE = b"x" * 100
SPLIT_CONCURRENCY = 8
SETTLE_S = 15.0  # Past the replicas' lease_idle_keep (10 s): idle ranges drop their leases.


@dataclass
class ScaleResult:
    ranges: int
    idle_cpu_percent: list[float] = field(default_factory=list)  # per node, of one core
    writes_per_s: float = 0.0
    write_p50_ms: float = 0.0
    write_p99_ms: float = 0.0
    write_errors: int = 0
    node_cpu_us_per_write: float = 0.0
    split_seconds: float = 0.0


def key_of(number: int) -> bytes:
    return b"k%09d" % number


def split_keys(ranges: int) -> list[bytes]:
    """N-1 keys spaced evenly over the benchmark's key space: N user ranges."""
    return [key_of(KEY_SPACE * i // ranges) for i in range(1, ranges)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def node_cpu(pids: list[int]) -> list[float]:
    return [cpu_seconds(pid) for pid in pids]


async def _split_all(db, keys: list[bytes]) -> None:
    chunks = [keys[i::SPLIT_CONCURRENCY] for i in range(SPLIT_CONCURRENCY)]

    async def splitter(chunk: list[bytes]) -> None:
        for key in chunk:
            await db.admin_split(key)

    async with trio.open_nursery() as nursery:
        for chunk in chunks:
            nursery.start_soon(splitter, chunk)


async def _write_load(db, concurrency: int, duration_s: float, seed: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop_at = trio.current_time() + duration_s

    async def writer(rng: random.Random) -> None:
        nonlocal errors
        while trio.current_time() < stop_at:
            started = time.perf_counter()
            try:
                await db.put(key_of(rng.randrange(KEY_SPACE)), VALUE)
            except Exception:  # noqa: BLE001 - counted, never hidden
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    async with trio.open_nursery() as nursery:
        for i in range(concurrency):
            nursery.start_soon(writer, random.Random(seed * 1000 + i))
    return latencies, errors


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def measure(addresses: list[str], pids: list[int], ranges: int, *, idle_s: float, duration_s: float,
                  concurrency: int, seed: int) -> ScaleResult:
    result = ScaleResult(ranges)
    async with connect(addresses, timeout_s=60) as db:
        started = time.monotonic()
        await _split_all(db, split_keys(ranges))
        result.split_seconds = time.monotonic() - started
        await trio.sleep(SETTLE_S)
        before = node_cpu(pids)
        await trio.sleep(idle_s)
        after = node_cpu(pids)
        result.idle_cpu_percent = [round(100 * (b - a) / idle_s, 1) for a, b in zip(before, after)]
        await _write_load(db, concurrency, 3.0, seed + 1)  # Warm up: leases, connections, caches.
        before = node_cpu(pids)
        latencies, result.write_errors = await _write_load(db, concurrency, duration_s, seed)
        after = node_cpu(pids)
    latencies.sort()
    result.writes_per_s = round(len(latencies) / duration_s, 1)
    result.write_p50_ms = round(1000 * _percentile(latencies, 0.50), 2)
    result.write_p99_ms = round(1000 * _percentile(latencies, 0.99), 2)
    if latencies:
        result.node_cpu_us_per_write = round(1e6 * (sum(after) - sum(before)) / len(latencies), 1)
    return result


def run_one(directory: Path, ranges: int, **kwargs) -> ScaleResult:
    record = process_cluster.start_cluster(directory, 3)
    try:
        pids = [node.pid for node in record.nodes]
        return trio.run(lambda: measure(record.addresses, pids, ranges, **kwargs))
    finally:
        process_cluster.stop_cluster(directory)


def table(results: list[ScaleResult]) -> str:
    lines = ["ranges | idle CPU per node (% of a core) | writes/s | p50 ms | p99 ms | errors | node CPU us/write",
             "---:|---|---:|---:|---:|---:|---:"]
    for r in results:
        idle = " / ".join(f"{c:.1f}" for c in r.idle_cpu_percent)
        lines.append(f"{r.ranges} | {idle} | {r.writes_per_s:,.0f} | {r.write_p50_ms} | {r.write_p99_ms} | "
                     f"{r.write_errors} | {r.node_cpu_us_per_write:,.0f}")
    return "\n".join(lines)


def run(directory: Path, counts: list[int], *, idle_s: float, duration_s: float, concurrency: int,
        seed: int, json_path: Path | None) -> int:
    results = []
    for count in counts:
        result = run_one(directory / str(count), count, idle_s=idle_s, duration_s=duration_s,
                         concurrency=concurrency, seed=seed)
        print(f"{count} ranges: split in {result.split_seconds:.1f}s, idle CPU {result.idle_cpu_percent} %, "
              f"{result.writes_per_s:,.0f} writes/s, p99 {result.write_p99_ms} ms, {result.write_errors} errors",
              flush=True)
        results.append(result)
    print(table(results))
    if json_path is not None:
        json_path.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 1 if any(r.write_errors for r in results) else 0
