"""User keys, size limits, and the engine key layout (docs/ARCHITECTURE.md is the contract).

MVCC keys are bytes in `[KEY_MIN, KEY_MAX)`, in two parts (docs/SHARDING.md):
- the system keyspace `[KEY_MIN, SYSTEM_KEY_MAX)`, served by range 1 (the meta range), which
  never splits: meta entries `META_PREFIX + end_key` (the descriptor of the range ending at
  `end_key`) and the range-id allocator `RANGE_ID_COUNTER_KEY`;
- user keys `[SYSTEM_KEY_MAX, KEY_MAX)`; `validate_user_key` guards every client entry point.
(`META_PREFIX` is a prefix of MVCC keys; the engine prefix `PREFIX_PAXOS` of the same byte is
a different layer: every MVCC key sits under `PREFIX_MVCC` in the engine.)

Every node keeps everything in one ordered
engine; this module builds and parses the engine keys of the node identity, the HLC
high-water mark, the ranges' applied state and dedup records, and the MVCC versions.
(Paxos acceptor keys, prefix `\\x01`, belong to `paxos_groups/durable.py`.)

MVCC engine key: `\\x03 + escape(user_key) + b"\\x00\\x01" + inv(wall_ns, 8) + inv(logical, 4)`.
`escape` replaces each `\\x00` by `\\x00\\xff`, so the terminator `\\x00\\x01` never occurs inside
an escaped key, and `escape(k) + terminator` is prefix-free across keys.

Guarantees:
- Order: for user keys a < b, every version of a sorts before every version of b; the versions
  of one key are adjacent and sorted newest (highest timestamp) first. So "the newest version
  at or below ts" is the first engine key at or after `mvcc_key(key, ts)`.
- Round trip: `decode_mvcc_key(mvcc_key(k, ts)) == (k, ts)`.
- `mvcc_span(start, end)` covers exactly the versions of user keys in `[start, end)`.

HAZARD: the layout is persisted. Changing an escape byte, a prefix or a width makes every
existing store unreadable; change it only together with a migration.
HAZARD: `KEY_MAX` is `\\xff\\xff`; a user key at or above it would sort after the end of the
last range and belong to no range. `validate_key` rejects it; every entry point must call it.
HAZARD: a client write into the system keyspace could forge meta entries or rewind the range-id
counter; client entry points must call `validate_user_key`, not just `validate_key`.
"""

from __future__ import annotations

from clock.timestamp import ENCODED_BYTES, LOGICAL_BYTES, WALL_BYTES, Timestamp

KEY_MIN = b""
KEY_MAX = b"\xff\xff"  # Exclusive upper bound of the user keyspace.
# Keys below SYSTEM_KEY_MAX are the system keyspace (range 1, never split); user keys start here.
SYSTEM_KEY_MAX = b"\x02"
META_PREFIX = b"\x01"  # Meta entry of the range ending at E: META_PREFIX + E.
# The range-id allocator: an 8-byte big-endian signed counter (the largest id handed out).
# It sorts below every meta entry, because every range end key is at least SYSTEM_KEY_MAX.
RANGE_ID_COUNTER_KEY = META_PREFIX + b"\x00range-id"
# Node-liveness records (ranges.liveness), one per node, on the meta range; like the counter
# they sort below every meta entry.
LIVENESS_PREFIX = META_PREFIX + b"\x00liveness/"


def liveness_key(node_id: int) -> bytes:
    assert isinstance(node_id, int) and 0 < node_id < 1 << 63, f"not a node id: {node_id!r}"
    return LIVENESS_PREFIX + node_id.to_bytes(8, "big")

# Settings. Keys are copied into every version's engine key, every meta entry and every lock,
# so they are kept small; values are held in memory whole (client buffers, Paxos entries,
# snapshots), so a value is capped at 1 MiB. Larger blobs should be chunked by the client.
MAX_KEY_BYTES = 4096
MAX_VALUE_BYTES = 1 << 20

# Engine key prefixes.
PREFIX_LOCAL = b"\x00"
PREFIX_PAXOS = b"\x01"
PREFIX_RANGE = b"\x02"
PREFIX_MVCC = b"\x03"

RANGE_ID_BYTES = 8
RANGE_ID_MAX = (1 << (8 * RANGE_ID_BYTES)) - 1
_SUFFIX_APPLIED_STATE = b"a"
_SUFFIX_DEDUP = b"u"

_ESCAPE_FROM = b"\x00"
_ESCAPE_TO = b"\x00\xff"
TERMINATOR = b"\x00\x01"
# Timestamp suffix width of an MVCC engine key.
TS_SUFFIX_BYTES = ENCODED_BYTES
_WALL_INV_MAX = (1 << (8 * WALL_BYTES)) - 1
_LOGICAL_INV_MAX = (1 << (8 * LOGICAL_BYTES)) - 1


