"""Node liveness: one record per node, `(epoch, expiration)`, kept on the meta range, which the
node extends every second (CockroachDB's node liveness, `pkg/kv/kvserver/liveness`).

Epoch leases (`paxos_groups.lease`) are valid while their holder's record keeps their epoch,
so a node keeps every one of its leases alive with one heartbeat a second, instead of one
lease renewal per range per second.

Rules, applied by the meta range's state machine (deterministic: only the command and the
applied record decide):
- Heartbeat `(node, epoch, expiration)`: accepted if the record has `epoch` (a missing record
  counts as epoch 1, expired); the expiration only grows. A rejected heartbeat answers the
  current record, from which the node learns that its epoch was incremented.
- Increment `(node, epoch, ts)`: accepted if the record still has `epoch` and `ts >= expiration`
  (`ts` is the proposer's HLC at proposal); the epoch goes up by one. From then on, no
  heartbeat at the old epoch is accepted, so the node's leases at that epoch are dead for good.

Why the old holder is not serving once its epoch is incremented: the holder serves under an
epoch lease only while its own clock is below `expiration - max_offset` for the expiration it
learned from its last accepted heartbeat (never later than the record's). The increment needs
an HLC reading at or past the record's expiration, so by the argument of `paxos_groups.lease`
(guarantee 2) the holder's clock is in stasis or beyond at that moment, and stays there.

HAZARD: `NodeLiveness` is one node's view. Its own record comes only from its own heartbeat
answers; other nodes' records come from their pings and from increment answers, and may be
stale. A stale view can only delay a takeover or send a client to a dead node for a while;
the safety argument above uses the meta range's record, not the view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cbor2

from clock.timestamp import ZERO, Timestamp

DEFAULT_LIVENESS_DURATION_NS = 3_000_000_000
DEFAULT_HEARTBEAT_INTERVAL_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class LivenessRecord:
    node_id: int
    epoch: int  # 1, 2, ...: incremented by other nodes once the record expired
    expiration: Timestamp

    def __post_init__(self) -> None:
        if not (isinstance(self.node_id, int) and self.node_id > 0):
            raise ValueError(f"liveness node_id must be a positive int, got {self.node_id!r:.40}")
        if not (isinstance(self.epoch, int) and self.epoch > 0):
            raise ValueError(f"liveness epoch must be a positive int, got {self.epoch!r:.40}")
        if not isinstance(self.expiration, Timestamp):
            raise ValueError("liveness expiration must be a Timestamp")

    def encode(self) -> list:
        return [self.node_id, self.epoch, self.expiration.encode()]

    @staticmethod
    def decode(raw: object) -> "LivenessRecord":
        if not (isinstance(raw, list) and len(raw) == 3):
            raise ValueError(f"a liveness record is [node_id, epoch, expiration], got {raw!r:.80}")
        return LivenessRecord(raw[0], raw[1], Timestamp.decode(raw[2]))

    def to_bytes(self) -> bytes:
        return cbor2.dumps(self.encode())

    @staticmethod
    def from_bytes(raw: bytes | None) -> "LivenessRecord | None":
        return None if raw is None else LivenessRecord.decode(cbor2.loads(raw))


def apply_heartbeat(current: LivenessRecord | None, node_id: int, epoch: int,
                    expiration: Timestamp) -> tuple[LivenessRecord, bool]:
    """`(record, accepted)`: the record after a heartbeat; unchanged when rejected."""
    if current is None:
        current = LivenessRecord(node_id, 1, ZERO)
    if current.epoch != epoch:
        return current, False
    if expiration <= current.expiration:
        return current, True  # A late duplicate: nothing to extend, but the epoch is right.
    return LivenessRecord(node_id, epoch, expiration), True


def apply_increment(current: LivenessRecord | None, epoch: int, ts: Timestamp) -> tuple[LivenessRecord | None, bool]:
    """`(record, accepted)` after an epoch increment proposed at `ts`."""
    if current is None:
        return None, False
    if current.epoch > epoch:
        return current, True  # Someone else incremented it already: the caller's goal holds.
    if current.epoch < epoch or ts < current.expiration:
        return current, False
    return LivenessRecord(current.node_id, epoch + 1, current.expiration), True


@dataclass
class NodeLiveness:
    """One node's view of every node's liveness record (its own included)."""

    node_id: int
    duration_ns: int = DEFAULT_LIVENESS_DURATION_NS
    records: dict[int, LivenessRecord] = field(default_factory=dict)

    def learn(self, record: LivenessRecord, *, from_self: bool = True) -> None:
        """Keep the newest of what we know: a higher epoch, or a later expiration at one epoch.
        Our own record is learned only from our own heartbeats (`from_self`)."""
        if record.node_id == self.node_id and not from_self:
            return
        known = self.records.get(record.node_id)
        if known is None or (record.epoch, record.expiration) > (known.epoch, known.expiration):
            self.records[record.node_id] = record

    def own(self) -> LivenessRecord | None:
        return self.records.get(self.node_id)

    def knows(self, node_id: int) -> bool:
        return node_id in self.records

    def expiration_of(self, node_id: int, epoch: int) -> Timestamp:
        """The expiration of `node_id`'s liveness at `epoch`; ZERO if that epoch is dead or unknown."""
        record = self.records.get(node_id)
        if record is None or record.epoch != epoch:
            return ZERO
        return record.expiration

    def epoch_dead(self, node_id: int, epoch: int) -> bool:
        record = self.records.get(node_id)
        return record is not None and record.epoch > epoch

    def live_epoch(self, now: Timestamp, max_offset_ns: int) -> int:
        """Our epoch if our own record is valid at `now` (before its stasis), else 0."""
        record = self.own()
        if record is None or now.wall_ns >= record.expiration.wall_ns - max_offset_ns:
            return 0
        return record.epoch

    def next_heartbeat(self, now: Timestamp) -> tuple[int, Timestamp]:
        """`(epoch, expiration)` for our next heartbeat."""
        record = self.own()
        return (1 if record is None else record.epoch), now.add_ns(self.duration_ns)
