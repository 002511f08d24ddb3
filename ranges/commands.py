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
from typing import Any, Callable

from clock.timestamp import ZERO, Timestamp
from paxos_groups.lease import Lease
from ranges.keys import validate_key, validate_value

MAX_OP_ID_BYTES = 64  # Same limit as ranges.api.MAX_OP_ID_BYTES (the client-facing check).


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

    def __post_init__(self) -> None:
        if not isinstance(self.lease, Lease):
            raise ValueError(f"lease must be a Lease, got {type(self.lease).__name__}")
        _check_lease_sequence(self.prev_sequence)
        if self.lease.sequence not in (self.prev_sequence, self.prev_sequence + 1):
            raise ValueError(f"lease sequence {self.lease.sequence} cannot follow {self.prev_sequence}")

    def encode_fields(self) -> list:
        return [self.lease.encode(), self.prev_sequence, self.proposed_ts.encode()]

    @staticmethod
    def decode_fields(fields: list) -> "RequestLease":
        _expect_arity(fields, 3, "request_lease")
        lease, prev_sequence, proposed_ts = fields
        return RequestLease(Lease.decode(lease), prev_sequence, Timestamp.decode(proposed_ts))


Command = Put | Delete | RequestLease

_COMMAND_TYPES: dict[int, Any] = {cls.TAG: cls for cls in (Put, Delete, RequestLease)}
assert len(_COMMAND_TYPES) == 3, "command tags must be unique"


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
