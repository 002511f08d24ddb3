"""The YCSB run phase in several client processes: `spanlite bench ycsb --processes P`.

One Python process runs one trio loop on one core. At tens of thousands of operations per
second the benchmark's own client (workload generation, cbor, trio scheduling, histograms)
becomes the bottleneck, and with one multiplexed connection the client and the leaseholder
fall into lock step (each waits while the other works through a batch). YCSB users hit the
same wall with one JVM and run several client processes (or machines); this does that.

The parent (which already loaded the records, if asked to) spawns P worker processes. Each
connects to the cluster, builds its own `CoreWorkload` (`client_index` i of P, seed
"<seed>.<i>", its share of the operations and of the concurrency), reports ready, and waits.
The parent then says go to all at once and times the run from there to the last worker's
end. Workers send their interval histograms every progress interval (the parent prints one
merged progress line) and their full measurements at the end; HDR histograms add exactly,
so the merged percentiles are those of all operations together, as YCSB's would be.

Workloads with inserts (D, E) stay correct: worker i inserts only into its own interleaved
share of the new key numbers and reads only loaded records or its own acknowledged inserts
(`CoreWorkload.physical_keynum`), i.e. P independent YCSB clients with disjoint insert ranges.

HAZARD: the worker processes are started with the "spawn" method (a fresh interpreter each,
~0.3 s), never "fork": the parent is inside a running trio loop, which must not be forked.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import time
import traceback
from typing import Callable

import trio

from bench.report import (
    Measurements,
    Report,
    encode_histograms,
    format_progress,
    merge_encoded_histograms,
)

PROCESSES_MAX = 32
READY_TIMEOUT_S = 60.0
# How often the parent's receiving thread comes back to the event loop when nothing arrives.
POLL_S = 0.25


class WorkerFailed(Exception):
    """A client process could not run (its traceback is in the message)."""


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """Everything one client process needs (picklable)."""

    addresses: tuple[str, ...]
    workload: str
    records: int
    operations: int | None
    duration_s: float | None
    concurrency: int
    seed: int | str
    client_index: int
    client_count: int
    progress_interval_s: float


def split_evenly(total: int, parts: int) -> list[int]:
    """`total` as `parts` integers differing by at most one, larger ones first."""
    assert parts >= 1 and total >= 0, f"cannot split {total} into {parts}"
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def worker_specs(
    addresses: list[str],
    workload: str,
    *,
    records: int,
    operations: int | None,
    duration_s: float | None,
    concurrency: int,
    seed: int | str,
    processes: int,
    progress_interval_s: float,
) -> list[WorkerSpec]:
    assert 1 <= processes <= min(PROCESSES_MAX, concurrency), f"{processes} processes for {concurrency} clients"
    shares = split_evenly(concurrency, processes)
    op_shares = split_evenly(operations, processes) if operations is not None else [None] * processes
    return [
        WorkerSpec(tuple(addresses), workload, records, op_shares[i], duration_s, shares[i], f"{seed}.{i}",
                   i, processes, progress_interval_s)
        for i in range(processes)
    ]


# ---------------------------------------------------------------------------------------
# the worker process


def worker_main(conn: multiprocessing.connection.Connection, spec: WorkerSpec) -> None:
    """Entry point of a client process: every outcome goes back through `conn`."""
    try:
        trio.run(_worker, conn, spec)
    except BaseException:  # noqa: BLE001 - reported to the parent, which decides
        try:
            conn.send(("failed", spec.client_index, traceback.format_exc()))
        except OSError:
            pass
    finally:
        conn.close()


async def _worker(conn: multiprocessing.connection.Connection, spec: WorkerSpec) -> None:
    from bench.runner import run_ycsb
    from bench.workloads import workload_preset
    from cluster.client import connect

    def send_progress(ops_done: int, interval: dict) -> None:
        conn.send(("progress", spec.client_index, ops_done, encode_histograms(interval)))

    async with connect(list(spec.addresses)) as db:
        await db.status()  # dial now, so connecting is not part of the timed run
        conn.send(("ready", spec.client_index))
        go = await trio.to_thread.run_sync(conn.recv)
        assert go == "go", f"expected go, got {go!r}"
        report = await run_ycsb(
            db, workload_preset(spec.workload), phase="run", records=spec.records,
            operations=spec.operations, duration_s=spec.duration_s, concurrency=spec.concurrency,
            seed=spec.seed, client_index=spec.client_index, client_count=spec.client_count,
            progress_sink=send_progress, progress_interval_s=spec.progress_interval_s,
        )
    conn.send(("done", spec.client_index, report.operations, report.runtime_ns, report.measurements.to_wire()))


# ---------------------------------------------------------------------------------------
# the parent


class _Merger:
    """The parent's view of the run: merged measurements and progress."""

    def __init__(self, processes: int, progress: Callable[[str], None] | None) -> None:
        self.progress = progress
        self.ops_by_worker = [0] * processes
        self.interval: dict = {}
        self.measurements = Measurements()
        self.done = [False] * processes
        self.operations = 0
        self.start_ns = time.perf_counter_ns()
        self.end_ns: int | None = None
        self._last_ns = self.start_ns
        self._last_ops = 0

    def handle(self, message: tuple) -> None:
        kind, index = message[0], message[1]
        if kind == "progress":
            _, _, ops_done, encoded = message
            self.ops_by_worker[index] = ops_done
            merge_encoded_histograms(self.interval, encoded)
        elif kind == "done":
            _, _, operations, _runtime_ns, wire = message
            self.ops_by_worker[index] = operations
            self.operations += operations
            self.measurements.add_wire(wire)
            self.done[index] = True
            if all(self.done):
                self.end_ns = time.perf_counter_ns()
        elif kind == "failed":
            raise WorkerFailed(f"client process {index} failed:\n{message[2]}")
        else:
            raise AssertionError(f"unexpected message from client process {index}: {message!r}")

    def emit_progress(self) -> None:
        if self.progress is None:
            return
        now_ns = time.perf_counter_ns()
        ops = sum(self.ops_by_worker)
        interval, self.interval = self.interval, {}
        self.progress(format_progress(
            elapsed_s=(now_ns - self.start_ns) / 1e9, operations=ops, interval_operations=ops - self._last_ops,
            interval_s=(now_ns - self._last_ns) / 1e9, interval_histograms=interval))
        self._last_ns, self._last_ops = now_ns, ops


