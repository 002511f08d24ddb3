"""Client requests, responses and typed errors: the wire contract between clients and nodes.

A client frame is `{"id": request_id, "req": encoded_request}`; the node answers with
`{"id": request_id, "ok": result}` or `{"id": request_id, "err": encoded_error}`.
Requests and errors are validated strictly on decode: a malformed request gets a
`BadRequest` answer, never a crash.

Errors carry `retryable`: whether the client may safely send the same request again.
Writes carry an `op_id`, and the range state machine applies each op_id at most once, so
even an ambiguous write (sent, outcome unknown) is safe to retry with the same op_id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ranges.descriptor import RangeDescriptor
from clock.timestamp import Timestamp
from ranges.keys import KEY_MAX, liveness_key, meta_key, validate_key, validate_user_key, validate_value
from ranges.locks import TxnMeta

# ---------------------------------------------------------------------------------------
# Errors


class SpanliteError(Exception):
    """Base of every error a node reports to a client."""

    code = "internal"
    retryable = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def encode(self) -> dict:
        return {"code": self.code, "msg": self.message, "retryable": self.retryable, "details": self.details}


class BadRequest(SpanliteError):
    code = "bad_request"


class NotLeaseholder(SpanliteError):
    """This node does not hold the range's lease; `leaseholder` hints at who might."""

    code = "not_leaseholder"
    retryable = True


class RangeKeyMismatch(SpanliteError):
    """The key is not in any range this node has; `descriptor` may carry a fresher one."""

    code = "range_key_mismatch"
    retryable = True


class Unavailable(SpanliteError):
    """The range could not serve the request in time (no quorum, no lease yet)."""

    code = "unavailable"
    retryable = True


class AmbiguousResult(SpanliteError):
    """A write was proposed but its outcome is unknown. Retrying with the same op_id is safe."""

    code = "ambiguous"
    retryable = True


class NotInitialized(SpanliteError):
    code = "not_initialized"
    retryable = True


class AlreadyInitialized(SpanliteError):
    code = "already_initialized"


class ClockOffsetTooLarge(SpanliteError):
    code = "clock_offset"
    retryable = True


class ConditionFailed(SpanliteError):
    """A conditional command found the state it depends on changed (e.g. a stale split)."""

    code = "condition_failed"


class TxnAborted(SpanliteError):
    """The transaction was aborted: by a conflict with an older transaction (wound-wait), by
    lost or expired locks, or by recovery. `details` say why (key, conflicting transaction);
    retrying the whole transaction is safe."""

    code = "txn_aborted"
    retryable = True


class TxnLockTimeout(SpanliteError):
    """A lock could not be acquired in time (held by an older or prepared transaction)."""

    code = "txn_lock_timeout"
    retryable = True


ERROR_TYPES: dict[str, type[SpanliteError]] = {
    cls.code: cls
    for cls in (
        SpanliteError,
        BadRequest,
        NotLeaseholder,
        RangeKeyMismatch,
        Unavailable,
        AmbiguousResult,
        NotInitialized,
        AlreadyInitialized,
        ClockOffsetTooLarge,
        ConditionFailed,
        TxnAborted,
        TxnLockTimeout,
    )
}


def decode_error(raw: object) -> SpanliteError:
    if not isinstance(raw, dict) or not isinstance(raw.get("msg"), str):
        return SpanliteError(f"malformed error from node: {raw!r}")
    cls = ERROR_TYPES.get(raw.get("code", ""), SpanliteError)
    details = raw.get("details") if isinstance(raw.get("details"), dict) else {}
    return cls(raw["msg"], **details)


# ---------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True)
class Get:
    key: bytes

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.key, self.key + b"\x00"


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    op_id: bytes

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.key, self.key + b"\x00"


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes
    op_id: bytes

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.key, self.key + b"\x00"


@dataclass(frozen=True, slots=True)
class Scan:
    start: bytes
    end: bytes
    limit: int | None = None

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.start, self.end


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class Init:
    """Bootstrap a new cluster from this node and the nodes of its --join list."""


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """Sent by the initializing node to every other node: your identity in the new cluster."""

    cluster_id: str
    node_id: int
    nodes: dict[int, str] = field(default_factory=dict)
    replicas: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class AdminSplit:
    """Split the range holding `key` at `key` (through consensus; see docs/SHARDING.md)."""

    key: bytes

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.key, self.key + b"\x00"


