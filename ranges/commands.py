"""Replicated range commands: what a range's Paxos log carries, with strict cbor codecs.

`encode_command(cmd)` gives `[tag, field...]`; `decode_command(raw)` validates every field and
raises `CommandDecodeError` on anything malformed, so the state machine can reject a bad log
entry deterministically instead of crashing every replica on it.

Extending: add a frozen dataclass with `TAG`, `encode_fields()` and a `decode_fields(fields)`
staticmethod, and register it in `_COMMAND_TYPES`. Tags are persisted in the log: never reuse
or renumber one.

HAZARD: decoding must be a pure function of the bytes. If validation limits change between
versions, an old log entry can decode differently on replicas of different versions: raise
limits only, and only once every node runs the new version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from clock.timestamp import ZERO, Timestamp
from paxos_groups.lease import Lease
from ranges.descriptor import RangeDescriptor
from ranges.locks import PreparedLock, TxnMeta
from ranges.keys import RANGE_ID_MAX, validate_key, validate_value

MAX_OP_ID_BYTES = 64  # Same limit as ranges.api.MAX_OP_ID_BYTES (the client-facing check).
# Increment operates on 8-byte big-endian signed integers; deltas obey the same bounds.
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class CommandDecodeError(ValueError):
    """A log entry is not a well-formed command."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_op_id(op_id: object) -> None:
    if not isinstance(op_id, bytes) or not 0 < len(op_id) <= MAX_OP_ID_BYTES:
        raise ValueError(f"op_id must be 1..{MAX_OP_ID_BYTES} bytes, got {op_id!r:.80}")


def _check_lease_sequence(lease_sequence: object) -> None:
    if not _is_int(lease_sequence) or lease_sequence < 0:
        raise ValueError(f"lease_sequence must be a non-negative int, got {lease_sequence!r}")


def _check_ts(ts: object) -> None:
    if not isinstance(ts, Timestamp):
        raise ValueError(f"ts must be a Timestamp, got {type(ts).__name__}")


@dataclass(frozen=True, slots=True)
class Put:
    TAG = 1
    key: bytes
    value: bytes
    ts: Timestamp
    op_id: bytes  # Client-chosen id: the range applies each op_id at most once.
    lease_sequence: int  # The lease it was proposed under; applies only under that lease.

    def __post_init__(self) -> None:
        validate_key(self.key)
        validate_value(self.value)
        _check_ts(self.ts)
        _check_op_id(self.op_id)
        _check_lease_sequence(self.lease_sequence)

    def encode_fields(self) -> list:
        return [self.key, self.value, self.ts.encode(), self.op_id, self.lease_sequence]

    @staticmethod
    def decode_fields(fields: list) -> "Put":
        _expect_arity(fields, 5, "put")
        key, value, ts, op_id, lease_sequence = fields
        return Put(key, value, Timestamp.decode(ts), op_id, lease_sequence)


@dataclass(frozen=True, slots=True)
class Delete:
    TAG = 2
    key: bytes
    ts: Timestamp
    op_id: bytes
    lease_sequence: int

    def __post_init__(self) -> None:
        validate_key(self.key)
        _check_ts(self.ts)
        _check_op_id(self.op_id)
        _check_lease_sequence(self.lease_sequence)

    def encode_fields(self) -> list:
        return [self.key, self.ts.encode(), self.op_id, self.lease_sequence]

    @staticmethod
    def decode_fields(fields: list) -> "Delete":
        _expect_arity(fields, 4, "delete")
        key, ts, op_id, lease_sequence = fields
        return Delete(key, Timestamp.decode(ts), op_id, lease_sequence)


