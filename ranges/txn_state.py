"""A range's replicated transaction state: prepared locks and transaction records.

Owned by the `RangeStateMachine`; every method that changes state appends to the caller's
write batch, so a command's effects land atomically with the applied index.

- Prepared locks (`ranges.locks.PreparedLock`) live in the engine under `keys.lock_key(start,
  txn_id)` and, for fast conflict checks, in `prepared` (a mirror, rebuilt from the engine on
  load, restore and split). A PREPARE adds them; a RESOLVE removes them and, on commit, applies
  the writes at the commit timestamp.
- Transaction records live under `keys.txn_record_key(anchor, txn_id)` in the range holding
  the anchor key: `[committed, commit_ts]`. Written once by the first EndTxn applied (commit or
  abort), never changed: that is how a transaction is decided exactly once, whether the client
  commits or a participant's recovery aborts it.

Both are keyed by user key, so a split divides them like MVCC data; a read lock's span that
straddles the split key is cut in two, one record per side.

HAZARD: transaction records are never garbage-collected yet (one small record per
multi-range transaction). Collecting one needs every participant resolved first, or a late
recovery would find no record and abort a committed transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

from clock.timestamp import Timestamp
from paxos_groups.engine import Engine, WriteBatch
from ranges.commands import EndTxn, OnePhaseCommit, PrepareTxn, ResolveTxn
from ranges.descriptor import RangeDescriptor
from ranges.keys import (
    decode_txn_record_key,
    lock_key,
    lock_span,
    txn_record_key,
    txn_record_span,
)
from ranges.locks import READ, WRITE, PreparedLock
from ranges.mvcc import MVCC


@dataclass(frozen=True, slots=True)
class TxnRecord:
    committed: bool
    ts: Timestamp  # commit timestamp, or when the abort was decided

    def encode(self) -> list:
        return [self.committed, self.ts.encode()]

    @staticmethod
    def decode(raw: object) -> "TxnRecord":
        if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], bool)):
            raise ValueError(f"a txn record is [committed, ts], got {raw!r:.60}")
        return TxnRecord(raw[0], Timestamp.decode(raw[1]))


class TxnState:
    def __init__(self, engine: Engine, mvcc: MVCC) -> None:
        self._engine = engine
        self._mvcc = mvcc
        self.prepared: list[PreparedLock] = []

    def load(self, descriptor: RangeDescriptor) -> None:
        self.prepared = [PreparedLock.decode(cbor2.loads(raw))
                         for _, raw in self._engine.scan(*lock_span(descriptor.start_key, descriptor.end_key))]

    def prepared_of(self, txn_id: bytes) -> list[PreparedLock]:
        return [lock for lock in self.prepared if lock.txn.txn_id == txn_id]

    # -- apply -------------------------------------------------------------------------------

    def prepare(self, batch: WriteBatch, cmd: PrepareTxn) -> None:
        ours = {(lock.start, lock.txn.txn_id) for lock in cmd.locks}
        self.prepared = [lock for lock in self.prepared if (lock.start, lock.txn.txn_id) not in ours]
        for lock in cmd.locks:
            batch.append((lock_key(lock.start, lock.txn.txn_id), cbor2.dumps(lock.encode())))
            self.prepared.append(lock)

    def one_phase_commit(self, batch: WriteBatch, cmd: OnePhaseCommit) -> int:
        return sum(self._write(batch, key, value, cmd.ts) for key, value in cmd.writes)

    def end(self, batch: WriteBatch, cmd: EndTxn) -> TxnRecord:
        """The transaction's record after this EndTxn: the existing one, or a new one."""
        key = txn_record_key(cmd.anchor, cmd.txn_id)
        existing = self._engine.get(key)
        if existing is not None:
            return TxnRecord.decode(cbor2.loads(existing))
        record = TxnRecord(cmd.commit, cmd.ts)
        batch.append((key, cbor2.dumps(record.encode())))
        return record

    def record(self, anchor: bytes, txn_id: bytes) -> TxnRecord | None:
        raw = self._engine.get(txn_record_key(anchor, txn_id))
        return None if raw is None else TxnRecord.decode(cbor2.loads(raw))

    def resolve(self, batch: WriteBatch, cmd: ResolveTxn) -> tuple[int, int, list[bytes]]:
        """`(locks resolved, size delta, keys written)`."""
        mine = [lock for lock in self.prepared
                if lock.txn.txn_id == cmd.txn_id and cmd.start <= lock.start < cmd.end]
        size = 0
        written = []
        for lock in mine:
            batch.append((lock_key(lock.start, lock.txn.txn_id), None))
            if cmd.commit_ts is not None and lock.kind == WRITE:
                size += self._write(batch, lock.start, lock.value, cmd.commit_ts)
                written.append(lock.start)
        gone = {id(lock) for lock in mine}
        self.prepared = [lock for lock in self.prepared if id(lock) not in gone]
        return len(mine), size, written

    def _write(self, batch: WriteBatch, key: bytes, value: bytes | None, ts: Timestamp) -> int:
        if value is None:
            return self._mvcc.delete(batch, key, ts)
        return self._mvcc.put(batch, key, ts, value)

    # -- splits and snapshots ----------------------------------------------------------------

    def split(self, batch: WriteBatch, split_key: bytes) -> None:
        """Keep the locks left of `split_key`; a read span across it is cut in two (the right
        part is written as its own record, for the right-hand range to load)."""
        kept = []
        for lock in self.prepared:
            if lock.start >= split_key:
                continue
            if lock.kind == READ and lock.end > split_key:
                left = PreparedLock(lock.txn, READ, lock.start, split_key, None, lock.prepare_ts, lock.anchor)
                right = PreparedLock(lock.txn, READ, split_key, lock.end, None, lock.prepare_ts, lock.anchor)
                batch.append((lock_key(left.start, lock.txn.txn_id), cbor2.dumps(left.encode())))
                batch.append((lock_key(right.start, lock.txn.txn_id), cbor2.dumps(right.encode())))
                lock = left
            kept.append(lock)
        self.prepared = kept

    def export(self, descriptor: RangeDescriptor) -> dict:
        start, end = descriptor.start_key, descriptor.end_key
        return {
            "locks": [lock.encode() for lock in self.prepared],
            "records": [[*decode_txn_record_key(k), cbor2.loads(v)] for k, v in self._engine.scan(*txn_record_span(start, end))],
        }

    def restore_batch(self, batch: WriteBatch, descriptor: RangeDescriptor, exported: object) -> None:
        """Replace this range's locks and records by the exported ones; ValueError if malformed."""
        if not (isinstance(exported, dict) and isinstance(exported.get("locks"), list)
                and isinstance(exported.get("records"), list)):
            raise ValueError("snapshot txn state must be {'locks': [...], 'records': [...]}")
        locks = [PreparedLock.decode(raw) for raw in exported["locks"]]
        records = [(item[0], item[1], TxnRecord.decode(item[2])) for item in exported["records"]
                   if isinstance(item, list) and len(item) == 3]
        start, end = descriptor.start_key, descriptor.end_key
        batch.extend((k, None) for k, _ in self._engine.scan(*lock_span(start, end)))
        batch.extend((k, None) for k, _ in self._engine.scan(*txn_record_span(start, end)))
        for lock in locks:
            batch.append((lock_key(lock.start, lock.txn.txn_id), cbor2.dumps(lock.encode())))
        for anchor, txn_id, record in records:
            batch.append((txn_record_key(anchor, txn_id), cbor2.dumps(record.encode())))
        self.prepared = locks