@dataclass(frozen=True, slots=True)
class Increment:
    """Add `delta` to the 8-byte signed integer at `key` (absent = 0); answers the new value."""

    key: bytes
    delta: int
    op_id: bytes

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.key, self.key + b"\x00"


@dataclass(frozen=True, slots=True)
class MetaSplit:
    """Internal: replace the meta entry of `old` by `left` and `right` (conditional)."""

    old: RangeDescriptor
    left: RangeDescriptor
    right: RangeDescriptor
    op_id: bytes

    @property
    def key(self) -> bytes:
        return meta_key(self.old.end_key)

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.key, self.key + b"\x00"


@dataclass(frozen=True, slots=True)
class NodeHeartbeat:
    """Internal (node to meta range): extend `node_id`'s liveness record (ranges.liveness)."""

    node_id: int
    epoch: int
    expiration: Timestamp
    op_id: bytes

    @property
    def key(self) -> bytes:
        return liveness_key(self.node_id)

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.key, self.key + b"\x00"


@dataclass(frozen=True, slots=True)
class IncrementNodeEpoch:
    """Internal (node to meta range): end `node_id`'s liveness `epoch`, if its record expired."""

    node_id: int
    epoch: int
    op_id: bytes

    @property
    def key(self) -> bytes:
        return liveness_key(self.node_id)

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.key, self.key + b"\x00"


# -- transactions (txn/ drives them; ranges.locks and ranges.txn_state serve them) ---------

Span = tuple[bytes, bytes]
Write = tuple[bytes, bytes | None]  # (key, value); None deletes


@dataclass(frozen=True, slots=True)
class ReadAt:
    """A snapshot read of `[start, end)` at `ts` (None: the leaseholder's now), lock-free.
    Waits only for prepared writes that could still commit at or below `ts`."""

    start: bytes
    end: bytes
    limit: int | None
    ts: Timestamp | None

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.start, self.end


@dataclass(frozen=True, slots=True)
class TxnRead:
    """A locking read of `[start, end)` in read-write transaction `txn`: takes a read lock
    on the span (up to where the answer stops) at the leaseholder, wound-wait on conflicts."""

    txn: TxnMeta
    start: bytes
    end: bytes
    limit: int | None

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.start, self.end


@dataclass(frozen=True, slots=True)
class PrepareTxnRequest:
    """2PC phase 1 at one participant range (or, with `one_phase`, the whole commit of a
    transaction whose every lock and write is in this range)."""

    txn: TxnMeta
    anchor: bytes
    reads: tuple[Span, ...]
    writes: tuple[Write, ...]
    one_phase: bool

    def keys_touched(self) -> tuple[bytes, bytes]:
        starts = [s for s, _ in self.reads] + [k for k, _ in self.writes]
        ends = [e for _, e in self.reads] + [k + b"\x00" for k, _ in self.writes]
        return min(starts), max(ends)


@dataclass(frozen=True, slots=True)
class EndTxnRequest:
    """At the anchor's range: decide commit (at or above `min_commit_ts`) or abort, once."""

    txn_id: bytes
    anchor: bytes
    commit: bool
    min_commit_ts: Timestamp

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.anchor, self.anchor + b"\x00"


@dataclass(frozen=True, slots=True)
class ResolveTxnRequest:
    """Apply a decision to the transaction's locks in `[start, end)` (commit_ts None: abort).
    Answered per range, with `range_end`, like a scan."""

    txn_id: bytes
    start: bytes
    end: bytes
    commit_ts: Timestamp | None

    def keys_touched(self) -> tuple[bytes, bytes]:
        return self.start, self.end


# -- chaos testing (cluster/chaos): fault injection at one node, refused unless the node was
#    started with `--enable-chaos-admin` (cluster/node.py answers them itself, not the Store).


MAX_CHAOS_CLOCK_OFFSET_NS = 10_000_000_000  # 10 s: far beyond any max offset, still a sane clock
MAX_CHAOS_PEERS = 64


@dataclass(frozen=True, slots=True)
class ChaosDropPeers:
    """Drop every peer frame to and from these node ids (both directions) at the node that
    receives this; an empty tuple heals. Replaces the previous set."""

    peers: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ChaosClockOffset:
    """Shift the node's physical clock source by `offset_ns` from the real clock (0 restores)."""

    offset_ns: int = 0


CHAOS_ADMIN_REQUESTS = (ChaosDropPeers, ChaosClockOffset)

