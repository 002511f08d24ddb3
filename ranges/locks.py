"""Transaction locks at a range's leaseholder: wound-wait over read spans and write keys.

Two kinds of lock, one table:
- **Unprepared read locks** (`LockTable`, in memory at the leaseholder only): a read-write
  transaction's locking reads hold the spans they read until it prepares, commits or aborts.
  They are lost when the lease moves (the table is reset on every new lease sequence): the
  transaction then fails to prepare here, which is safe (it aborts and retries).
- **Prepared locks** (`PreparedLock`, replicated through the range's log as part of a PREPARE
  and kept in the engine under `keys.lock_key`): the read spans and the buffered writes of a
  prepared transaction, with its prepare timestamp. They survive crashes and lease changes and
  move with splits (they are keyed by user key). Only COMMIT or ABORT resolution removes them.
- **Reservations**: the locks of a PREPARE proposed and not yet applied, held in memory so
  that no conflicting prepare or write is proposed meanwhile. They count as prepared.

Conflicts: a read conflicts with another transaction's write lock; a write conflicts with any
lock of another transaction. Wound-wait (Rosenkrantz et al. 1978, as in Spanner): an older
transaction (lower `priority`, i.e. earlier start) wounds the younger *unprepared* holders —
they lose their locks here and abort — and waits for prepared ones; a younger transaction
waits. Waits never form a cycle: a transaction only waits for older unprepared ones or for
prepared ones, and prepared transactions wait for nothing. A non-transactional write (a
plain `put`) is the youngest of all: it waits for every conflicting lock.

Snapshot reads (plain reads, read-only transactions) take no locks; they wait only for
prepared writes with `prepare_ts <= read_ts`, which could still commit at or below it.

HAZARD: unprepared locks of a client that vanished are held until `expire()` drops them
(inactivity timeout); a plain write blocked by them waits that long.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clock.timestamp import Timestamp

READ = "r"
WRITE = "w"
TXN_ID_BYTES = 16
WOUNDED_MEMORY_MAX = 10_000  # Remembered wounded transactions (a limit on everything).


@dataclass(frozen=True, slots=True)
class TxnMeta:
    """A transaction's identity and wound-wait priority (its first start time: a retry
    keeps it, so a transaction that keeps losing grows older until it wins)."""

    txn_id: bytes
    priority: int

    def __post_init__(self) -> None:
        if not (isinstance(self.txn_id, bytes) and len(self.txn_id) == TXN_ID_BYTES):
            raise ValueError(f"a txn id is {TXN_ID_BYTES} bytes, got {self.txn_id!r:.40}")
        if not (isinstance(self.priority, int) and not isinstance(self.priority, bool) and 0 <= self.priority < 1 << 63):
            raise ValueError(f"txn priority must be a non-negative 64-bit int, got {self.priority!r:.40}")

    def older_than(self, other: "TxnMeta") -> bool:
        return (self.priority, self.txn_id) < (other.priority, other.txn_id)

    def short(self) -> str:
        return self.txn_id.hex()[:8]

    def encode(self) -> list:
        return [self.txn_id, self.priority]

    @staticmethod
    def decode(raw: object) -> "TxnMeta":
        if not (isinstance(raw, list) and len(raw) == 2):
            raise ValueError(f"a txn is [txn_id, priority], got {raw!r:.60}")
        return TxnMeta(raw[0], raw[1])


@dataclass(frozen=True, slots=True)
class PreparedLock:
    """One replicated lock of a prepared transaction: a read span `[start, end)` or a write of
    `value` (None: a deletion) at key `start` (then `end == start + b"\\x00"`)."""

    txn: TxnMeta
    kind: str
    start: bytes
    end: bytes
    value: bytes | None
    prepare_ts: Timestamp
    anchor: bytes  # where the transaction record lives (the coordinator's range)

    def __post_init__(self) -> None:
        if self.kind not in (READ, WRITE):
            raise ValueError(f"lock kind must be 'r' or 'w', got {self.kind!r}")
        if not (isinstance(self.start, bytes) and isinstance(self.end, bytes) and self.start < self.end):
            raise ValueError("a lock covers a non-empty span [start, end)")
        if self.kind == WRITE and self.end != self.start + b"\x00":
            raise ValueError("a write lock covers exactly one key")
        if self.kind == READ and self.value is not None:
            raise ValueError("a read lock carries no value")
        if not isinstance(self.prepare_ts, Timestamp) or not isinstance(self.anchor, bytes):
            raise ValueError("a prepared lock needs a prepare timestamp and an anchor key")

    def encode(self) -> list:
        return [self.txn.encode(), self.kind, self.start, self.end, self.value, self.prepare_ts.encode(), self.anchor]

    @staticmethod
    def decode(raw: object) -> "PreparedLock":
        if not (isinstance(raw, list) and len(raw) == 7):
            raise ValueError(f"a prepared lock has 7 fields, got {raw!r:.60}")
        txn, kind, start, end, value, prepare_ts, anchor = raw
        return PreparedLock(TxnMeta.decode(txn), kind, start, end, value, Timestamp.decode(prepare_ts), anchor)


def overlaps(a_start: bytes, a_end: bytes, b_start: bytes, b_end: bytes) -> bool:
    return a_start < b_end and b_start < a_end


def conflicts(kind: str, other_kind: str) -> bool:
    return kind == WRITE or other_kind == WRITE


@dataclass
class Holder:
    """A conflicting lock holder, as the wound-wait decision needs it."""

    txn: TxnMeta
    prepared: bool  # prepared or being prepared: cannot be wounded


@dataclass
class _TxnLocks:
    txn: TxnMeta
    read_spans: list[tuple[bytes, bytes]] = field(default_factory=list)
    reserved: list[PreparedLock] = field(default_factory=list)
    last_active_ns: int = 0


@dataclass
class LockTable:
    """The in-memory part at one leaseholder. `prepared` (the range state machine's mirror of
    its replicated locks) is passed in by the caller for each decision."""

    lease_sequence: int = 0
    txns: dict[bytes, _TxnLocks] = field(default_factory=dict)
    wounded: dict[bytes, str] = field(default_factory=dict)  # txn_id -> why

    def check_lease(self, lease_sequence: int) -> None:
        """Unprepared locks belong to one lease: a new lease starts from an empty table."""
        if lease_sequence != self.lease_sequence:
            self.lease_sequence = lease_sequence
            self.txns.clear()

    def holders(self, txn: TxnMeta | None, kind: str, start: bytes, end: bytes,
                prepared: list[PreparedLock]) -> list[Holder]:
        """Other transactions whose locks conflict with `kind` on `[start, end)`."""
        me = None if txn is None else txn.txn_id
        found: dict[bytes, Holder] = {}
        for lock in prepared:
            if lock.txn.txn_id != me and conflicts(kind, lock.kind) and overlaps(start, end, lock.start, lock.end):
                found[lock.txn.txn_id] = Holder(lock.txn, True)
        for txn_id, state in self.txns.items():
            if txn_id == me or txn_id in found:
                continue
            reserved = any(conflicts(kind, lock.kind) and overlaps(start, end, lock.start, lock.end)
                           for lock in state.reserved)
            read = kind == WRITE and any(overlaps(start, end, s, e) for s, e in state.read_spans)
            if reserved or read:
                # A transaction whose prepare (or one-phase commit) is in flight counts as
                # prepared for all its locks: wounding it now could not stop its commit.
                found[txn_id] = Holder(state.txn, bool(state.reserved))
        return list(found.values())

    def may_proceed(self, txn: TxnMeta | None, holders: list[Holder], key: bytes = b"") -> bool:
        """Wound-wait: True once nothing blocks `txn` (wounding younger unprepared holders)."""
        if not holders:
            return True
        if txn is None or any(h.prepared or not txn.older_than(h.txn) for h in holders):
            return False  # Wait: for prepared holders, for older ones; plain writes always wait.
        for holder in holders:
            self.wound(holder.txn.txn_id, f"wounded by the older transaction {txn.short()} over key {key[:32]!r}")
        return True

    def wound(self, txn_id: bytes, why: str) -> None:
        self.txns.pop(txn_id, None)
        if len(self.wounded) >= WOUNDED_MEMORY_MAX:
            self.wounded.pop(next(iter(self.wounded)))
        self.wounded[txn_id] = why

    def add_read(self, txn: TxnMeta, start: bytes, end: bytes, now_ns: int) -> None:
        state = self._state(txn, now_ns)
        if (start, end) not in state.read_spans:
            state.read_spans.append((start, end))

    def holds_reads(self, txn: TxnMeta, spans: list[tuple[bytes, bytes]]) -> bool:
        """Whether every span `txn` read here is still locked (not lost, wounded or expired)."""
        state = self.txns.get(txn.txn_id)
        held = set() if state is None else set(state.read_spans)
        return all(tuple(span) in held for span in spans)

    def reserve(self, txn: TxnMeta, locks: list[PreparedLock], now_ns: int) -> None:
        self._state(txn, now_ns).reserved = list(locks)

    def reserved_locks(self) -> list[PreparedLock]:
        return [lock for state in self.txns.values() for lock in state.reserved]

    def release(self, txn_id: bytes) -> None:
        """Drop every in-memory lock of the transaction (it prepared, committed or aborted)."""
        self.txns.pop(txn_id, None)

    def touch(self, txn: TxnMeta, now_ns: int) -> None:
        state = self.txns.get(txn.txn_id)
        if state is not None:
            state.last_active_ns = now_ns

    def expire(self, now_ns: int, inactive_ns: int) -> list[bytes]:
        """Drop the unprepared locks of transactions silent for `inactive_ns`."""
        expired = [txn_id for txn_id, state in self.txns.items()
                   if not state.reserved and now_ns - state.last_active_ns > inactive_ns]
        for txn_id in expired:
            self.wound(txn_id, "its locks expired: the transaction was inactive for too long")
        return expired

    def _state(self, txn: TxnMeta, now_ns: int) -> _TxnLocks:
        state = self.txns.get(txn.txn_id)
        if state is None:
            state = self.txns[txn.txn_id] = _TxnLocks(txn)
        state.last_active_ns = now_ns
        return state


def prepared_writes_blocking(prepared: list[PreparedLock], start: bytes, end: bytes, read_ts: Timestamp) -> bool:
    """Whether a snapshot read of `[start, end)` at `read_ts` must wait: a prepared write there
    could still commit at or below `read_ts`."""
    return any(lock.kind == WRITE and lock.prepare_ts <= read_ts and overlaps(start, end, lock.start, lock.end)
               for lock in prepared)