@dataclass(frozen=True, slots=True)
class RequestLease:
    """Install `lease`, if the applied lease still has sequence `prev_sequence`.

    Invariant: `lease.sequence` is `prev_sequence` (a renewal) or `prev_sequence + 1` (a new lease).
    """

    TAG = 3
    lease: Lease
    prev_sequence: int
    # When the proposer proposed it. A node serves under a lease only after applying a lease
    # command it proposed since its last start (CockroachDB's minLeaseProposedTS): its
    # applied state may have regressed in a crash, and applying a fresh proposal proves it
    # has re-applied everything chosen before.
    proposed_ts: Timestamp = ZERO
    # Non-zero for a lease transfer: the current holder handing the lease to lease.holder.
    transfer_from: int = 0
    # The lease the proposer saw (paxos_groups.lease.apply_lease_request: a new lease that
    # replaces an epoch lease must name it exactly). None in entries from older versions.
    prev: Lease | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.lease, Lease):
            raise ValueError(f"lease must be a Lease, got {type(self.lease).__name__}")
        _check_lease_sequence(self.prev_sequence)
        if self.lease.sequence not in (self.prev_sequence, self.prev_sequence + 1):
            raise ValueError(f"lease sequence {self.lease.sequence} cannot follow {self.prev_sequence}")

    def encode_fields(self) -> list:
        fields = [self.lease.encode(), self.prev_sequence, self.proposed_ts.encode(), self.transfer_from]
        return fields if self.prev is None else fields + [self.prev.encode()]

    @staticmethod
    def decode_fields(fields: list) -> "RequestLease":
        if len(fields) != 5:
            _expect_arity(fields, 4, "request_lease")
        lease, prev_sequence, proposed_ts, transfer_from = fields[:4]
        if not isinstance(transfer_from, int) or isinstance(transfer_from, bool) or transfer_from < 0:
            raise ValueError(f"transfer_from must be a node id or 0, got {transfer_from!r}")
        prev = Lease.decode(fields[4]) if len(fields) == 5 else None
        return RequestLease(Lease.decode(lease), prev_sequence, Timestamp.decode(proposed_ts), transfer_from, prev)


@dataclass(frozen=True, slots=True)
class Increment:
    """Add `delta` to the 8-byte big-endian signed integer at `key` (absent counts as 0).

    Applies at `ts`, or just above the key's newest version if that is at or above `ts`
    (the state machine reports the timestamp used). Deduplicated by `op_id` like Put.
    """

    TAG = 4
    key: bytes
    delta: int
    ts: Timestamp
    op_id: bytes
    lease_sequence: int

    def __post_init__(self) -> None:
        validate_key(self.key)
        if not _is_int(self.delta) or not INT64_MIN <= self.delta <= INT64_MAX:
            raise ValueError(f"delta must be a 64-bit signed int, got {self.delta!r:.40}")
        _check_ts(self.ts)
        _check_op_id(self.op_id)
        _check_lease_sequence(self.lease_sequence)

    def encode_fields(self) -> list:
        return [self.key, self.delta, self.ts.encode(), self.op_id, self.lease_sequence]

    @staticmethod
    def decode_fields(fields: list) -> "Increment":
        _expect_arity(fields, 5, "increment")
        key, delta, ts, op_id, lease_sequence = fields
        return Increment(key, delta, Timestamp.decode(ts), op_id, lease_sequence)


@dataclass(frozen=True, slots=True)
class Split:
    """Split the range at `split_key` into [start, split_key) and range `right_range_id` =
    [split_key, end), if its descriptor still has `expected_generation`.

    No op_id: a Split is idempotent by generation (a duplicate finds the generation moved on).
    """

    TAG = 5
    # Uniform with the writes, for code that resolves waiters by op_id.
    op_id: ClassVar[None] = None
    split_key: bytes
    right_range_id: int
    expected_generation: int
    ts: Timestamp
    lease_sequence: int

    def __post_init__(self) -> None:
        validate_key(self.split_key)
        if not _is_int(self.right_range_id) or not 0 < self.right_range_id <= RANGE_ID_MAX:
            raise ValueError(f"right_range_id must be a positive 64-bit int, got {self.right_range_id!r:.40}")
        if not _is_int(self.expected_generation) or self.expected_generation < 0:
            raise ValueError(f"expected_generation must be a non-negative int, got {self.expected_generation!r:.40}")
        _check_ts(self.ts)
        _check_lease_sequence(self.lease_sequence)

    def encode_fields(self) -> list:
        return [self.split_key, self.right_range_id, self.expected_generation, self.ts.encode(), self.lease_sequence]

    @staticmethod
    def decode_fields(fields: list) -> "Split":
        _expect_arity(fields, 5, "split")
        split_key, right_range_id, expected_generation, ts, lease_sequence = fields
        return Split(split_key, right_range_id, expected_generation, Timestamp.decode(ts), lease_sequence)