TXN_REQUESTS = (ReadAt, TxnRead, PrepareTxnRequest, EndTxnRequest, ResolveTxnRequest)
SPANNING_REQUESTS = (Scan, ReadAt, TxnRead, ResolveTxnRequest)  # answered per range, continued by the client

Request = (Get | Put | Delete | Scan | Status | Init | Bootstrap | AdminSplit | Increment | MetaSplit
           | NodeHeartbeat | IncrementNodeEpoch | ReadAt | TxnRead | PrepareTxnRequest | EndTxnRequest
           | ResolveTxnRequest | ChaosDropPeers | ChaosClockOffset)
WRITE_REQUESTS = (Put, Delete, Increment, MetaSplit, NodeHeartbeat, IncrementNodeEpoch)
# Requests only a node may send (over a peer connection), never a client.
NODE_ONLY_REQUESTS = (MetaSplit, NodeHeartbeat, IncrementNodeEpoch)
MAX_SCAN_LIMIT = 100_000
MAX_OP_ID_BYTES = 64
MAX_TXN_ITEMS = 10_000  # read spans or writes per range in one prepare (a limit on everything)


def encode_request(req: Request) -> list:
    match req:
        case Get(key):
            return ["get", key]
        case Put(key, value, op_id):
            return ["put", key, value, op_id]
        case Delete(key, op_id):
            return ["del", key, op_id]
        case Scan(start, end, limit):
            return ["scan", start, end, limit]
        case Status():
            return ["status"]
        case Init():
            return ["init"]
        case Bootstrap(cluster_id, node_id, nodes, replicas):
            return ["bootstrap", cluster_id, node_id, {int(k): v for k, v in nodes.items()}, list(replicas)]
        case AdminSplit(key):
            return ["split", key]
        case Increment(key, delta, op_id):
            return ["incr", key, delta, op_id]
        case MetaSplit(old, left, right, op_id):
            return ["metasplit", old.encode(), left.encode(), right.encode(), op_id]
        case NodeHeartbeat(node_id, epoch, expiration, op_id):
            return ["heartbeat", node_id, epoch, expiration.encode(), op_id]
        case IncrementNodeEpoch(node_id, epoch, op_id):
            return ["incepoch", node_id, epoch, op_id]
        case ReadAt(start, end, limit, ts):
            return ["readat", start, end, limit, None if ts is None else ts.encode()]
        case TxnRead(txn, start, end, limit):
            return ["tread", txn.encode(), start, end, limit]
        case PrepareTxnRequest(txn, anchor, reads, writes, one_phase):
            return ["prepare", txn.encode(), anchor, [list(r) for r in reads], [list(w) for w in writes], one_phase]
        case EndTxnRequest(txn_id, anchor, commit, min_commit_ts):
            return ["endtxn", txn_id, anchor, commit, min_commit_ts.encode()]
        case ResolveTxnRequest(txn_id, start, end, commit_ts):
            return ["resolve", txn_id, start, end, None if commit_ts is None else commit_ts.encode()]
        case ChaosDropPeers(peers):
            return ["chaos-drop", list(peers)]
        case ChaosClockOffset(offset_ns):
            return ["chaos-clock", offset_ns]
    raise AssertionError(f"unknown request {req!r}")


def _bytes_arg(raw: list, i: int, what: str) -> bytes:
    value = raw[i]
    if not isinstance(value, bytes):
        raise BadRequest(f"{what} must be bytes, got {type(value).__name__}")
    return value


def _op_id(raw: list, i: int) -> bytes:
    op_id = _bytes_arg(raw, i, "op_id")
    if not 0 < len(op_id) <= MAX_OP_ID_BYTES:
        raise BadRequest(f"op_id must be 1..{MAX_OP_ID_BYTES} bytes")
    return op_id


def _checked_key(key: bytes) -> bytes:
    try:
        validate_key(key)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    return key


def _checked_value(value: bytes) -> bytes:
    try:
        validate_value(value)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    return value


_ARITY = {"get": 2, "put": 4, "del": 3, "scan": 4, "status": 1, "init": 1, "bootstrap": 5,
          "split": 2, "incr": 4, "metasplit": 5, "heartbeat": 5, "incepoch": 4,
          "readat": 5, "tread": 5, "prepare": 6, "endtxn": 5, "resolve": 5,
          "chaos-drop": 2, "chaos-clock": 2}
