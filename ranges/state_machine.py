"""The range state machine: applies a range's chosen log entries to the node's engine.

Every replica of a range applies the same chosen entries in the same order with `apply`, and
ends in the same state: apply decisions depend only on the entry and the applied state, never
on a clock or on which node runs them.

Guarantees:
- Atomic apply: each entry's effects and the new applied state (applied_index, lease,
  descriptor) go into ONE engine write batch. After a crash the engine holds either both or
  neither, so replaying the log from the persisted applied index is idempotent. The batch is
  written with `sync=False`: the Paxos log is the durable record, and a lost suffix of applied
  state is simply re-applied from it.
- Proposer lease check (CockroachDB): a Put/Delete proposed under lease sequence s applies
  only while the applied lease has sequence s. A write proposed by an old leaseholder can never
  apply after a new lease, whose holder may already have served reads the write would change.
- At-most-once writes: an applied Put/Delete leaves a dedup record under its op_id; a later
  entry with the same op_id returns the recorded result without re-applying, so clients may
  retry ambiguous writes with the same op_id.
- Malformed entries are rejected (ApplyResult ok=False), they still consume their index.
- Increment reads the key's newest version and writes strictly above it, so a counter (the
  range-id allocator) never hands out a value twice, whatever the proposer's clock said.
- Split (docs/SHARDING.md): one batch shrinks this range's descriptor, creates the right-hand
  range's applied state (index 0, this range's lease, generation + 1) and copies this range's
  dedup records to it. MVCC data does not move. A Split with a stale generation, a boundary
  that is not strictly inside the range, or a key in the system keyspace is rejected, so a
  duplicate or stale split changes nothing.
- MetaSplit is conditional on the current meta entry: it applies once, a duplicate whose
  effect is already in place succeeds without change, anything else is rejected.

Dedup garbage collection: at every index that is a multiple of `DEDUP_GC_EVERY` and carries a
timestamp (Put/Delete ts, or a lease start), records older than `DEDUP_TTL_NS` before that
timestamp are deleted. To bound the work, each collection sweeps only one of
`DEDUP_GC_SLICES` slices of the op_id space (by first byte), chosen by the index. Both the
trigger and the slice depend only on the log, so every replica deletes the same records.

HAZARD: a client retry later than `DEDUP_TTL_NS` after its first attempt may apply twice;
clients must give up on an op_id well within the TTL.
HAZARD: `restore` clears only the snapshot descriptor's span: data this node holds outside it
for this range (after the range shrank) is left as garbage rather than risk deleting a
neighbouring range's data on the same node.
HAZARD: the applied state is persisted with `sync=False`; callers must not acknowledge a
write to a client on the basis of applied state alone unless the log entry itself is durable.
HAZARD: a Split asserts that no applied state exists yet for the new range id. The Store must
not persist state for a range it learns of (e.g. from its Paxos group's messages) before the
local replica of the parent range has applied the Split; ids must never be reused.
HAZARD: an Increment or MetaSplit may apply above its command timestamp (see `ApplyResult.ts`);
callers must use the reported timestamp (commit-wait, responses), not the proposed one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

from clock.timestamp import MAX, Timestamp
from paxos_groups.engine import Engine, WriteBatch
from paxos_groups.lease import NO_LEASE, Lease, LeaseStatus, apply_lease_request, lease_status
from ranges.commands import (
    MetaAck,
    INT64_MAX,
    INT64_MIN,
    CommandDecodeError,
    Delete,
    Increment,
    IncrementEpoch,
    LivenessHeartbeat,
    MetaSplit,
    Put,
    RequestLease,
    Split,
    TXN_COMMANDS,
    EndTxn,
    OnePhaseCommit,
    PrepareTxn,
    ResolveTxn,
    decode_command,
)
from ranges.txn_state import TxnState
from ranges.descriptor import RangeDescriptor, decode_meta_value, encode_meta_value
from ranges.liveness import LivenessRecord, apply_heartbeat, apply_increment
from ranges.keys import (
    liveness_key,
    range_pending_meta_key,
    KEY_MAX,
    KEY_MIN,
    RANGE_ID_COUNTER_KEY,
    SYSTEM_KEY_MAX,
    TS_SUFFIX_BYTES,
    decode_mvcc_user_key,
    meta_key,
    mvcc_key,
    mvcc_span,
    prefix_end,
    range_dedup_key,
    range_dedup_prefix,
    range_state_key,
)
from ranges.mvcc import MVCC, encode_version_value

DEDUP_TTL_NS = 60 * 1_000_000_000
DEDUP_GC_EVERY = 1024
DEDUP_GC_SLICES = 256  # One slice per first byte of op_id.
_STATE_FIELDS = {"applied_index", "lease", "descriptor"}
_SNAPSHOT_FIELDS = {"applied_index", "lease", "descriptor", "mvcc", "dedup", "pending_meta"}
COUNTER_BYTES = 8  # Increment's integers: 8-byte big-endian signed.

# Planted bugs (FoundationDB buggify style) that the simulator's checkers must catch.
# The Store passes `bugs & KNOWN_BUGS` to every RangeStateMachine.
BUG_SPLIT_DROPS_RHS_WRITE = "split-drops-rhs-write"  # The split loses a right-hand write.
# Ends a node's liveness epoch without waiting for its record to expire: its epoch leases
# die while it may still be serving under them.
BUG_EPOCH_INCREMENT_EARLY = "epoch-increment-early"
KNOWN_BUGS = frozenset({BUG_SPLIT_DROPS_RHS_WRITE, BUG_EPOCH_INCREMENT_EARLY})


@dataclass(frozen=True, slots=True)
class ApplyResult:
    ok: bool
    error: str | None
    op_id: bytes | None
    # "put", "delete", "increment", "split", "meta_split", "lease", "noop", "malformed", "stale"
    kind: str
    lease_changed: bool = False  # The applied lease value changed (new lease or renewal).
    ts: Timestamp | None = None  # The write's timestamp (the original one if deduplicated).
    # Nothing was re-applied: the op_id had been applied before (or, for a MetaSplit, its
    # effect was already in place).
    deduplicated: bool = False
    # Increment: the new integer. Split: {"left": descriptor.encode(), "right": ...}.
    value: object = None
    # Set by an applied Split: the new right-hand range, whose replica the Store must create.
    new_range: RangeDescriptor | None = None
    # Set by an applied ResolveTxn: the keys whose writes it applied.
    written: list[bytes] | None = None


class RangeStateMachine:
    def __init__(
        self,
        engine: Engine,
        descriptor: RangeDescriptor | None,
        max_offset_ns: int,
        range_id: int | None = None,
        bugs: frozenset[str] = frozenset(),
    ) -> None:
        """Load the range's applied state from `engine`, or start from `descriptor`.

        With `descriptor=None`, `range_id` names a range whose applied state must already be
        in the engine (a restart, or the right-hand range of a split). A persisted descriptor
        wins over the given one: it may have changed (split) since the caller's copy was made.
        `bugs` switches on planted bugs (a subset of KNOWN_BUGS; the simulator's bug hunts).
        """
        assert max_offset_ns >= 0, f"max_offset_ns must not be negative: {max_offset_ns}"
        assert bugs <= KNOWN_BUGS, f"unknown state machine bugs: {sorted(bugs - KNOWN_BUGS)}"
        assert descriptor is not None or range_id is not None, "need a descriptor or a range_id"
        assert descriptor is None or range_id in (None, descriptor.range_id), "range_id mismatch"
        self._engine = engine
        self._mvcc = MVCC(engine)
        self._max_offset_ns = max_offset_ns
        self._bugs = bugs
        self._range_id = descriptor.range_id if descriptor is not None else range_id
        self._applied_index = 0
        self._lease = NO_LEASE
        self._descriptor = descriptor
        # Approximate MVCC bytes of the range, computed on first use, then kept up to date.
        self._size_bytes: int | None = None
        self._pending_meta: list | None = None  # Loaded lazily from the engine.
        self._load_applied_state()
        assert self._descriptor is not None, f"range {self._range_id} has no applied state in the engine"
        self.txn = TxnState(engine, self._mvcc)
        self.txn.load(self._descriptor)
        # Set by the Store: takes (range_id, batch) instead of writing each entry's batch
        # itself. The Store must write it before anything reads this range's keys again.
        self.write_sink = None

    @staticmethod
    def initial_state(descriptor: RangeDescriptor) -> bytes:
        """The encoded applied state of a new range (index 0, no lease), for bootstrapping."""
        return _encode_applied_state(0, NO_LEASE, descriptor)

    # -- state ---------------------------------------------------------------------------

    @property
    def applied_index(self) -> int:
        return self._applied_index

    @property
    def lease(self) -> Lease:
        return self._lease

    @property
    def descriptor(self) -> RangeDescriptor:
        return self._descriptor

    @property
    def mvcc(self) -> MVCC:
        return self._mvcc

    def lease_status(self, node_id: int, now: Timestamp) -> LeaseStatus:
        return lease_status(self._lease, node_id, now, self._max_offset_ns)

    def size_bytes(self) -> int:
        """Approximate engine bytes of the range's MVCC data (all versions)."""
        if self._size_bytes is None:
            d = self._descriptor
            self._size_bytes = self._mvcc.span_bytes(d.start_key, d.end_key)
        assert self._size_bytes >= 0, "a size is never negative"
        return self._size_bytes

    def _load_applied_state(self) -> None:
        raw = self._engine.get(range_state_key(self._range_id))
        if raw is None:
            return
        index, lease, descriptor = _decode_applied_state(cbor2.loads(raw))
        assert descriptor.range_id == self._range_id, f"range {self._range_id} state holds {descriptor}"
        self._applied_index, self._lease, self._descriptor = index, lease, descriptor

    def _append_applied_state(self, batch: WriteBatch, index: int) -> None:
        encoded = _encode_applied_state(index, self._lease, self._descriptor)
        batch.append((range_state_key(self._range_id), encoded))

    # -- apply ---------------------------------------------------------------------------

    def apply(self, index: int, value: object) -> ApplyResult:
        """Apply the chosen entry at `index`: None (a no-op) or an encoded command.

        `value` is `encode_command(cmd)` or its cbor bytes. An index at or below the applied
        index was applied already (log replay after a restart) and changes nothing.
        """
        if index <= self._applied_index:
            return ApplyResult(False, f"index {index} already applied", None, "stale")
        assert index == self._applied_index + 1, f"apply gap: applied {self._applied_index}, got {index}"
        batch: WriteBatch = []
        size_delta, result = self._apply_entry(batch, index, value)
        self._append_applied_state(batch, index)
        if self.write_sink is not None:
            self.write_sink(self._range_id, batch)  # The Store writes a cycle's applies at once.
        else:
            self._engine.write(batch, sync=False)
        self._applied_index = index
        if self._size_bytes is not None:
            self._size_bytes += size_delta
        return result

    def _apply_entry(self, batch: WriteBatch, index: int, value: object) -> tuple[int, ApplyResult]:
        if value is None:
            return 0, ApplyResult(True, None, None, "noop")
        try:
            cmd = decode_command(cbor2.loads(value) if isinstance(value, bytes) else value)
        except (CommandDecodeError, cbor2.CBORError, ValueError) as e:
            return 0, ApplyResult(False, f"malformed entry: {e}", None, "malformed")
        if isinstance(cmd, RequestLease):
            self._maybe_collect_dedup(batch, index, cmd.lease.start)
            return 0, self._apply_lease(cmd)
        self._maybe_collect_dedup(batch, index, cmd.ts)
        if isinstance(cmd, TXN_COMMANDS):
            return self._apply_txn(batch, cmd)
        if isinstance(cmd, Split):
            return self._apply_split(batch, cmd)
        if isinstance(cmd, MetaAck):
            return self._apply_meta_ack(batch, cmd)
        kind = _WRITE_KINDS[type(cmd)]
        # Dedup first: a retry of a write that already applied reports success even if
        # the lease changed since, so the client never mistakes an applied write for a failed one.
        recorded = self._engine.get(range_dedup_key(self._range_id, cmd.op_id))
        if recorded is not None:
            return 0, _deduplicated_result(cmd.op_id, recorded)
        if cmd.lease_sequence != self._lease.sequence:
            return 0, ApplyResult(False, "lease changed", cmd.op_id, kind)
        if isinstance(cmd, Increment):
            return self._apply_increment(batch, cmd)
        if isinstance(cmd, (LivenessHeartbeat, IncrementEpoch)):
            return self._apply_liveness(batch, cmd)
        if isinstance(cmd, MetaSplit):
            return self._apply_meta_split(batch, cmd)
        return self._apply_write(batch, cmd)

    def _apply_lease(self, cmd: RequestLease) -> ApplyResult:
        if cmd.prev_sequence != self._lease.sequence:
            return ApplyResult(False, "lease changed since the request", None, "lease")
        if cmd.lease.holder not in self._descriptor.replicas:
            return ApplyResult(False, f"node {cmd.lease.holder} is not a replica", None, "lease")
        new_lease, accepted, reason = apply_lease_request(self._lease, cmd.lease, cmd.transfer_from, cmd.prev)
        changed = new_lease != self._lease
        assert accepted or not changed, "a rejected lease request leaves the lease alone"
        self._lease = new_lease
        return ApplyResult(accepted, reason, None, "lease", lease_changed=changed)

    def _apply_write(self, batch: WriteBatch, cmd: Put | Delete) -> tuple[int, ApplyResult]:
        kind = _WRITE_KINDS[type(cmd)]
        if not self._descriptor.contains(cmd.key):
            return 0, ApplyResult(False, "key outside the range", cmd.op_id, kind)
        if isinstance(cmd, Put):
            size_delta = self._mvcc.put(batch, cmd.key, cmd.ts, cmd.value)
        else:
            size_delta = self._mvcc.delete(batch, cmd.key, cmd.ts)
        self._record_dedup(batch, cmd.op_id, cmd.ts, [kind, cmd.ts.encode()])
        return size_delta, ApplyResult(True, None, cmd.op_id, kind, ts=cmd.ts)

    def _record_dedup(self, batch: WriteBatch, op_id: bytes, ts: Timestamp, result: list) -> None:
        _decode_result(result)  # Assert the record when writing it, as when reading it back.
        batch.append((range_dedup_key(self._range_id, op_id), cbor2.dumps([ts.wall_ns, result])))

    # -- increment -----------------------------------------------------------------------

    def _apply_increment(self, batch: WriteBatch, cmd: Increment) -> tuple[int, ApplyResult]:
        if not self._descriptor.contains(cmd.key):
            return 0, ApplyResult(False, "key outside the range", cmd.op_id, "increment")
        # The newest version, not the one at cmd.ts: a counter must never go backwards, and
        # a write at or below an existing version would be hidden by it (or overwrite it).
        current, newest_ts = self._mvcc.get_with_ts(cmd.key, MAX)
        if current is not None and len(current) != COUNTER_BYTES:
            error = f"the value at {cmd.key[:16]!r} is not an {COUNTER_BYTES}-byte big-endian integer"
            return 0, ApplyResult(False, error, cmd.op_id, "increment")
        new_value = (0 if current is None else decode_counter_value(current)) + cmd.delta
        if not INT64_MIN <= new_value <= INT64_MAX:
            error = f"incrementing {cmd.key[:16]!r} by {cmd.delta} overflows a 64-bit signed integer"
            return 0, ApplyResult(False, error, cmd.op_id, "increment")
        ts = _write_ts_above(cmd.ts, newest_ts)
        size_delta = self._mvcc.put(batch, cmd.key, ts, encode_counter_value(new_value))
        self._record_dedup(batch, cmd.op_id, ts, ["increment", ts.encode(), new_value])
        return size_delta, ApplyResult(True, None, cmd.op_id, "increment", ts=ts, value=new_value)

    # -- transactions (ranges.txn_state) -----------------------------------------------------

    def _apply_txn(self, batch: WriteBatch, cmd) -> tuple[int, ApplyResult]:
        kind = _TXN_KINDS[type(cmd)]
        if isinstance(cmd, ResolveTxn):
            # No lease check: resolving is idempotent and only follows a decision.
            start, end = max(cmd.start, self._descriptor.start_key), min(cmd.end, self._descriptor.end_key)
            if start >= end:
                return 0, ApplyResult(True, None, None, kind, ts=cmd.ts, value=0)
            clipped = ResolveTxn(cmd.txn_id, start, end, cmd.commit_ts, cmd.ts)
            count, size, written = self.txn.resolve(batch, clipped)
            return size, ApplyResult(True, None, None, kind, ts=cmd.ts, value=count, written=written)
        if cmd.lease_sequence != self._lease.sequence:
            return 0, ApplyResult(False, "lease changed", None, kind)
        if not all(self._descriptor.contains(key) for key in _txn_command_keys(cmd)):
            return 0, ApplyResult(False, "key outside the range", None, kind)
        if isinstance(cmd, PrepareTxn):
            self.txn.prepare(batch, cmd)
            return 0, ApplyResult(True, None, None, kind, ts=cmd.ts)
        if isinstance(cmd, OnePhaseCommit):
            return self.txn.one_phase_commit(batch, cmd), ApplyResult(True, None, None, kind, ts=cmd.ts)
        record = self.txn.end(batch, cmd)
        return 0, ApplyResult(True, None, None, kind, ts=record.ts, value=record.encode())

    # -- node liveness (meta range only) ---------------------------------------------------

    def _apply_liveness(self, batch: WriteBatch, cmd: LivenessHeartbeat | IncrementEpoch) -> tuple[int, ApplyResult]:
        """Both are idempotent (a replay finds the record already changed and answers the
        same), so they need no dedup record."""
        kind = _WRITE_KINDS[type(cmd)]
        key = liveness_key(cmd.node_id)
        if not self._descriptor.contains(key):
            return 0, ApplyResult(False, "key outside the range", cmd.op_id, kind)
        current = LivenessRecord.from_bytes(self._mvcc.get(key, MAX))
        if isinstance(cmd, LivenessHeartbeat):
            record, accepted = apply_heartbeat(current, cmd.node_id, cmd.epoch, cmd.expiration)
        else:
            ts = MAX if BUG_EPOCH_INCREMENT_EARLY in self._bugs else cmd.ts
            record, accepted = apply_increment(current, cmd.epoch, ts)
        encoded = None if record is None else record.encode()
        if not accepted:
            return 0, ApplyResult(False, f"liveness of node {cmd.node_id} is {record}", cmd.op_id, kind,
                                  value=encoded)
        size_delta = 0
        if record != current:
            ts = _write_ts_above(cmd.ts, self._mvcc.latest_version_ts(key))
            size_delta = self._mvcc.replace(batch, key, ts, record.to_bytes())
        return size_delta, ApplyResult(True, None, cmd.op_id, kind, ts=cmd.ts, value=encoded)

    # -- split ---------------------------------------------------------------------------

    def _apply_split(self, batch: WriteBatch, cmd: Split) -> tuple[int, ApplyResult]:
        problem = self._split_problem(cmd)
        if problem is not None:
            return 0, ApplyResult(False, problem, None, "split")
        old = self._descriptor
        left = RangeDescriptor(old.range_id, old.start_key, cmd.split_key, old.replicas, old.generation + 1)
        right = RangeDescriptor(cmd.right_range_id, cmd.split_key, old.end_key, old.replicas, old.generation + 1)
        right_state_key = range_state_key(right.range_id)
        if self._engine.get(right_state_key) is None:
            # The holder keeps serving both halves under the same lease (and sequence), so writes
            # already proposed under it apply on whichever half now owns their key.
            batch.append((right_state_key, _encode_applied_state(0, self._lease, right)))
            self._copy_dedup_records(batch, right.range_id)
            if BUG_SPLIT_DROPS_RHS_WRITE in self._bugs:
                self._drop_newest_version_in(batch, right)
        # Otherwise this replica lagged so far behind that the right half reached this node
        # first, as a snapshot from its own group: it is ahead of anything we could write.
        # Recompute the left half's size lazily: a lagging replica's cached size may not
        # include versions the right half (created here from a snapshot) already wrote.
        self._size_bytes = None
        size_delta = 0
        # Meta must learn of this split; whoever holds this range's lease does it, even
        # after a crash of the node that proposed the split (docs/SHARDING.md).
        self._set_pending_meta(batch, self.pending_meta + [(old, left, right)])
        self.txn.split(batch, cmd.split_key)  # Prepared locks right of the key now belong to the right range.
        self._descriptor = left
        assert left.end_key == right.start_key and left.generation == right.generation, "halves must abut"
        value = {"left": left.encode(), "right": right.encode()}
        return size_delta, ApplyResult(True, None, None, "split", ts=cmd.ts, value=value, new_range=right)

    def _split_problem(self, cmd: Split) -> str | None:
        d = self._descriptor
        if cmd.lease_sequence != self._lease.sequence:
            return "lease changed"
        if cmd.expected_generation != d.generation:
            return (f"range {d.range_id} is at generation {d.generation}, the split expected "
                    f"{cmd.expected_generation}: a stale or duplicate split")
        if cmd.split_key < SYSTEM_KEY_MAX:
            return f"split key {cmd.split_key[:16]!r} is in the system keyspace, which is never split"
        if not d.start_key < cmd.split_key < d.end_key:
            return (f"split key {cmd.split_key[:16]!r} is not strictly inside the range "
                    f"[{d.start_key[:16]!r}, {d.end_key[:16]!r})")
        if cmd.right_range_id == d.range_id:
            return f"the new range id {cmd.right_range_id} is this range's own id"
        return None

    def _copy_dedup_records(self, batch: WriteBatch, right_range_id: int) -> None:
        # A retried write that this range applied may now be routed to the right-hand range:
        # it must still be recognised there.
        prefix = range_dedup_prefix(self._range_id)
        target_prefix = range_dedup_prefix(right_range_id)
        for key, raw in self._engine.scan(prefix, prefix_end(prefix)):
            _decode_dedup_record(cbor2.loads(raw))
            batch.append((target_prefix + key[len(prefix) :], raw))

    def _drop_newest_version_in(self, batch: WriteBatch, span: RangeDescriptor) -> None:
        """Planted bug: lose the newest version of the first key of `span` (an acknowledged write)."""
        engine_start, engine_end = mvcc_span(span.start_key, span.end_key)
        for engine_key, _ in self._engine.scan(engine_start, engine_end, limit=1):
            batch.append((engine_key, None))

    def split_key_near_middle(self) -> bytes | None:
        """A key splitting the range's data roughly in half by bytes, or None if there is none.

        Walks the MVCC versions in key order (the same bytes `size_bytes` counts, so both
        halves end up near half of it) and returns the first key whose cumulative size,
        itself included, passes half of `size_bytes`; if that is the range's first key, the
        next key instead, so the left half is never empty. None if the range has fewer than
        two keys, if the walk never passes half, or for the system keyspace (never split).
        """
        d = self._descriptor
        half_bytes = self.size_bytes() // 2
        engine_start, engine_end = mvcc_span(d.start_key, d.end_key)
        cumulative_bytes = 0
        key_prefix: bytes | None = None
        keys_seen = 0
        passed = False
        versions = self._engine.scan(engine_start, engine_end)
        try:
            for engine_key, raw in versions:
                if engine_key[:-TS_SUFFIX_BYTES] != key_prefix:
                    key_prefix = engine_key[:-TS_SUFFIX_BYTES]
                    keys_seen += 1
                    if passed:  # The first key alone passed half: split after it.
                        return self._checked_split_key(decode_mvcc_user_key(engine_key))
                cumulative_bytes += len(engine_key) + len(raw)
                if not passed and cumulative_bytes > half_bytes:
                    passed = True
                    if keys_seen >= 2:
                        return self._checked_split_key(decode_mvcc_user_key(engine_key))
            return None
        finally:
            close = getattr(versions, "close", None)
            if close is not None:
                close()

    def _checked_split_key(self, key: bytes) -> bytes | None:
        if key < SYSTEM_KEY_MAX:
            return None
        assert self._descriptor.start_key < key < self._descriptor.end_key, f"split key {key!r} outside the range"
        return key

    # -- meta ----------------------------------------------------------------------------

    def _apply_meta_split(self, batch: WriteBatch, cmd: MetaSplit) -> tuple[int, ApplyResult]:
        old_key, left_key = meta_key(cmd.old.end_key), meta_key(cmd.left.end_key)
        assert old_key == meta_key(cmd.right.end_key), "the right half inherits the old meta entry"
        if not (self._descriptor.contains(old_key) and self._descriptor.contains(left_key)):
            return 0, ApplyResult(False, "meta keys outside the range", cmd.op_id, "meta_split")
        # The newest versions, not those at cmd.ts: the condition is on the current tiling,
        # and a write below an existing version would be hidden by it.
        current, current_ts = self._read_meta_entry(old_key)
        at_left, left_ts = self._read_meta_entry(left_key)
        if current == cmd.right and at_left == cmd.left:
            return 0, ApplyResult(True, None, cmd.op_id, "meta_split", ts=current_ts, deduplicated=True)
        if current != cmd.old:
            value = None if current is None else current.encode()
            return 0, ApplyResult(False, "meta entry changed", cmd.op_id, "meta_split", value=value)
        ts = _write_ts_above(_write_ts_above(cmd.ts, current_ts), left_ts)
        size_delta = self._mvcc.put(batch, left_key, ts, encode_meta_value(cmd.left))
        size_delta += self._mvcc.put(batch, old_key, ts, encode_meta_value(cmd.right))
        self._record_dedup(batch, cmd.op_id, ts, ["meta_split", ts.encode()])
        return size_delta, ApplyResult(True, None, cmd.op_id, "meta_split", ts=ts)

    def _read_meta_entry(self, key: bytes) -> tuple[RangeDescriptor | None, Timestamp | None]:
        """The descriptor at meta key `key` (None if absent or not a descriptor), and the
        timestamp of the key's newest version (None if it has none)."""
        raw, version_ts = self._mvcc.get_with_ts(key, MAX)
        if raw is None:
            return None, version_ts
        try:
            return decode_meta_value(raw), version_ts
        except ValueError:
            # Not a descriptor (only a write that bypassed validate_user_key can put one
            # there): it matches no MetaSplit, which is then rejected on every replica alike.
            return None, version_ts

    # -- dedup garbage collection --------------------------------------------------------

    def _maybe_collect_dedup(self, batch: WriteBatch, index: int, now: Timestamp) -> None:
        if index % DEDUP_GC_EVERY != 0:
            return
        slice_byte = (index // DEDUP_GC_EVERY) % DEDUP_GC_SLICES
        slice_start = range_dedup_prefix(self._range_id) + bytes([slice_byte])
        horizon_ns = now.wall_ns - DEDUP_TTL_NS
        for key, raw in self._engine.scan(slice_start, prefix_end(slice_start)):
            wall_ns, _ = _decode_dedup_record(cbor2.loads(raw))
            if wall_ns < horizon_ns:
                batch.append((key, None))

    # -- pending meta updates ------------------------------------------------------------

    @property
    def pending_meta(self) -> list[tuple[RangeDescriptor, RangeDescriptor, RangeDescriptor]]:
        """Splits of this range not yet acknowledged in meta, oldest first."""
        if self._pending_meta is None:
            raw = self._engine.get(range_pending_meta_key(self._range_id))
            self._pending_meta = [] if raw is None else _decode_pending_meta(cbor2.loads(raw))
        return list(self._pending_meta)

    def _set_pending_meta(self, batch: WriteBatch, pending: list) -> None:
        key = range_pending_meta_key(self._range_id)
        encoded = [[o.encode(), l.encode(), r.encode()] for o, l, r in pending]
        batch.append((key, cbor2.dumps(encoded) if pending else None))
        self._pending_meta = list(pending)

    def _apply_meta_ack(self, batch: WriteBatch, cmd: MetaAck) -> tuple[int, ApplyResult]:
        remaining = [p for p in self.pending_meta if p[1].generation > cmd.generation]
        self._set_pending_meta(batch, remaining)
        return 0, ApplyResult(True, None, None, "meta_ack", ts=cmd.ts)

    # -- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> dict:
        """The range's whole replicated state, cbor-friendly, as of the applied index."""
        d = self._descriptor
        prefix = range_dedup_prefix(self._range_id)
        dedup = []
        for key, raw in self._engine.scan(prefix, prefix_end(prefix)):
            wall_ns, result = _decode_dedup_record(cbor2.loads(raw))
            dedup.append([key[len(prefix) :], wall_ns, result])
        return {
            "applied_index": self._applied_index,
            "lease": self._lease.encode(),
            "descriptor": d.encode(),
            "mvcc": self._mvcc.export_span(d.start_key, d.end_key),
            "dedup": dedup,
            "pending_meta": [[o.encode(), l.encode(), r.encode()] for o, l, r in self.pending_meta],
            "txn": self.txn.export(d),
        }

    def restore(self, index: int, snapshot: object) -> None:
        """Replace the range's data and state with `snapshot`, taken at `index`.

        Raises ValueError on a malformed snapshot (before touching the engine).
        """
        if not isinstance(snapshot, dict) or not _SNAPSHOT_FIELDS <= set(snapshot) <= _SNAPSHOT_FIELDS | {"txn"}:
            raise ValueError(f"a range snapshot is a dict with keys {sorted(_SNAPSHOT_FIELDS)} (and 'txn')")
        applied_index, lease, descriptor = _decode_applied_state(
            {k: snapshot[k] for k in _STATE_FIELDS}
        )
        if applied_index != index:
            raise ValueError(f"snapshot is at index {applied_index}, expected {index}")
        if descriptor.range_id != self._range_id:
            raise ValueError(f"snapshot of range {descriptor.range_id} offered to range {self._range_id}")
        batch = self._restore_batch(descriptor, snapshot["mvcc"], snapshot["dedup"])
        self.txn.restore_batch(batch, descriptor, snapshot.get("txn", {"locks": [], "records": []}))
        self._set_pending_meta(batch, _decode_pending_meta(snapshot["pending_meta"]))
        self._applied_index, self._lease, self._descriptor = applied_index, lease, descriptor
        self._append_applied_state(batch, applied_index)
        self._engine.write(batch, sync=False)
        self._size_bytes = None
        assert self._applied_index == index, "restore moves the applied index to the snapshot's"

    def _restore_batch(self, descriptor: RangeDescriptor, mvcc: object, dedup: object) -> WriteBatch:
        batch: WriteBatch = []
        self._mvcc.clear_span(batch, descriptor.start_key, descriptor.end_key)
        prefix = range_dedup_prefix(self._range_id)
        batch.extend((key, None) for key, _ in self._engine.scan(prefix, prefix_end(prefix)))
        self._mvcc.import_span(batch, mvcc)
        if not isinstance(dedup, list):
            raise ValueError("snapshot dedup records must be a list")
        for item in dedup:
            op_id, wall_ns, result = _decode_snapshot_dedup(item)
            batch.append((range_dedup_key(self._range_id, op_id), cbor2.dumps([wall_ns, result])))
        return batch


# -- codecs ------------------------------------------------------------------------------


def _decode_pending_meta(raw: object) -> list[tuple[RangeDescriptor, RangeDescriptor, RangeDescriptor]]:
    if not isinstance(raw, list) or not all(isinstance(item, list) and len(item) == 3 for item in raw):
        raise ValueError("pending meta updates are a list of [old, left, right] descriptors")
    return [tuple(RangeDescriptor.decode(d) for d in item) for item in raw]


def _encode_applied_state(index: int, lease: Lease, descriptor: RangeDescriptor) -> bytes:
    assert index >= 0, f"applied index must not be negative: {index}"
    return cbor2.dumps({"applied_index": index, "lease": lease.encode(), "descriptor": descriptor.encode()})


def _decode_applied_state(raw: object) -> tuple[int, Lease, RangeDescriptor]:
    if not isinstance(raw, dict) or set(raw) != _STATE_FIELDS:
        raise ValueError(f"applied state is a dict with keys {sorted(_STATE_FIELDS)}, got {raw!r:.80}")
    index = raw["applied_index"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"applied_index must be a non-negative int, got {index!r}")
    return index, Lease.decode(raw["lease"]), RangeDescriptor.decode(raw["descriptor"])


def _decode_dedup_record(raw: object) -> tuple[int, list]:
    assert isinstance(raw, list) and len(raw) == 2, f"corrupt dedup record {raw!r:.80}"
    wall_ns, result = raw
    assert isinstance(wall_ns, int) and isinstance(result, list), f"corrupt dedup record {raw!r:.80}"
    return wall_ns, result


def _decode_snapshot_dedup(item: object) -> tuple[bytes, int, list]:
    ok = (
        isinstance(item, list)
        and len(item) == 3
        and isinstance(item[0], bytes)
        and len(item[0]) > 0
        and isinstance(item[1], int)
        and isinstance(item[2], list)
    )
    if not ok:
        raise ValueError(f"a snapshot dedup record is [op_id, wall_ns, result], got {item!r:.80}")
    _decode_result(item[2])
    return item[0], item[1], item[2]


_TXN_KINDS: dict[type, str] = {PrepareTxn: "prepare", OnePhaseCommit: "commit1pc", EndTxn: "end_txn",
                               ResolveTxn: "resolve"}


def _txn_command_keys(cmd) -> list[bytes]:
    if isinstance(cmd, PrepareTxn):
        # A read span may end past the range (a scan that continued elsewhere holds only this part).
        return [lock.start for lock in cmd.locks]
    if isinstance(cmd, OnePhaseCommit):
        return [key for key, _ in cmd.writes]
    return [cmd.anchor]


def _decode_result(result: list) -> tuple[str, Timestamp, object]:
    """A recorded result: [kind, ts] for put/delete/meta_split, [kind, ts, value] for increment."""
    kind = result[0] if result else None
    if kind in ("put", "delete", "meta_split") and len(result) == 2:
        return kind, Timestamp.decode(result[1]), None
    if kind == "increment" and len(result) == 3 and _is_int64(result[2]):
        return kind, Timestamp.decode(result[1]), result[2]
    raise ValueError(f"a recorded result is [kind, ts] or [\"increment\", ts, value], got {result!r:.80}")


def _deduplicated_result(op_id: bytes, recorded: bytes) -> ApplyResult:
    _, result = _decode_dedup_record(cbor2.loads(recorded))
    kind, ts, value = _decode_result(result)
    return ApplyResult(True, None, op_id, kind, ts=ts, deduplicated=True, value=value)


_WRITE_KINDS: dict[type, str] = {Put: "put", Delete: "delete", Increment: "increment", MetaSplit: "meta_split",
                                  LivenessHeartbeat: "liveness", IncrementEpoch: "liveness"}


def _is_int64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def _write_ts_above(ts: Timestamp, newest_ts: Timestamp | None) -> Timestamp:
    """`ts`, pushed just above `newest_ts` if that is at or above it."""
    if newest_ts is None or newest_ts < ts:
        return ts
    return newest_ts.next()


def encode_counter_value(value: int) -> bytes:
    """An Increment integer as stored: 8-byte big-endian signed."""
    assert _is_int64(value), f"counters are 64-bit signed ints, got {value!r:.40}"
    return value.to_bytes(COUNTER_BYTES, "big", signed=True)


def decode_counter_value(raw: bytes) -> int:
    """The integer an Increment stored; ValueError if `raw` is not 8 bytes."""
    if not isinstance(raw, bytes) or len(raw) != COUNTER_BYTES:
        raise ValueError(f"a counter value is {COUNTER_BYTES} bytes, got {raw!r:.40}")
    return int.from_bytes(raw, "big", signed=True)


def meta_bootstrap_batch(descriptors: list[RangeDescriptor], ts: Timestamp) -> WriteBatch:
    """MVCC versions at `ts` of the meta entries of `descriptors` and of the range-id counter
    (= the largest range id), for a new cluster's bootstrap of range 1's data.

    `descriptors` must tile the keyspace `[KEY_MIN, KEY_MAX)`, the first one covering the
    whole system keyspace (it is the meta range and holds these very keys).
    """
    assert descriptors, "a cluster has at least one range"
    ordered = sorted(descriptors, key=lambda d: d.start_key)
    assert ordered[0].start_key == KEY_MIN and ordered[-1].end_key == KEY_MAX, "ranges must cover the keyspace"
    assert all(a.end_key == b.start_key for a, b in zip(ordered, ordered[1:])), "ranges must abut"
    assert len({d.range_id for d in ordered}) == len(ordered), "range ids must be distinct"
    assert ordered[0].end_key >= SYSTEM_KEY_MAX, "the first range must hold the whole system keyspace"
    batch: WriteBatch = []
    for d in ordered:
        batch.append((mvcc_key(meta_key(d.end_key), ts), encode_version_value(encode_meta_value(d))))
    counter = max(d.range_id for d in ordered)
    batch.append((mvcc_key(RANGE_ID_COUNTER_KEY, ts), encode_version_value(encode_counter_value(counter))))
    return batch