@dataclass(frozen=True, slots=True)
class MetaSplit:
    """On the meta range: replace the meta entry of `old` by those of `left` and `right`,
    only if the entry at `meta_key(old.end_key)` still holds `old`.

    Invariant (checked here): `left` and `right` are the halves of `old` after one split:
    they abut, cover exactly `old`'s span, `left` keeps `old`'s range id, and both carry
    generation `old.generation + 1`.
    """

    TAG = 6
    old: RangeDescriptor
    left: RangeDescriptor
    right: RangeDescriptor
    ts: Timestamp
    op_id: bytes
    lease_sequence: int

    def __post_init__(self) -> None:
        for name in ("old", "left", "right"):
            if not isinstance(getattr(self, name), RangeDescriptor):
                raise ValueError(f"{name} must be a RangeDescriptor, got {type(getattr(self, name)).__name__}")
        problem = _split_halves_problem(self.old, self.left, self.right)
        if problem is not None:
            raise ValueError(f"meta split halves do not split {self.old}: {problem}")
        _check_ts(self.ts)
        _check_op_id(self.op_id)
        _check_lease_sequence(self.lease_sequence)

    def encode_fields(self) -> list:
        return [self.old.encode(), self.left.encode(), self.right.encode(), self.ts.encode(), self.op_id,
                self.lease_sequence]

    @staticmethod
    def decode_fields(fields: list) -> "MetaSplit":
        _expect_arity(fields, 6, "meta_split")
        old, left, right, ts, op_id, lease_sequence = fields
        return MetaSplit(RangeDescriptor.decode(old), RangeDescriptor.decode(left), RangeDescriptor.decode(right),
                         Timestamp.decode(ts), op_id, lease_sequence)


def _split_halves_problem(old: RangeDescriptor, left: RangeDescriptor, right: RangeDescriptor) -> str | None:
    if not (left.start_key == old.start_key and left.end_key == right.start_key and right.end_key == old.end_key):
        return "left and right must abut and cover exactly the old span"
    if left.range_id != old.range_id or right.range_id == old.range_id:
        return "left keeps the old range id and right has a new one"
    if not left.generation == right.generation == old.generation + 1:
        return "both halves carry the old generation + 1"
    return None


@dataclass(frozen=True, slots=True)
class MetaAck:
    """The meta range holds this range's split up to `generation`: drop those pending updates."""

    TAG = 7
    generation: int
    ts: Timestamp
    op_id = None

    def __post_init__(self) -> None:
        if not isinstance(self.generation, int) or isinstance(self.generation, bool) or self.generation < 1:
            raise ValueError(f"meta ack generation must be a positive int, got {self.generation!r}")

    def encode_fields(self) -> list:
        return [self.generation, self.ts.encode()]

    @staticmethod
    def decode_fields(fields: list) -> "MetaAck":
        _expect_arity(fields, 2, "meta_ack")
        return MetaAck(fields[0], Timestamp.decode(fields[1]))


@dataclass(frozen=True, slots=True)
class LivenessHeartbeat:
    """On the meta range: extend `node_id`'s liveness record at `epoch` to `expiration`
    (ranges.liveness.apply_heartbeat). Deduplicated by op_id like a write."""

    TAG = 8
    node_id: int
    epoch: int
    expiration: Timestamp
    ts: Timestamp
    op_id: bytes
    lease_sequence: int

    def __post_init__(self) -> None:
        _check_node_and_epoch(self.node_id, self.epoch)
        _check_ts(self.expiration)
        _check_ts(self.ts)
        _check_op_id(self.op_id)
        _check_lease_sequence(self.lease_sequence)

    def encode_fields(self) -> list:
        return [self.node_id, self.epoch, self.expiration.encode(), self.ts.encode(), self.op_id, self.lease_sequence]

    @staticmethod
    def decode_fields(fields: list) -> "LivenessHeartbeat":
        _expect_arity(fields, 6, "liveness_heartbeat")
        node_id, epoch, expiration, ts, op_id, lease_sequence = fields
        return LivenessHeartbeat(node_id, epoch, Timestamp.decode(expiration), Timestamp.decode(ts), op_id,
                                 lease_sequence)