MAX_INCREMENT_DELTA = 1 << 62


def decode_request(raw: object) -> Request:
    """Decode and validate a request; raise BadRequest saying what was wrong."""
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], str):
        raise BadRequest(f"a request is [name, args...], got {type(raw).__name__}")
    name = raw[0]
    if name not in _ARITY:
        raise BadRequest(f"unknown request {name!r}; known: {', '.join(sorted(_ARITY))}")
    if len(raw) != _ARITY[name]:
        raise BadRequest(f"request {name!r} takes {_ARITY[name] - 1} arguments, got {len(raw) - 1}")
    if name == "get":
        return Get(_checked_key(_bytes_arg(raw, 1, "key")))
    if name == "put":
        key = _checked_key(_bytes_arg(raw, 1, "key"))
        return Put(key, _checked_value(_bytes_arg(raw, 2, "value")), _op_id(raw, 3))
    if name == "del":
        return Delete(_checked_key(_bytes_arg(raw, 1, "key")), _op_id(raw, 2))
    if name == "scan":
        return _decode_scan(raw)
    if name == "status":
        return Status()
    if name == "init":
        return Init()
    if name == "split":
        return AdminSplit(_checked_key(_bytes_arg(raw, 1, "split key")))
    if name == "incr":
        delta = raw[2]
        if not isinstance(delta, int) or isinstance(delta, bool) or abs(delta) > MAX_INCREMENT_DELTA:
            raise BadRequest(f"increment delta must be an integer within ±2**62, got {delta!r}")
        return Increment(_checked_key(_bytes_arg(raw, 1, "key")), delta, _op_id(raw, 3))
    if name == "metasplit":
        return _decode_metasplit(raw)
    if name in ("heartbeat", "incepoch"):
        return _decode_liveness_request(raw)
    if name in ("chaos-drop", "chaos-clock"):
        return _decode_chaos_request(raw)
    if name in _TXN_DECODERS:
        try:
            return _TXN_DECODERS[name](raw)
        except (ValueError, TypeError, AssertionError, IndexError) as e:
            raise BadRequest(f"malformed {name} request: {e}") from None
    return _decode_bootstrap(raw)


def _ts_or_none(raw: object) -> Timestamp | None:
    return None if raw is None else Timestamp.decode(raw)


def _span_args(raw: list, i: int, what: str) -> tuple[bytes, bytes]:
    start, end = _bytes_arg(raw, i, f"{what} start"), _bytes_arg(raw, i + 1, f"{what} end")
    if end > KEY_MAX:
        end = KEY_MAX
    if start >= end:
        raise BadRequest(f"{what} start must be before its end")
    return start, end


def _limit_arg(limit: object) -> int | None:
    if limit is not None and (not isinstance(limit, int) or not 0 < limit <= MAX_SCAN_LIMIT):
        raise BadRequest(f"scan limit must be 1..{MAX_SCAN_LIMIT} or absent, got {limit!r}")
    return limit


def _user_key(key: object) -> bytes:
    if not isinstance(key, bytes):
        raise BadRequest(f"keys must be bytes, got {type(key).__name__}")
    try:
        validate_user_key(key)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    return key


def _decode_spans(raw: object) -> tuple[tuple[bytes, bytes], ...]:
    if not isinstance(raw, list) or len(raw) > MAX_TXN_ITEMS:
        raise BadRequest(f"read spans must be a list of at most {MAX_TXN_ITEMS}")
    spans = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, bytes) for x in item)
                and item[0] < item[1]):
            raise BadRequest("a read span is [start, end) with start < end")
        spans.append((_user_key(item[0]), item[1]))
    return tuple(spans)


def _decode_writes(raw: object) -> tuple[tuple[bytes, bytes | None], ...]:
    if not isinstance(raw, list) or len(raw) > MAX_TXN_ITEMS:
        raise BadRequest(f"writes must be a list of at most {MAX_TXN_ITEMS}")
    writes = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2):
            raise BadRequest("a write is [key, value-or-null]")
        value = item[1] if item[1] is None else _checked_value(_bytes_arg(item, 1, "value"))
        writes.append((_user_key(item[0]), value))
    return tuple(writes)