def _receive_some(conns: dict[int, multiprocessing.connection.Connection]) -> list[tuple]:
    """In a worker thread: wait up to POLL_S for messages from the client processes in
    `conns` (index -> connection); EOF from one of them is a failure."""
    index_of = {id(conn): index for index, conn in conns.items()}
    messages = []
    for conn in multiprocessing.connection.wait(list(conns.values()), timeout=POLL_S):
        try:
            messages.append(conn.recv())
        except EOFError:
            messages.append(("failed", index_of[id(conn)], "the client process exited without reporting"))
    return messages


async def run_in_processes(specs: list[WorkerSpec], workload_name: str,
                           progress: Callable[[str], None] | None = None) -> Report:
    """Run the run phase in `len(specs)` client processes; returns the merged report."""
    context = multiprocessing.get_context("spawn")
    conns, processes = [], []
    try:
        for spec in specs:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=worker_main, args=(child_end, spec), daemon=True,
                                      name=f"ycsb-client-{spec.client_index}")
            process.start()
            child_end.close()
            conns.append(parent_end)
            processes.append(process)
        await _wait_ready(conns)
        merger = _Merger(len(specs), progress)
        for conn in conns:
            conn.send("go")
        await _collect(conns, merger, specs[0].progress_interval_s)
        assert merger.end_ns is not None
        runtime_ns = merger.end_ns - merger.start_ns
        return Report("run", workload_name, runtime_ns, merger.operations, merger.measurements)
    finally:
        for process in processes:
            await trio.to_thread.run_sync(process.join, 10.0)
            if process.is_alive():
                process.kill()
        for conn in conns:
            conn.close()


async def _wait_ready(conns: list) -> None:
    ready = [False] * len(conns)
    with trio.fail_after(READY_TIMEOUT_S):
        while not all(ready):
            waiting = {i: conn for i, conn in enumerate(conns) if not ready[i]}
            for message in await trio.to_thread.run_sync(_receive_some, waiting):
                if message[0] == "failed":
                    raise WorkerFailed(f"client process {message[1]} failed:\n{message[2]}")
                assert message[0] == "ready", f"expected ready, got {message!r}"
                ready[message[1]] = True


async def _collect(conns: list, merger: _Merger, interval_s: float) -> None:
    next_progress = trio.current_time() + interval_s
    while not all(merger.done):
        running = {i: conn for i, conn in enumerate(conns) if not merger.done[i]}
        for message in await trio.to_thread.run_sync(_receive_some, running):
            merger.handle(message)
        if trio.current_time() >= next_progress and not all(merger.done):
            merger.emit_progress()
            next_progress += interval_s
    merger.emit_progress()