class BadRequest(ValueError):
    """A client-supplied key or value breaks a documented limit: the caller must change it."""


class InvalidKey(BadRequest):
    pass


class KeyTooLarge(BadRequest):
    pass


class ValueTooLarge(BadRequest):
    pass


class InvalidSplitKey(BadRequest):
    """A split key that cannot become a range boundary (empty, or in the system keyspace)."""


def validate_key(key: object) -> None:
    """Raise a `BadRequest` subclass unless `key` is a storable user key."""
    if not isinstance(key, bytes):
        raise InvalidKey(f"keys must be bytes, got {type(key).__name__}; encode strings first")
    if len(key) > MAX_KEY_BYTES:
        raise KeyTooLarge(
            f"key is {len(key)} bytes, the limit is MAX_KEY_BYTES={MAX_KEY_BYTES}; "
            "use a shorter key (hash or truncate long identifiers)"
        )
    if key >= KEY_MAX:
        raise InvalidKey(
            f"key {key[:16]!r}... is at or above KEY_MAX={KEY_MAX!r}, which is reserved; "
            "user keys must sort below it"
        )


def validate_user_key(key: object) -> None:
    """`validate_key`, and reject keys of the system keyspace (below `SYSTEM_KEY_MAX`)."""
    validate_key(key)
    assert isinstance(key, bytes), "validate_key admits only bytes"
    if key < SYSTEM_KEY_MAX:
        raise InvalidKey(
            f"key {key[:16]!r} is reserved: keys starting with \\x00 or \\x01 are reserved for the "
            f"system keyspace; user keys must sort at or above {SYSTEM_KEY_MAX!r} "
            "(the empty key is reserved too)"
        )


def validate_split_key(key: object) -> None:
    """Raise `InvalidSplitKey` unless `key` may become a range boundary.

    Whether the key lies strictly inside a particular range is the state machine's check
    (it alone knows the current descriptor). Oversized keys raise `validate_key`'s errors.
    """
    if not isinstance(key, bytes) or not key:
        raise InvalidSplitKey(f"a split key must be non-empty bytes, got {key!r:.40}")
    if key < SYSTEM_KEY_MAX:
        raise InvalidSplitKey(
            f"split key {key[:16]!r} is in the system keyspace (below {SYSTEM_KEY_MAX!r}), "
            "which is never split; split at a user key"
        )
    validate_key(key)


def validate_value(value: object) -> None:
    """Raise a `BadRequest` subclass unless `value` is a storable value."""
    if not isinstance(value, bytes):
        raise BadRequest(f"values must be bytes, got {type(value).__name__}; encode them first")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueTooLarge(
            f"value is {len(value)} bytes, the limit is MAX_VALUE_BYTES={MAX_VALUE_BYTES}; "
            "split large values into chunks under several keys"
        )


