"""Drive a YCSB workload against a spanlite client on trio: `run_ycsb`.

The client contract (`KvClient`) is the public spanlite client API:

    await db.put(key: bytes, value: bytes)
    await db.get(key: bytes) -> bytes | None
    await db.delete(key: bytes)
    await db.scan(start: bytes, end: bytes, limit=None) -> list[tuple[bytes, bytes]]
    (optional) async with db.transaction() as txn: await txn.get(k); await txn.put(k, v)

Phases, as YCSB's `-load` and `-t`:

- load: `concurrency` workers each take the next `load_batch` load INSERTs from the shared
  `CoreWorkload` and issue them as concurrent puts, until `records` records are written.
  At most concurrency * load_batch puts are in flight.
- run: `concurrency` client tasks each loop: take the workload's next op, execute and time
  it, until `operations` ops were issued or `duration_s` passed (whichever comes first).
  A timed run stops issuing at the deadline and lets in-flight ops finish (YCSB's
  maxexecutiontime), so no op is cancelled half-way.

Each op is timed with `time.perf_counter_ns` into `bench.report.Measurements` exactly as
YCSB's DBWrapper would: READ, UPDATE, INSERT, SCAN under their names (failures under
"<OP>-FAILED"); READ-MODIFY-WRITE is timed whole under its own name (YCSB measures it in
CoreWorkload, failures included) and its inner read and write are also timed as READ and
UPDATE, so workload F reports READ ~75%, UPDATE ~25% and READ-MODIFY-WRITE ~50% of ops, as
YCSB does. A `get` that finds nothing is `Return=NOT_FOUND`; any exception an op raises is
`Return=ERROR` for its type and the run goes on; the first distinct messages are logged and
kept in the report (`Report.error_samples`).

If the client has `transaction()`, workload F's read-modify-write runs inside one; a failed
step aborts it (an exception out of the `async with`), so nothing half-done commits.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Awaitable, Callable, Literal, Protocol

import trio

from bench.report import (
    STATUS_ERROR,
    STATUS_NOT_FOUND,
    STATUS_OK,
    Measurements,
    Report,
    format_progress,
)
from bench.workloads import (
    INSERT,
    READ,
    READ_MODIFY_WRITE,
    SCAN,
    UPDATE,
    CoreWorkload,
    Op,
    Workload,
    decode_record,
    encode_record,
)

log = logging.getLogger("bench")

Phase = Literal["load", "run", "both"]
ProgressCallback = Callable[[str], None]
# Raw progress for an aggregating parent (`bench.multiprocess`): called with the ops done so
# far and the interval histograms (taken, so reset) instead of a formatted line.
ProgressSink = Callable[[int, dict], None]

DEFAULT_LOAD_BATCH = 32
LOAD_BATCH_MAX = 4096
CONCURRENCY_MAX = 4096
DEFAULT_PROGRESS_INTERVAL_S = 1.0


class KvClient(Protocol):
    async def put(self, key: bytes, value: bytes) -> None: ...

    async def get(self, key: bytes) -> bytes | None: ...

    async def delete(self, key: bytes) -> None: ...

    async def scan(self, start: bytes, end: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]: ...


class _StepFailed(Exception):
    """A read-modify-write step did not return OK (already counted); aborts the transaction."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def _elapsed_us(start_ns: int) -> int:
    # YCSB: (int) ((en - st) / 1000), truncating.
    return (time.perf_counter_ns() - start_ns) // 1000