@dataclass(frozen=True, slots=True)
class IncrementEpoch:
    """On the meta range: end `node_id`'s liveness `epoch` if its record expired by `ts`
    (ranges.liveness.apply_increment); the leases it held at that epoch die with it."""

    TAG = 9
    node_id: int
    epoch: int
    ts: Timestamp
    op_id: bytes
    lease_sequence: int

    def __post_init__(self) -> None:
        _check_node_and_epoch(self.node_id, self.epoch)
        _check_ts(self.ts)
        _check_op_id(self.op_id)
        _check_lease_sequence(self.lease_sequence)

    def encode_fields(self) -> list:
        return [self.node_id, self.epoch, self.ts.encode(), self.op_id, self.lease_sequence]

    @staticmethod
    def decode_fields(fields: list) -> "IncrementEpoch":
        _expect_arity(fields, 5, "increment_epoch")
        node_id, epoch, ts, op_id, lease_sequence = fields
        return IncrementEpoch(node_id, epoch, Timestamp.decode(ts), op_id, lease_sequence)


@dataclass(frozen=True, slots=True)
class PrepareTxn:
    """Phase 1 of two-phase commit at one participant range: record `locks` (the read spans
    and buffered writes the transaction has here) as prepared at `prepare_ts`."""

    TAG = 10
    op_id: ClassVar[None] = None
    txn: TxnMeta
    locks: tuple[PreparedLock, ...]
    ts: Timestamp  # the prepare timestamp
    lease_sequence: int

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_lease_sequence(self.lease_sequence)
        if not all(isinstance(lock, PreparedLock) and lock.txn == self.txn and lock.prepare_ts == self.ts
                   for lock in self.locks):
            raise ValueError("every lock of a prepare belongs to its transaction and carries its timestamp")

    def encode_fields(self) -> list:
        return [self.txn.encode(), [lock.encode() for lock in self.locks], self.ts.encode(), self.lease_sequence]

    @staticmethod
    def decode_fields(fields: list) -> "PrepareTxn":
        _expect_arity(fields, 4, "prepare_txn")
        txn, locks, ts, lease_sequence = fields
        if not isinstance(locks, list):
            raise ValueError("prepare locks must be a list")
        return PrepareTxn(TxnMeta.decode(txn), tuple(PreparedLock.decode(lock) for lock in locks),
                          Timestamp.decode(ts), lease_sequence)


@dataclass(frozen=True, slots=True)
class OnePhaseCommit:
    """A transaction whose every lock and write is in this range: its writes, applied at
    `ts` (the commit timestamp) in one replicated round."""

    TAG = 11
    op_id: ClassVar[None] = None
    txn: TxnMeta
    writes: tuple[tuple[bytes, bytes | None], ...]
    ts: Timestamp
    lease_sequence: int

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_lease_sequence(self.lease_sequence)
        for key, value in self.writes:
            validate_key(key)
            if value is not None:
                validate_value(value)

    def encode_fields(self) -> list:
        return [self.txn.encode(), [[k, v] for k, v in self.writes], self.ts.encode(), self.lease_sequence]

    @staticmethod
    def decode_fields(fields: list) -> "OnePhaseCommit":
        _expect_arity(fields, 4, "one_phase_commit")
        txn, writes, ts, lease_sequence = fields
        return OnePhaseCommit(TxnMeta.decode(txn), _decode_writes(writes), Timestamp.decode(ts), lease_sequence)


@dataclass(frozen=True, slots=True)
class EndTxn:
    """At the coordinator (the range of the transaction's anchor key): decide the transaction,
    COMMIT at `ts` or ABORT, exactly once. The first EndTxn applied writes the transaction
    record; any later one (a retry, a recovery) finds it and changes nothing."""

    TAG = 12
    op_id: ClassVar[None] = None
    txn_id: bytes
    anchor: bytes
    commit: bool
    ts: Timestamp  # the commit timestamp (for an abort: when it was decided)
    lease_sequence: int

    def __post_init__(self) -> None:
        if not (isinstance(self.txn_id, bytes) and self.txn_id):
            raise ValueError("end_txn needs a txn id")
        validate_key(self.anchor)
        if not isinstance(self.commit, bool):
            raise ValueError("end_txn commit must be a bool")
        _check_ts(self.ts)
        _check_lease_sequence(self.lease_sequence)

    def encode_fields(self) -> list:
        return [self.txn_id, self.anchor, self.commit, self.ts.encode(), self.lease_sequence]

    @staticmethod
    def decode_fields(fields: list) -> "EndTxn":
        _expect_arity(fields, 5, "end_txn")
        txn_id, anchor, commit, ts, lease_sequence = fields
        return EndTxn(txn_id, anchor, commit, Timestamp.decode(ts), lease_sequence)