def prefix_end(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string that starts with `prefix`."""
    assert prefix, "the empty prefix covers everything and has no end"
    stripped = prefix.rstrip(b"\xff")
    assert stripped, f"prefix of only 0xff bytes has no end: {prefix!r}"
    return stripped[:-1] + bytes([stripped[-1] + 1])


# ---------------------------------------------------------------------------------------
# Node-local and range-local keys


def ident_key() -> bytes:
    return PREFIX_LOCAL + b"ident"


def hlc_key() -> bytes:
    return PREFIX_LOCAL + b"hlc"


def _range_prefix(range_id: int) -> bytes:
    # Real range ids are positive; 0 is allowed here only as a scan lower bound.
    assert isinstance(range_id, int), f"range_id must be an int, got {type(range_id)}"
    assert 0 <= range_id <= RANGE_ID_MAX, f"range_id out of range: {range_id}"
    return PREFIX_RANGE + range_id.to_bytes(RANGE_ID_BYTES, "big")


def range_state_key(range_id: int) -> bytes:
    """Where a range's applied state `{"applied_index", "lease", "descriptor"}` lives."""
    return _range_prefix(range_id) + _SUFFIX_APPLIED_STATE


def range_state_span() -> tuple[bytes, bytes]:
    """Engine keys `[start, end)` holding every range-local key: applied states AND dedup
    records, interleaved by range id. Filter with `decode_range_state_key`."""
    return PREFIX_RANGE, PREFIX_MVCC


def decode_range_state_key(engine_key: bytes) -> int | None:
    """The range id if `engine_key` is a range's applied-state key, else None."""
    is_state = (
        len(engine_key) == 1 + RANGE_ID_BYTES + 1
        and engine_key[:1] == PREFIX_RANGE
        and engine_key[-1:] == _SUFFIX_APPLIED_STATE
    )
    return int.from_bytes(engine_key[1:-1], "big") if is_state else None


def range_pending_meta_key(range_id: int) -> bytes:
    """The range's meta updates still to make (splits whose MetaSplit has not been acked)."""
    return _range_prefix(range_id) + b"m"


def range_dedup_prefix(range_id: int) -> bytes:
    """The prefix of all dedup records of a range; `prefix_end()` of it bounds them."""
    return _range_prefix(range_id) + _SUFFIX_DEDUP


def range_dedup_key(range_id: int, op_id: bytes) -> bytes:
    assert isinstance(op_id, bytes), f"op_id must be bytes, got {type(op_id)}"
    assert op_id, "op_id must not be empty"
    return range_dedup_prefix(range_id) + op_id


# ---------------------------------------------------------------------------------------
# MVCC keys


def _escape(user_key: bytes) -> bytes:
    return user_key.replace(_ESCAPE_FROM, _ESCAPE_TO)


def _unescape(escaped: bytes) -> bytes:
    assert escaped.count(b"\x00") == escaped.count(_ESCAPE_TO), f"bad escaping in {escaped!r}"
    return escaped.replace(_ESCAPE_TO, _ESCAPE_FROM)


def encode_inverted_ts(ts: Timestamp) -> bytes:
    """12 bytes whose byte order is the reverse of timestamp order (newest first)."""
    wall = (_WALL_INV_MAX - ts.wall_ns).to_bytes(WALL_BYTES, "big")
    logical = (_LOGICAL_INV_MAX - ts.logical).to_bytes(LOGICAL_BYTES, "big")
    return wall + logical


def decode_inverted_ts(raw: bytes) -> Timestamp:
    assert len(raw) == TS_SUFFIX_BYTES, f"an inverted timestamp is {TS_SUFFIX_BYTES} bytes, got {len(raw)}"
    wall_ns = _WALL_INV_MAX - int.from_bytes(raw[:WALL_BYTES], "big")
    logical = _LOGICAL_INV_MAX - int.from_bytes(raw[WALL_BYTES:], "big")
    return Timestamp(wall_ns, logical)


def mvcc_prefix_for(user_key: bytes) -> bytes:
    """The engine-key prefix shared by all versions of `user_key` (and only by them)."""
    assert isinstance(user_key, bytes), f"user keys are bytes, got {type(user_key)}"
    return PREFIX_MVCC + _escape(user_key) + TERMINATOR


def mvcc_key(user_key: bytes, ts: Timestamp) -> bytes:
    """The engine key of the version of `user_key` at `ts` (includes the `\\x03` prefix)."""
    assert isinstance(ts, Timestamp), f"ts must be a Timestamp, got {type(ts)}"
    return mvcc_prefix_for(user_key) + encode_inverted_ts(ts)


def decode_mvcc_key(engine_key: bytes) -> tuple[bytes, Timestamp]:
    user_key = decode_mvcc_user_key(engine_key)
    return user_key, decode_inverted_ts(engine_key[-TS_SUFFIX_BYTES:])


def decode_mvcc_user_key(engine_key: bytes) -> bytes:
    """The user key of an MVCC engine key, without decoding the timestamp."""
    assert engine_key[:1] == PREFIX_MVCC, f"not an MVCC engine key: {engine_key[:16]!r}"
    terminator_at = len(engine_key) - TS_SUFFIX_BYTES - len(TERMINATOR)
    assert terminator_at >= 1, f"MVCC engine key too short: {engine_key!r}"
    assert engine_key[terminator_at : terminator_at + 2] == TERMINATOR, f"no terminator in {engine_key!r}"
    return _unescape(engine_key[1:terminator_at])


def mvcc_span(start_user_key: bytes, end_user_key: bytes) -> tuple[bytes, bytes]:
    """Engine keys `[engine_start, engine_end)` covering all versions of keys in `[start, end)`.

    Why the bare prefixes work as bounds: any key k >= start has `escape(k) + terminator` >=
    `escape(start) + terminator` (escaping preserves order and the terminator is smaller than
    any escaped continuation), and any key k < end sorts below `escape(end) + terminator`.
    """
    assert start_user_key <= end_user_key, f"inverted span [{start_user_key!r}, {end_user_key!r})"
    assert end_user_key <= KEY_MAX, f"span end above KEY_MAX: {end_user_key!r}"
    return mvcc_prefix_for(start_user_key), mvcc_prefix_for(end_user_key)


# ---------------------------------------------------------------------------------------
# Transactions: prepared locks and transaction records, keyed by user key so that they
# belong to whichever range holds that key (they move with splits like MVCC data).
#   lock:   \x04 + escape(span start key) + terminator + txn_id
#   record: \x05 + escape(anchor key) + terminator + txn_id

PREFIX_LOCK = b"\x04"
PREFIX_TXN = b"\x05"


def _keyed(prefix: bytes, user_key: bytes, txn_id: bytes) -> bytes:
    assert isinstance(txn_id, bytes) and txn_id, "a txn id is non-empty bytes"
    return prefix + _escape(user_key) + TERMINATOR + txn_id


def _decode_keyed(prefix: bytes, engine_key: bytes) -> tuple[bytes, bytes]:
    """`(user_key, txn_id)`. The first terminator ends the escaped key: escaping leaves no
    `\x00\x01` inside it (every `\x00` is followed by `\xff`)."""
    assert engine_key.startswith(prefix), f"not a {prefix!r} key: {engine_key[:16]!r}"
    terminator_at = engine_key.index(TERMINATOR, len(prefix))
    return _unescape(engine_key[len(prefix):terminator_at]), engine_key[terminator_at + len(TERMINATOR):]


def lock_key(user_key: bytes, txn_id: bytes) -> bytes:
    return _keyed(PREFIX_LOCK, user_key, txn_id)


def decode_lock_key(engine_key: bytes) -> tuple[bytes, bytes]:
    return _decode_keyed(PREFIX_LOCK, engine_key)


def lock_span(start: bytes, end: bytes) -> tuple[bytes, bytes]:
    """Engine keys of the prepared locks whose start key is in `[start, end)`."""
    assert start <= end, f"inverted span [{start!r}, {end!r})"
    return PREFIX_LOCK + _escape(start), PREFIX_LOCK + _escape(end)


def txn_record_key(anchor: bytes, txn_id: bytes) -> bytes:
    return _keyed(PREFIX_TXN, anchor, txn_id)


def decode_txn_record_key(engine_key: bytes) -> tuple[bytes, bytes]:
    return _decode_keyed(PREFIX_TXN, engine_key)


def txn_record_span(start: bytes, end: bytes) -> tuple[bytes, bytes]:
    assert start <= end, f"inverted span [{start!r}, {end!r})"
    return PREFIX_TXN + _escape(start), PREFIX_TXN + _escape(end)


# ---------------------------------------------------------------------------------------
# Meta addressing (MVCC keys of range 1)


def meta_key(end_key: bytes) -> bytes:
    """The MVCC key of the meta entry of the range whose (exclusive) end key is `end_key`."""
    assert isinstance(end_key, bytes), f"end keys are bytes, got {type(end_key)}"
    # Range 1 ends at SYSTEM_KEY_MAX, so every range's end key is in [SYSTEM_KEY_MAX, KEY_MAX].
    assert SYSTEM_KEY_MAX <= end_key <= KEY_MAX, f"not a range end key: {end_key[:16]!r}"
    return META_PREFIX + end_key


def decode_meta_key(key: bytes) -> bytes:
    """The end key named by a meta entry's MVCC key; ValueError if `key` is not one."""
    if not isinstance(key, bytes) or key[:1] != META_PREFIX:
        raise ValueError(f"not a meta key: {key!r:.40}")
    end_key = key[len(META_PREFIX) :]
    if not SYSTEM_KEY_MAX <= end_key <= KEY_MAX:
        raise ValueError(f"meta key {key[:16]!r} names no range end key")
    return end_key


def meta_lookup_start(key: bytes) -> bytes:
    """Where a meta scan for the range holding `key` starts: the first entry at or after it
    (limit 1) is that range's, because ranges are `[start, end)` and meta is keyed by end key.

    It is `META_PREFIX + key + b"\\x00"` (the smallest meta key above `META_PREFIX + key`),
    clamped up to the first meta entry: for a system-keyspace key the plain form would sort
    below `RANGE_ID_COUNTER_KEY` and find the counter; clamped, it finds range 1.
    """
    assert isinstance(key, bytes), f"keys are bytes, got {type(key)}"
    assert key < KEY_MAX, f"key {key[:16]!r} is at or above KEY_MAX and in no range"
    start = max(META_PREFIX + key + b"\x00", meta_span()[0])
    assert start > RANGE_ID_COUNTER_KEY, "a meta lookup must never land on the range-id counter"
    return start


def meta_span() -> tuple[bytes, bytes]:
    """MVCC keys `[start, end)` holding every meta entry (and not the range-id counter)."""
    return meta_key(SYSTEM_KEY_MAX), meta_key(KEY_MAX) + b"\x00"
