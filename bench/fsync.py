"""How fast this disk makes writes durable: `spanlite bench fsync --dir DIR`.

A replicated write costs at least one fsync on the leader and one on a follower, so the
disk's sync latency bounds write latency, and syncs per second bound how many write
batches (group commits) a node can make durable. Measured, each `count` times:

- `os.write` of a 4 KiB append + `os.fdatasync` (a log of one's own);
- a rocksdict put with `WriteOptions.sync = True` (what `RocksEngine.write(sync=True)` does
  without deferral);
- a rocksdict WriteBatch of 100 puts of 100 bytes, synced (a group commit);
- a rocksdict put without sync followed by `flush_wal(sync=True)` (the node's deferred
  sync, `RocksEngine.sync_wal`).

Results: median, p99, mean and max latency, and the rate one thread achieves back to back.
Files go in a fresh subdirectory of DIR, removed afterwards: point DIR at the disk the
stores live on.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

APPEND_BYTES = 4096
BATCH_PUTS = 100
VALUE_BYTES = 100
COUNT_DEFAULT = 500
COUNT_MAX = 100_000
WARMUP = 10


@dataclass
class SyncFigures:
    name: str
    count: int
    latencies_ns: list[int]
    puts_per_op: int = 1

    def percentile_ms(self, p: float) -> float:
        # Nearest rank: the smallest latency with at least p% of the samples at or below it.
        ordered = sorted(self.latencies_ns)
        index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[index] / 1e6

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ns) / 1e6

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies_ns) / 1e6

    @property
    def max_ms(self) -> float:
        return max(self.latencies_ns) / 1e6

    @property
    def ops_per_s(self) -> float:
        return 1e9 * len(self.latencies_ns) / sum(self.latencies_ns)

    def line(self) -> str:
        rate = f"{self.ops_per_s:,.0f} syncs/s"
        if self.puts_per_op > 1:
            rate += f", {self.ops_per_s * self.puts_per_op:,.0f} puts/s"
        return (f"{self.name:<34} median {self.median_ms:7.3f} ms   p99 {self.percentile_ms(99):7.3f} ms   "
                f"mean {self.mean_ms:7.3f} ms   max {self.max_ms:7.3f} ms   ({rate})")

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "count": self.count, "median_ms": self.median_ms,
                "p99_ms": self.percentile_ms(99), "mean_ms": self.mean_ms, "max_ms": self.max_ms,
                "ops_per_s": self.ops_per_s, "puts_per_op": self.puts_per_op}


def _timed(count: int, action: Callable[[int], None]) -> list[int]:
    for i in range(WARMUP):
        action(i)
    latencies = []
    for i in range(count):
        start = time.perf_counter_ns()
        action(WARMUP + i)
        latencies.append(time.perf_counter_ns() - start)
    assert len(latencies) == count
    return latencies


def measure(directory: str, count: int = COUNT_DEFAULT) -> list[SyncFigures]:
    """Run the four measurements in a fresh subdirectory of `directory`."""
    assert 1 <= count <= COUNT_MAX, f"count out of range: {count}"
    import rocksdict

    work = tempfile.mkdtemp(prefix="spanlite-fsync-", dir=directory)
    try:
        results = [SyncFigures("os.write 4 KiB + fdatasync", count, _fdatasync_appends(work, count))]
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        db = rocksdict.Rdict(os.path.join(work, "rocks"), options=options)
        try:
            synced = rocksdict.WriteOptions()
            synced.sync = True
            unsynced = rocksdict.WriteOptions()
            unsynced.sync = False
            value = b"v" * VALUE_BYTES

            def put(i: int, batch_puts: int, options) -> None:
                batch = rocksdict.WriteBatch(raw_mode=True)
                for j in range(batch_puts):
                    batch.put(b"k%09d-%03d" % (i, j), value)
                db.write(batch, options)

            def put_then_flush_wal(i: int) -> None:
                put(i, 1, unsynced)
                db.flush_wal(True)

            results.append(SyncFigures("rocksdict put, sync=True", count, _timed(count, lambda i: put(i, 1, synced))))
            results.append(SyncFigures(f"rocksdict {BATCH_PUTS}-put batch, sync=True", count,
                                       _timed(count, lambda i: put(i + 10**6, BATCH_PUTS, synced)), BATCH_PUTS))
            results.append(SyncFigures("rocksdict put + flush_wal(sync)", count,
                                       _timed(count, lambda i: put_then_flush_wal(i + 2 * 10**6))))
        finally:
            db.close()
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fdatasync_appends(work: str, count: int) -> list[int]:
    block = b"x" * APPEND_BYTES
    fd = os.open(os.path.join(work, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        def append(_: int) -> None:
            written = os.write(fd, block)
            assert written == APPEND_BYTES, f"short write: {written}"
            os.fdatasync(fd)

        return _timed(count, append)
    finally:
        os.close(fd)
