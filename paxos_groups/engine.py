"""The node's storage engine: one ordered byte-key store per node.

Everything a node keeps durably lives in one engine: its identity, the HLC high-water
mark, every Paxos group's acceptor state and log, and the ranges' applied state and MVCC
data, under disjoint key prefixes (see `docs/ARCHITECTURE.md`, "Engine key layout").

Durability rule: `write(batch, sync=True)` returns only once the batch is on disk
(fsynced). Writes are applied atomically and in order; an unsynced write may be lost in a
crash, but only together with every write after it (a crash loses a suffix).

Two implementations: `RocksEngine` (rocksdict, real nodes) and `MemoryEngine` (tests and
the simulator; `crash()` drops the unsynced suffix, as a power cut would).
"""

from __future__ import annotations

import bisect
import threading
from typing import Iterator, Protocol

# A write batch: (key, value) puts and (key, None) deletes, applied atomically in order.
WriteBatch = list[tuple[bytes, bytes | None]]


class Engine(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, start: bytes, end: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Keys in [start, end) in ascending byte order."""
        ...

    def scan_reverse(self, start: bytes, end: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Keys in [start, end) in descending byte order."""
        ...

    def first_in(self, start: bytes, end: bytes) -> tuple[bytes, bytes] | None:
        """The first (key, value) with start <= key < end, or None: `next(scan(start, end), None)`
        without an iterator per call (the point-read fast path of MVCC)."""
        ...

    def write(self, batch: WriteBatch, sync: bool) -> None: ...

    def close(self) -> None: ...


class MemoryEngine:
    """An in-memory engine with a simulated disk.

    `synced` is what survives a crash; `pending` is the unsynced suffix. Reads see both.
    """

    def __init__(self) -> None:
        self._keys: list[bytes] = []  # Invariant: sorted, equal to sorted(self._data).
        self._data: dict[bytes, bytes] = {}
        self._durable: dict[bytes, bytes] = {}
        self._pending: list[WriteBatch] = []
        self.sync_count = 0

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def scan(self, start: bytes, end: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        i = bisect.bisect_left(self._keys, start)
        keys = self._keys
        n = 0
        while i < len(keys) and keys[i] < end and (limit is None or n < limit):
            yield keys[i], self._data[keys[i]]
            i += 1
            n += 1

    def first_in(self, start: bytes, end: bytes) -> tuple[bytes, bytes] | None:
        keys = self._keys
        i = bisect.bisect_left(keys, start)
        if i < len(keys) and keys[i] < end:
            return keys[i], self._data[keys[i]]
        return None

    def scan_reverse(self, start: bytes, end: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        i = bisect.bisect_left(self._keys, end) - 1
        keys = self._keys
        n = 0
        while i >= 0 and keys[i] >= start and (limit is None or n < limit):
            yield keys[i], self._data[keys[i]]
            i -= 1
            n += 1

    def write(self, batch: WriteBatch, sync: bool) -> None:
        batch = list(batch)
        for key, value in batch:
            assert isinstance(key, bytes), f"engine keys are bytes, got {type(key)}"
            assert value is None or isinstance(value, bytes), f"engine values are bytes, got {type(value)}"
            self._apply(self._data, key, value, self._keys)
        self._pending.append(batch)
        if sync:
            self._flush_pending()
            self.sync_count += 1

    def _flush_pending(self) -> None:
        for batch in self._pending:
            for key, value in batch:
                self._apply(self._durable, key, value, None)
        self._pending.clear()

    @staticmethod
    def _apply(data: dict[bytes, bytes], key: bytes, value: bytes | None, keys: list[bytes] | None) -> None:
        if value is None:
            if key in data:
                del data[key]
                if keys is not None:
                    keys.pop(bisect.bisect_left(keys, key))
            return
        if key not in data and keys is not None:
            bisect.insort(keys, key)
        data[key] = value

    def crash(self, keep_pending_batches: int = 0) -> None:
        """Lose the unsynced suffix (all but the first `keep_pending_batches` pending batches)."""
        assert keep_pending_batches >= 0
        kept = self._pending[:keep_pending_batches]
        self._pending = kept
        self._flush_pending()
        self._data = dict(self._durable)
        self._keys = sorted(self._data)

    @property
    def pending_batches(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        pass


class RocksEngine:
    """The rocksdict-backed engine of a real node. Raw mode: bytes keys and values.

    Point reads by seek (`first_in`) reuse one *tailing* iterator: creating a RocksDB
    iterator costs ~4-15 us (one child iterator per memtable and L0 file), a seek on a live
    one ~1.5 us. A tailing iterator reads the latest data at every seek (no snapshot), so it
    sees every write made before the call, as `get` does. It is private to `first_in`, which
    seeks and reads in one synchronous call, so no caller ever observes it mid-iteration.

    HAZARD: RocksDB keeps the LOCK file while any iterator is alive: `close()` drops the
    tailing iterator before closing the database.

    Deferred syncs (`defer_syncs()`, used by the node driver): a synced write of rocksdict
    holds the GIL for the whole fdatasync, stalling the event loop. In deferred mode
    `write(batch, sync=True)` appends to RocksDB's WAL without syncing and counts a
    requested sync (`syncs_requested`); the caller then makes it durable off the event loop
    with `sync_wal()` in a worker thread (`Rdict.flush_wal(sync=True)`, which releases the
    GIL and fdatasyncs every live WAL file) and records it with `mark_durable(upto)`.
    The WAL is sequential, so one sync covers every write made before it started.

    HAZARD: in deferred mode `write(sync=True)` returns BEFORE the batch is durable: the
    caller must hold back everything that depends on it (messages, acknowledgements) until
    `syncs_durable` reaches the `syncs_requested` it read after the write. Only the node's
    sync pipeline (`cluster/node.py`) does that; nothing else may turn deferral on.
    """

    def __init__(self, path: str) -> None:
        import rocksdict

        self._rocksdict = rocksdict
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = rocksdict.Rdict(path, options=options)
        self._sync_opts = rocksdict.WriteOptions()
        self._sync_opts.sync = True
        self._nosync_opts = rocksdict.WriteOptions()
        self._nosync_opts.sync = False
        self._tailing_opts = rocksdict.ReadOptions()
        self._tailing_opts.set_tailing(True)
        self._tailing = None  # created on first use; see the class docstring
        self._defer_syncs = False
        # close() waits for a sync_wal running in a worker thread (never close under it).
        self._close_lock = threading.Lock()
        self._closed = False
        # Invariant: syncs_durable <= syncs_requested; every write made before the
        # syncs_requested-th deferred synced write is durable once syncs_durable reaches it.
        self.syncs_requested = 0
        self.syncs_durable = 0
        self.path = path

    # -- deferred syncs (see the class docstring) --

    def defer_syncs(self) -> None:
        """From now on `write(sync=True)` defers its fsync to `sync_wal()`. Irreversible."""
        self._defer_syncs = True

    @property
    def defers_syncs(self) -> bool:
        return self._defer_syncs

    def sync_wal(self) -> bool:
        """Make every write made before this call durable; False (nothing synced) if the
        engine was closed. Thread-safe, releases the GIL: meant for a worker thread, while
        the event loop goes on (and may go on writing)."""
        with self._close_lock:
            if self._closed:
                return False
            self._db.flush_wal(True)
            return True

    def mark_durable(self, upto: int) -> None:
        """Record that the first `upto` requested syncs are durable (a `sync_wal` that started
        after the upto-th request returned). Called on the event loop's thread."""
        assert upto <= self.syncs_requested, f"marking {upto} durable, only {self.syncs_requested} requested"
        if upto > self.syncs_durable:
            self.syncs_durable = upto

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def scan(self, start: bytes, end: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        # rocksdict's iterate bounds misbehave in raw mode: seek and check the end ourselves.
        it = self._db.iter()
        try:
            it.seek(start)
            n = 0
            while it.valid() and (limit is None or n < limit):
                key = it.key()
                if key >= end:
                    break
                yield key, it.value()
                n += 1
                it.next()
        finally:
            del it

    def first_in(self, start: bytes, end: bytes) -> tuple[bytes, bytes] | None:
        it = self._tailing
        if it is None:
            it = self._tailing = self._db.iter(self._tailing_opts)
        it.seek(start)
        if not it.valid():
            return None
        key = it.key()
        if key >= end:
            return None
        assert key >= start, f"seek({start!r}) landed before it: {key!r}"
        return key, it.value()

    def scan_reverse(self, start: bytes, end: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        try:
            it.seek_for_prev(end)
            if it.valid() and it.key() >= end:
                it.prev()
            n = 0
            while it.valid() and (limit is None or n < limit):
                key = it.key()
                if key < start:
                    break
                yield key, it.value()
                n += 1
                it.prev()
        finally:
            del it

    def write(self, batch: WriteBatch, sync: bool) -> None:
        wb = self._rocksdict.WriteBatch(raw_mode=True)
        for key, value in batch:
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        if sync and self._defer_syncs:
            self._db.write(wb, self._nosync_opts)
            self.syncs_requested += 1
            return
        self._db.write(wb, self._sync_opts if sync else self._nosync_opts)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return  # Idempotent: the embedded cluster may close a killed node's store twice.
            self._closed = True
            self._tailing = None  # an alive iterator would keep the LOCK file
            self._db.close()