class OpExecutor:
    """Executes `Op`s against a client and records each in `measurements`."""

    def __init__(self, db: KvClient, workload: CoreWorkload, measurements: Measurements) -> None:
        self.db = db
        self.workload = workload
        self.measurements = measurements
        self.use_transactions = hasattr(db, "transaction")
        self.ops_done = 0  # every finished op, failed ones included (YCSB's opsdone)

    async def execute(self, op: Op, *, acknowledge: bool = True) -> None:
        """Run one op; `acknowledge` marks a run-phase INSERT's key readable afterwards."""
        try:
            if op.kind == READ:
                await self._measured(READ, lambda: self._read(self.db, op))
            elif op.kind == UPDATE:
                await self._measured(UPDATE, lambda: self._update(op))
            elif op.kind == INSERT:
                await self._measured(INSERT, lambda: self._insert(op))
            elif op.kind == SCAN:
                await self._measured(SCAN, lambda: self._scan(op))
            else:
                assert op.kind == READ_MODIFY_WRITE, f"unknown op kind {op.kind!r}"
                await self._read_modify_write(op)
        finally:
            if acknowledge and op.kind == INSERT:
                self.workload.acknowledge_insert(op)
        self.ops_done += 1

    async def _measured(self, kind: str, action: Callable[[], Awaitable[str]]) -> str:
        start_ns = time.perf_counter_ns()
        try:
            status = await action()
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none crashes the run
            status = self._error(kind, exc)
        self.measurements.record(kind, _elapsed_us(start_ns), status)
        return status

    def _error(self, kind: str, exc: Exception) -> str:
        message = f"{kind}: {type(exc).__name__}: {exc}"
        if self.measurements.note_error(message):
            log.warning("YCSB operation failed: %s", message)
        return STATUS_ERROR

    # -- the operations ---------------------------------------------------------------------

    async def _read(self, kv: Any, op: Op) -> str:
        data = await kv.get(self.workload.record_key(op.key))
        if data is None:
            return STATUS_NOT_FOUND
        decode_record(data)  # a binding hands back the fields, so decoding is part of a read
        return STATUS_OK

    async def _update(self, op: Op) -> str:
        record = self.workload.full_record_for_update(op)
        await self.db.put(self.workload.record_key(op.key), encode_record(record))
        return STATUS_OK

    async def _insert(self, op: Op) -> str:
        assert op.values is not None and len(op.values) == len(self.workload.field_names), "inserts write every field"
        await self.db.put(self.workload.record_key(op.key), encode_record(op.values))
        return STATUS_OK

    async def _scan(self, op: Op) -> str:
        assert op.scan_length is not None and op.scan_length >= 1, f"scan length {op.scan_length}"
        start = self.workload.record_key(op.key)
        rows = await self.db.scan(start, self.workload.table_end_key, limit=op.scan_length)
        assert len(rows) <= op.scan_length, f"scan returned {len(rows)} rows, limit {op.scan_length}"
        for _, data in rows:
            decode_record(data)
        return STATUS_OK

    async def _read_modify_write(self, op: Op) -> None:
        start_ns = time.perf_counter_ns()
        try:
            if self.use_transactions:
                async with self.db.transaction() as txn:  # type: ignore[attr-defined]
                    await self._read_modify_write_steps(txn, op)
            else:
                await self._read_modify_write_steps(self.db, op)
            status = STATUS_OK
        except _StepFailed as failed:
            status = failed.status  # the failing step already counted its error
        except Exception as exc:  # noqa: BLE001 - e.g. a commit that fails
            status = self._error(READ_MODIFY_WRITE, exc)
        # YCSB measures READ-MODIFY-WRITE itself, under its own name whatever the status.
        self.measurements.measure(READ_MODIFY_WRITE, _elapsed_us(start_ns))
        self.measurements.report_status(READ_MODIFY_WRITE, status)

    async def _read_modify_write_steps(self, kv: Any, op: Op) -> None:
        key = self.workload.record_key(op.key)
        record: dict[str, bytes] = {}

        async def read() -> str:
            data = await kv.get(key)
            if data is None:
                return STATUS_NOT_FOUND
            record.update(decode_record(data))
            return STATUS_OK

        async def write() -> str:
            assert op.values, "a read-modify-write writes at least one field"
            record.update(op.values)
            await kv.put(key, encode_record(record))
            return STATUS_OK

        for kind, step in ((READ, read), (UPDATE, write)):
            status = await self._measured(kind, step)
            if status != STATUS_OK:
                raise _StepFailed(status)