def _decode_prepare(raw: list) -> PrepareTxnRequest:
    _, txn, anchor, reads, writes, one_phase = raw
    if not isinstance(one_phase, bool):
        raise BadRequest("one_phase must be a bool")
    request = PrepareTxnRequest(TxnMeta.decode(txn), _user_key(anchor), _decode_spans(reads), _decode_writes(writes),
                                one_phase)
    if not request.reads and not request.writes:
        raise BadRequest("a prepare needs at least one read span or write")
    return request


_TXN_DECODERS = {
    "readat": lambda raw: ReadAt(*_span_args(raw, 1, "read"), _limit_arg(raw[3]), _ts_or_none(raw[4])),
    "tread": lambda raw: TxnRead(TxnMeta.decode(raw[1]), *_span_args(raw, 2, "read"), _limit_arg(raw[4])),
    "prepare": _decode_prepare,
    "endtxn": lambda raw: EndTxnRequest(_bytes_arg(raw, 1, "txn id"), _user_key(raw[2]), _bool_arg(raw[3]),
                                        Timestamp.decode(raw[4])),
    "resolve": lambda raw: ResolveTxnRequest(_bytes_arg(raw, 1, "txn id"), *_span_args(raw, 2, "resolve"),
                                             _ts_or_none(raw[4])),
}


def _bool_arg(value: object) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"expected a bool, got {value!r:.20}")
    return value


def _decode_liveness_request(raw: list) -> NodeHeartbeat | IncrementNodeEpoch:
    node_id, epoch = raw[1], raw[2]
    for what, value in (("node id", node_id), ("epoch", epoch)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 1 << 63:
            raise BadRequest(f"{what} must be a positive integer, got {value!r:.40}")
    if raw[0] == "incepoch":
        return IncrementNodeEpoch(node_id, epoch, _op_id(raw, 3))
    try:
        expiration = Timestamp.decode(raw[3])
    except (ValueError, TypeError, AssertionError) as e:
        raise BadRequest(f"malformed heartbeat expiration: {e}") from None
    return NodeHeartbeat(node_id, epoch, expiration, _op_id(raw, 4))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _decode_chaos_request(raw: list) -> ChaosDropPeers | ChaosClockOffset:
    if raw[0] == "chaos-clock":
        offset_ns = raw[1]
        if not _is_int(offset_ns) or abs(offset_ns) > MAX_CHAOS_CLOCK_OFFSET_NS:
            raise BadRequest(f"clock offset must be an integer number of ns within ±{MAX_CHAOS_CLOCK_OFFSET_NS}, "
                             f"got {offset_ns!r:.40}")
        return ChaosClockOffset(offset_ns)
    peers = raw[1]
    if not (isinstance(peers, list) and len(peers) <= MAX_CHAOS_PEERS
            and all(_is_int(p) and 0 < p < 1 << 31 for p in peers)):
        raise BadRequest(f"peers to drop must be a list of at most {MAX_CHAOS_PEERS} positive node ids, "
                         f"got {peers!r:.60}")
    return ChaosDropPeers(tuple(sorted(set(peers))))


def _decode_metasplit(raw: list) -> MetaSplit:
    try:
        old, left, right = (RangeDescriptor.decode(raw[i]) for i in (1, 2, 3))
    except (ValueError, TypeError, KeyError) as e:
        raise BadRequest(f"malformed metasplit request: {e}") from None
    return MetaSplit(old, left, right, _op_id(raw, 4))


def _decode_scan(raw: list) -> Scan:
    start = _bytes_arg(raw, 1, "scan start")
    end = _bytes_arg(raw, 2, "scan end")
    limit = raw[3]
    if limit is not None and (not isinstance(limit, int) or not 0 < limit <= MAX_SCAN_LIMIT):
        raise BadRequest(f"scan limit must be 1..{MAX_SCAN_LIMIT} or absent, got {limit!r}")
    if end > KEY_MAX:
        end = KEY_MAX
    if start > end:
        raise BadRequest("scan start must not be after scan end")
    return Scan(start, end, limit)


def _decode_bootstrap(raw: list) -> Bootstrap:
    _, cluster_id, node_id, nodes, replicas = raw
    ok = (
        isinstance(cluster_id, str)
        and isinstance(node_id, int)
        and isinstance(nodes, dict)
        and all(isinstance(k, int) and isinstance(v, str) for k, v in nodes.items())
        and isinstance(replicas, list)
        and all(isinstance(r, int) for r in replicas)
    )
    if not ok:
        raise BadRequest("malformed bootstrap request")
    return Bootstrap(cluster_id, node_id, dict(nodes), tuple(replicas))