@dataclass(frozen=True, slots=True)
class ResolveTxn:
    """At a participant: the decision reached the range. Every prepared lock of the
    transaction in `[start, end)` goes; on commit (`commit_ts` set) its writes are applied at
    `commit_ts`. Idempotent: a second resolve finds no locks."""

    TAG = 13
    op_id: ClassVar[None] = None
    txn_id: bytes
    start: bytes
    end: bytes
    commit_ts: Timestamp | None
    ts: Timestamp

    def __post_init__(self) -> None:
        if not (isinstance(self.txn_id, bytes) and self.txn_id):
            raise ValueError("resolve_txn needs a txn id")
        if not (isinstance(self.start, bytes) and isinstance(self.end, bytes) and self.start < self.end):
            raise ValueError("resolve_txn needs a non-empty span")
        if self.commit_ts is not None:
            _check_ts(self.commit_ts)
        _check_ts(self.ts)

    def encode_fields(self) -> list:
        commit_ts = None if self.commit_ts is None else self.commit_ts.encode()
        return [self.txn_id, self.start, self.end, commit_ts, self.ts.encode()]

    @staticmethod
    def decode_fields(fields: list) -> "ResolveTxn":
        _expect_arity(fields, 5, "resolve_txn")
        txn_id, start, end, commit_ts, ts = fields
        return ResolveTxn(txn_id, start, end, None if commit_ts is None else Timestamp.decode(commit_ts),
                          Timestamp.decode(ts))


def _decode_writes(raw: object) -> tuple[tuple[bytes, bytes | None], ...]:
    if not isinstance(raw, list) or not all(isinstance(w, list) and len(w) == 2 for w in raw):
        raise ValueError("writes must be a list of [key, value-or-null]")
    return tuple((k, v) for k, v in raw)


def _check_node_and_epoch(node_id: object, epoch: object) -> None:
    if not _is_int(node_id) or not 0 < node_id < 1 << 63:
        raise ValueError(f"node_id must be a positive int, got {node_id!r:.40}")
    if not _is_int(epoch) or not 0 < epoch < 1 << 63:
        raise ValueError(f"epoch must be a positive int, got {epoch!r:.40}")


Command = (Put | Delete | RequestLease | Increment | Split | MetaSplit | MetaAck | LivenessHeartbeat | IncrementEpoch
           | PrepareTxn | OnePhaseCommit | EndTxn | ResolveTxn)

_COMMAND_TYPES: dict[int, Any] = {
    cls.TAG: cls for cls in (Put, Delete, RequestLease, Increment, Split, MetaSplit, MetaAck, LivenessHeartbeat,
                             IncrementEpoch, PrepareTxn, OnePhaseCommit, EndTxn, ResolveTxn)
}
assert len(_COMMAND_TYPES) == 13, "command tags must be unique"
TXN_COMMANDS = (PrepareTxn, OnePhaseCommit, EndTxn, ResolveTxn)


def _expect_arity(fields: list, arity: int, name: str) -> None:
    if len(fields) != arity:
        raise ValueError(f"{name} takes {arity} fields, got {len(fields)}")


def encode_command(cmd: Command) -> list:
    assert type(cmd) in _COMMAND_TYPES.values(), f"not a command: {cmd!r:.80}"
    encoded = [cmd.TAG, *cmd.encode_fields()]
    assert _COMMAND_TYPES[encoded[0]] is type(cmd), "tag must map back to the command type"
    return encoded


def decode_command(raw: object) -> Command:
    """Decode and validate a command; raise CommandDecodeError saying what was wrong."""
    if not isinstance(raw, list) or not raw:
        raise CommandDecodeError(f"a command is [tag, fields...], got {type(raw).__name__}")
    tag = raw[0]
    cls = _COMMAND_TYPES.get(tag) if _is_int(tag) else None
    if cls is None:
        raise CommandDecodeError(f"unknown command tag {tag!r}; known: {sorted(_COMMAND_TYPES)}")
    decode_fields: Callable[[list], Command] = cls.decode_fields
    try:
        return decode_fields(raw[1:])
    except (ValueError, TypeError, AssertionError) as e:
        # AssertionError: Timestamp asserts its ranges; Timestamp.decode checks them first,
        # but a malformed entry must never stop the process, so it is caught here too.
        raise CommandDecodeError(f"malformed {cls.__name__} command: {e}") from None