@dataclasses.dataclass
class _Budget:
    """How many more ops may be issued: an op count, a trio-clock deadline, or both."""

    operations: int | None
    deadline: float | None
    issued: int = 0

    def take(self) -> bool:
        if self.operations is not None and self.issued >= self.operations:
            return False
        if self.deadline is not None and trio.current_time() >= self.deadline:
            return False
        self.issued += 1
        return True


class _Progress:
    """Calls `callback` with a status line every `interval_s`, and a last one at the end
    (or `sink` with the raw figures, when given)."""

    def __init__(self, callback: ProgressCallback | None, executor: OpExecutor, interval_s: float,
                 sink: ProgressSink | None = None) -> None:
        assert interval_s > 0, f"progress interval must be positive, got {interval_s}"
        assert (callback is None) != (sink is None), "give a progress callback or a sink"
        self.callback = callback
        self.sink = sink
        self.executor = executor
        self.interval_s = interval_s
        self.start_ns = time.perf_counter_ns()
        self._last_ns = self.start_ns
        self._last_ops = 0
        self._lines = 0

    def emit(self) -> None:
        now_ns = time.perf_counter_ns()
        ops = self.executor.ops_done
        if self.sink is not None:
            self._last_ns, self._last_ops = now_ns, ops
            self._lines += 1
            self.sink(ops, self.executor.measurements.take_interval())
            return
        line = format_progress(
            elapsed_s=(now_ns - self.start_ns) / 1e9,
            operations=ops,
            interval_operations=ops - self._last_ops,
            interval_s=(now_ns - self._last_ns) / 1e9,
            interval_histograms=self.executor.measurements.take_interval(),
        )
        self._last_ns, self._last_ops = now_ns, ops
        self._lines += 1
        self.callback(line)

    def emit_final(self) -> None:
        # A tick that just fired already covered everything; a second, empty line would
        # read as a stall.
        if self._lines == 0 or self.executor.ops_done > self._last_ops:
            self.emit()

    async def run(self) -> None:
        while True:
            await trio.sleep(self.interval_s)
            self.emit()


async def _drive(
    executor: OpExecutor,
    workers: list[Callable[[], Awaitable[None]]],
    progress: ProgressCallback | None,
    progress_interval_s: float,
    progress_sink: ProgressSink | None = None,
) -> int:
    """Run the workers to completion (with a progress ticker); returns the runtime in ns."""
    start_ns = time.perf_counter_ns()
    reporter = None
    if progress is not None or progress_sink is not None:
        reporter = _Progress(progress, executor, progress_interval_s, sink=progress_sink)
    async with trio.open_nursery() as outer:
        if reporter is not None:
            outer.start_soon(reporter.run)
        async with trio.open_nursery() as clients:
            for worker in workers:
                clients.start_soon(worker)
        outer.cancel_scope.cancel()
    runtime_ns = time.perf_counter_ns() - start_ns
    if reporter is not None:
        reporter.emit_final()
    return runtime_ns


async def _load_phase(
    db: KvClient,
    spec: Workload,
    *,
    concurrency: int,
    seed: int | str,
    load_batch: int,
    progress: ProgressCallback | None,
    progress_interval_s: float,
) -> Report:
    workload = CoreWorkload(spec, seed=seed)
    executor = OpExecutor(db, workload, Measurements(track_intervals=progress is not None))
    remaining = spec.record_count - spec.insert_start

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            batch = [workload.next_load_op() for _ in range(min(load_batch, remaining))]
            remaining -= len(batch)
            async with trio.open_nursery() as puts:
                for op in batch:
                    puts.start_soon(lambda op=op: executor.execute(op, acknowledge=False))

    runtime_ns = await _drive(executor, [worker] * concurrency, progress, progress_interval_s)
    assert remaining == 0, f"load stopped with {remaining} records left"
    return Report("load", spec.name, runtime_ns, executor.ops_done, executor.measurements)


