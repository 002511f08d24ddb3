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
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

from clock.timestamp import Timestamp
from paxos_groups.engine import Engine, WriteBatch
from paxos_groups.lease import NO_LEASE, Lease, LeaseStatus, apply_lease_request, lease_status
from ranges.commands import CommandDecodeError, Delete, Put, RequestLease, decode_command
from ranges.descriptor import RangeDescriptor
from ranges.keys import prefix_end, range_dedup_key, range_dedup_prefix, range_state_key
from ranges.mvcc import MVCC

DEDUP_TTL_NS = 60 * 1_000_000_000
DEDUP_GC_EVERY = 1024
DEDUP_GC_SLICES = 256  # One slice per first byte of op_id.
_STATE_FIELDS = {"applied_index", "lease", "descriptor"}
_SNAPSHOT_FIELDS = {"applied_index", "lease", "descriptor", "mvcc", "dedup"}


@dataclass(frozen=True, slots=True)
class ApplyResult:
    ok: bool
    error: str | None
    op_id: bytes | None
    kind: str  # "put", "delete", "lease", "noop", "malformed", "stale"
    lease_changed: bool = False  # The applied lease value changed (new lease or renewal).
    ts: Timestamp | None = None  # The write's timestamp (the original one if deduplicated).
    deduplicated: bool = False  # The op_id had been applied before; nothing was re-applied.


class RangeStateMachine:
    def __init__(
        self,
        engine: Engine,
        descriptor: RangeDescriptor | None,
        max_offset_ns: int,
        range_id: int | None = None,
    ) -> None:
        """Load the range's applied state from `engine`, or start from `descriptor`.

        With `descriptor=None`, `range_id` names a range whose applied state must already be
        in the engine (a restart). A persisted descriptor wins over the given one: it may have
        changed (split) since the caller's copy was made.
        """
        assert max_offset_ns >= 0, f"max_offset_ns must not be negative: {max_offset_ns}"
        assert descriptor is not None or range_id is not None, "need a descriptor or a range_id"
        assert descriptor is None or range_id in (None, descriptor.range_id), "range_id mismatch"
        self._engine = engine
        self._mvcc = MVCC(engine)
        self._max_offset_ns = max_offset_ns
        self._range_id = descriptor.range_id if descriptor is not None else range_id
        self._applied_index = 0
        self._lease = NO_LEASE
        self._descriptor = descriptor
        # Approximate MVCC bytes of the range, computed on first use, then kept up to date.
        self._size_bytes: int | None = None
        self._load_applied_state()
        assert self._descriptor is not None, f"range {self._range_id} has no applied state in the engine"

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
        return self._apply_write(batch, cmd)

    def _apply_lease(self, cmd: RequestLease) -> ApplyResult:
        if cmd.prev_sequence != self._lease.sequence:
            return ApplyResult(False, "lease changed since the request", None, "lease")
        if cmd.lease.holder not in self._descriptor.replicas:
            return ApplyResult(False, f"node {cmd.lease.holder} is not a replica", None, "lease")
        new_lease, accepted, reason = apply_lease_request(self._lease, cmd.lease)
        changed = new_lease != self._lease
        assert accepted or not changed, "a rejected lease request leaves the lease alone"
        self._lease = new_lease
        return ApplyResult(accepted, reason, None, "lease", lease_changed=changed)

    def _apply_write(self, batch: WriteBatch, cmd: Put | Delete) -> tuple[int, ApplyResult]:
        kind = "put" if isinstance(cmd, Put) else "delete"
        # Dedup first: a retry of a write that already applied reports success even if
        # the lease changed since, so the client never mistakes an applied write for a failed one.
        recorded = self._engine.get(range_dedup_key(self._range_id, cmd.op_id))
        if recorded is not None:
            return 0, _deduplicated_result(cmd.op_id, recorded)
        if cmd.lease_sequence != self._lease.sequence:
            return 0, ApplyResult(False, "lease changed", cmd.op_id, kind)
        if not self._descriptor.contains(cmd.key):
            return 0, ApplyResult(False, "key outside the range", cmd.op_id, kind)
        if isinstance(cmd, Put):
            size_delta = self._mvcc.put(batch, cmd.key, cmd.ts, cmd.value)
        else:
            size_delta = self._mvcc.delete(batch, cmd.key, cmd.ts)
        record = cbor2.dumps([cmd.ts.wall_ns, [kind, cmd.ts.encode()]])
        batch.append((range_dedup_key(self._range_id, cmd.op_id), record))
        return size_delta, ApplyResult(True, None, cmd.op_id, kind, ts=cmd.ts)

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
        }

    def restore(self, index: int, snapshot: object) -> None:
        """Replace the range's data and state with `snapshot`, taken at `index`.

        Raises ValueError on a malformed snapshot (before touching the engine).
        """
        if not isinstance(snapshot, dict) or set(snapshot) != _SNAPSHOT_FIELDS:
            raise ValueError(f"a range snapshot is a dict with keys {sorted(_SNAPSHOT_FIELDS)}")
        applied_index, lease, descriptor = _decode_applied_state(
            {k: snapshot[k] for k in _STATE_FIELDS}
        )
        if applied_index != index:
            raise ValueError(f"snapshot is at index {applied_index}, expected {index}")
        if descriptor.range_id != self._range_id:
            raise ValueError(f"snapshot of range {descriptor.range_id} offered to range {self._range_id}")
        batch = self._restore_batch(descriptor, snapshot["mvcc"], snapshot["dedup"])
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


def _decode_result(result: list) -> tuple[str, Timestamp]:
    if len(result) != 2 or result[0] not in ("put", "delete"):
        raise ValueError(f"a recorded result is [kind, ts], got {result!r:.80}")
    return result[0], Timestamp.decode(result[1])


def _deduplicated_result(op_id: bytes, recorded: bytes) -> ApplyResult:
    _, result = _decode_dedup_record(cbor2.loads(recorded))
    kind, ts = _decode_result(result)
    return ApplyResult(True, None, op_id, kind, ts=ts, deduplicated=True)