async def _run_phase(
    db: KvClient,
    spec: Workload,
    *,
    operations: int | None,
    duration_s: float | None,
    concurrency: int,
    seed: int | str,
    progress: ProgressCallback | None,
    progress_interval_s: float,
    client_index: int = 0,
    client_count: int = 1,
    progress_sink: ProgressSink | None = None,
) -> Report:
    workload = CoreWorkload(spec, seed=seed, operation_count=operations,
                            client_index=client_index, client_count=client_count)
    tracking = progress is not None or progress_sink is not None
    executor = OpExecutor(db, workload, Measurements(track_intervals=tracking))
    deadline = None if duration_s is None else trio.current_time() + duration_s
    budget = _Budget(operations, deadline)

    async def client() -> None:
        while budget.take():
            await executor.execute(workload.next_op())

    runtime_ns = await _drive(executor, [client] * concurrency, progress, progress_interval_s, progress_sink)
    return Report("run", spec.name, runtime_ns, executor.ops_done, executor.measurements)


def _check_arguments(
    phase: str, records: int, operations: int | None, duration_s: float | None, concurrency: int, load_batch: int
) -> None:
    if phase not in ("load", "run", "both"):
        raise ValueError(f"phase must be load, run or both, got {phase!r}")
    if records < 1:
        raise ValueError(f"records must be at least 1, got {records}")
    if not 1 <= concurrency <= CONCURRENCY_MAX:
        raise ValueError(f"concurrency must be in 1..{CONCURRENCY_MAX}, got {concurrency}")
    if not 1 <= load_batch <= LOAD_BATCH_MAX:
        raise ValueError(f"load_batch must be in 1..{LOAD_BATCH_MAX}, got {load_batch}")
    if phase != "load" and operations is None and duration_s is None:
        raise ValueError("a run needs operations, duration_s, or both")
    if operations is not None and operations < 0:
        raise ValueError(f"operations must be non-negative, got {operations}")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")


async def run_ycsb(
    db: KvClient,
    workload: Workload,
    *,
    phase: Phase,
    records: int,
    operations: int | None = None,
    duration_s: float | None = None,
    concurrency: int,
    seed: int | str,
    progress: ProgressCallback | None = None,
    load_batch: int = DEFAULT_LOAD_BATCH,
    progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S,
    client_index: int = 0,
    client_count: int = 1,
    progress_sink: ProgressSink | None = None,
) -> Report:
    """Load and/or run `workload` against `db`; returns the phase's `Report`.

    `records` is YCSB's recordcount (it overrides `workload.record_count`). For phase
    "both" the run report is returned, with the load report in `report.load_report`.
    `client_index` of `client_count`: this is one of several client processes running the
    run phase together (see `CoreWorkload.physical_keynum`); `progress_sink` takes the raw
    progress figures of the run phase instead of `progress` lines.
    """
    _check_arguments(phase, records, operations, duration_s, concurrency, load_batch)
    assert client_count == 1 or phase == "run", "several client processes share only the run phase"
    spec = dataclasses.replace(workload, record_count=records)
    load_report = None
    if phase in ("load", "both"):
        load_report = await _load_phase(
            db, spec, concurrency=concurrency, seed=seed, load_batch=load_batch,
            progress=progress, progress_interval_s=progress_interval_s,
        )
        if phase == "load":
            return load_report
    report = await _run_phase(
        db, spec, operations=operations, duration_s=duration_s, concurrency=concurrency,
        seed=seed, progress=progress, progress_interval_s=progress_interval_s,
        client_index=client_index, client_count=client_count, progress_sink=progress_sink,
    )
    report.load_report = load_report
    return report
