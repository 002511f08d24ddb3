"""The Store: every replica on one node, as a sans-I/O core (CockroachDB's kvserver.Store).

Inputs: `tick()`, `receive_peer_frame(from_node, frame)`, `receive_request(client, id, request)`.
Output: `process()` returns the peer frames to send and the client responses to deliver.

`process()` runs the cycle in the order the durability rule demands:
    collect Ready from every group -> persist all of them in ONE write batch, fsynced
    (group commit) -> only then hand out messages -> apply chosen entries -> advance.
No acceptor reply and no client acknowledgement leaves before the state it depends on is
on disk.

The Store does no I/O of its own besides the engine (which the simulator replaces with
a MemoryEngine that can crash); a driver (cluster/node.py, cluster/sim) owns sockets,
timers and threads.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

import cbor2

from clock.hlc import ClockOffsetError, HybridLogicalClock
from clock.timestamp import Timestamp
from paxos_groups.core_types import KNOWN_BUGS as CORE_BUGS
from paxos_groups.core import GroupConfig, PaxosGroup
from paxos_groups.durable import load_durable_state, needs_sync, ready_to_batch
from paxos_groups.engine import Engine
from paxos_groups.messages import MessageDecodeError, decode_message, encode_message
from ranges import keys
from ranges.api import (
    Get,
    NotInitialized,
    RangeKeyMismatch,
    Request,
    Scan,
    SpanliteError,
    Status,
)
from ranges.descriptor import RangeDescriptor
from ranges.replica import PendingRequest, Replica, ReplicaConfig
from ranges.state_machine import RangeStateMachine

log = logging.getLogger("spanlite.store")

MAX_PROCESS_ROUNDS = 8
FIRST_RANGE_ID = 1


@dataclass
class StoreConfig:
    group: GroupConfig = field(default_factory=GroupConfig)
    replica: ReplicaConfig = field(default_factory=ReplicaConfig)
    liveness_window_ns: int = 3_000_000_000
    liveness_ping_ticks: int = 10
    suspect_after_ns: int = 1_200_000_000


@dataclass
class Identity:
    cluster_id: str
    node_id: int
    nodes: dict[int, str]

    def encode(self) -> bytes:
        return cbor2.dumps({"cluster_id": self.cluster_id, "node_id": self.node_id, "nodes": self.nodes})

    @staticmethod
    def decode(raw: bytes) -> "Identity":
        data = cbor2.loads(raw)
        return Identity(data["cluster_id"], data["node_id"], {int(k): v for k, v in data["nodes"].items()})


def load_identity(engine: Engine) -> Identity | None:
    raw = engine.get(keys.ident_key())
    return None if raw is None else Identity.decode(raw)


def bootstrap_store(engine: Engine, identity: Identity, replicas: tuple[int, ...]) -> None:
    """Write a new node's identity and, if it is a replica, the first range; fsynced."""
    assert load_identity(engine) is None, "bootstrapping a store that already has an identity"
    assert replicas, "the first range needs replicas"
    descriptor = RangeDescriptor(FIRST_RANGE_ID, keys.KEY_MIN, keys.KEY_MAX, tuple(replicas), 0)
    batch = [(keys.ident_key(), identity.encode())]
    if identity.node_id in replicas:
        batch.append((keys.range_state_key(FIRST_RANGE_ID), RangeStateMachine.initial_state(descriptor)))
    engine.write(batch, sync=True)


def range_ids_on_store(engine: Engine) -> list[int]:
    start, end = keys.range_state_span()
    found = (keys.decode_range_state_key(k) for k, _ in engine.scan(start, end))
    return [range_id for range_id in found if range_id is not None]


@dataclass
class Output:
    peer_frames: dict[int, dict] = field(default_factory=dict)
    responses: list[tuple[Any, int, Any]] = field(default_factory=list)


class Store:
    def __init__(
        self,
        engine: Engine,
        hlc: HybridLogicalClock,
        config: StoreConfig | None = None,
        rng: random.Random | None = None,
        bugs: frozenset[str] = frozenset(),
    ) -> None:
        identity = load_identity(engine)
        assert identity is not None, "a Store needs a bootstrapped engine"
        self.engine = engine
        self.hlc = hlc
        self.config = config or StoreConfig()
        self.rng = rng or random.Random(identity.node_id)
        self.bugs = bugs
        self.identity = identity
        self.node_id = identity.node_id
        self.replicas: dict[int, Replica] = {}
        self.last_heard_ns: dict[int, int] = {}
        self._outbound: dict[int, list] = {}
        self._responses: list[tuple[Any, int, Any]] = []
        # Test hook (the simulator's checkers): called with (range_id, slot, value) per applied entry.
        self.apply_observer = None
        self._ticks = 0
        self._started_ns = hlc.physical_now_ns()
        for range_id in range_ids_on_store(engine):
            self._load_replica(range_id)

    # ------------------------------------------------------------------ setup

    def _load_replica(self, range_id: int) -> None:
        sm = RangeStateMachine(self.engine, None, self.hlc.max_offset_ns, range_id=range_id)
        descriptor = sm.descriptor
        state = load_durable_state(self.engine, range_id)
        group = PaxosGroup(
            range_id, self.node_id, tuple(descriptor.replicas), state, self.config.group,
            random.Random(self.rng.getrandbits(64)), bugs=self.bugs & CORE_BUGS, applied_index=sm.applied_index)
        self.replicas[range_id] = Replica(
            self.node_id, group, sm, self.hlc, self.config.replica, self._respond,
            self.identity.nodes.get, bugs=self.bugs)

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        self._ticks += 1
        if self._ticks % self.config.liveness_ping_ticks == 0:
            self._ping_peers()
        now_ns = self.hlc.physical_now_ns()
        for replica in self.replicas.values():
            leader = replica.group.leader_hint
            if leader is not None and leader != self.node_id and self._suspect(leader, now_ns):
                # A quiesced follower waits ~10x longer to elect; a dead leader's node
                # must not cost that. Node liveness (pings) tells us sooner.
                replica.group.wake()
            replica.group.tick()
            replica.tick()

    def _suspect(self, node_id: int, now_ns: int) -> bool:
        heard = self.last_heard_ns.get(node_id, self._started_ns)
        return now_ns - heard > self.config.suspect_after_ns

    def _ping_peers(self) -> None:
        """Node-level liveness (and a clock reading): an empty frame to every peer.
        Groups quiesce when idle, so group traffic alone cannot tell who is up."""
        for node_id in self.identity.nodes:
            if node_id != self.node_id:
                self._outbound.setdefault(node_id, [])

    def receive_peer_frame(self, from_node: int, frame: object) -> None:
        """A frame from a peer: `{"ts": [wall, logical], "m": [encoded messages]}`. Never raises."""
        if not isinstance(frame, dict) or not isinstance(frame.get("m"), list):
            log.error("node %d: dropping malformed frame from node %s", self.node_id, from_node)
            return
        try:
            self.hlc.update(Timestamp.decode(frame.get("ts")))
        except ClockOffsetError as e:
            log.error("node %d: dropping frame from node %s: %s", self.node_id, from_node, e)
            return
        except ValueError as e:
            log.error("node %d: dropping frame from node %s with bad timestamp: %s", self.node_id, from_node, e)
            return
        self.last_heard_ns[from_node] = self.hlc.physical_now_ns()
        for raw in frame["m"]:
            self._step_message(from_node, raw)

    def _step_message(self, from_node: int, raw: object) -> None:
        try:
            msg = decode_message(raw)
        except MessageDecodeError as e:
            log.error("node %d: dropping malformed message from node %s: %s", self.node_id, from_node, e)
            return
        replica = self.replicas.get(msg.group_id)
        if replica is None:
            return  # A group we do not host (yet): the sender will retry or send a snapshot.
        replica.group.step(from_node, msg)

    def receive_request(self, client: Any, request_id: int, request: Request) -> None:
        if isinstance(request, Status):
            self._respond(client, request_id, self.status())
            return
        deadline = self.hlc.physical_now_ns() + self.config.replica.request_timeout_ns
        pending = PendingRequest(client, request_id, request, deadline)
        start, end = request.keys_touched()
        replica = self._replica_for(start)
        if replica is None:
            self._respond(client, request_id, RangeKeyMismatch(
                f"node {self.node_id} has no replica of the range holding {start!r}"))
            return
        if isinstance(request, Scan):
            end = min(end, replica.sm.descriptor.end_key)
            pending.request = Scan(start, end, request.limit)
        replica.handle(pending)

    def _replica_for(self, key: bytes) -> Replica | None:
        for replica in self.replicas.values():
            if replica.sm.descriptor.contains(key):
                return replica
        return None

    def _respond(self, client: Any, request_id: int, result: Any) -> None:
        self._responses.append((client, request_id, result))

    # ------------------------------------------------------------------ the cycle

    def process(self) -> Output:
        """Persist, send, apply, advance; repeat while applying produced more work."""
        for _ in range(MAX_PROCESS_ROUNDS):
            if not self._process_round():
                break
        output = Output(self._take_outbound(), self._responses)
        self._responses = []
        return output

    def _process_round(self) -> bool:
        readies = [(r, r.group.ready()) for r in self.replicas.values() if r.group.has_ready()]
        if not readies:
            return False
        self._persist(readies)
        for replica, ready in readies:
            for to_node, msg in ready.messages:
                self._outbound.setdefault(to_node, []).append(encode_message(msg))
        for replica, ready in readies:
            self._apply(replica, ready)
        for replica, ready in readies:
            replica.group.advance(ready)
            self._maybe_compact(replica)
            replica.serve_queued()
        return True

    def _persist(self, readies: list) -> None:
        batch = []
        sync = False
        for replica, ready in readies:
            batch.extend(ready_to_batch(replica.range_id, ready))
            sync = sync or needs_sync(ready)
        if not batch:
            return
        if "ack-before-fsync" in self.bugs:
            sync = False  # Planted bug: acknowledge what a crash may still lose.
        self.engine.write(batch, sync=sync)

    def _apply(self, replica: Replica, ready) -> None:
        if ready.snapshot is not None:
            index, data = ready.snapshot
            replica.sm.restore(index, data)
        for slot, value in ready.committed:
            if self.apply_observer is not None:
                self.apply_observer(replica.range_id, slot, value)
            replica.apply(slot, value)
        if ready.dropped_proposals:
            replica.proposals_dropped(ready.dropped_proposals)
        for to_node in ready.snapshot_requests:
            replica.group.send_snapshot(to_node, replica.sm.applied_index, replica.sm.snapshot())

    def _maybe_compact(self, replica: Replica) -> None:
        """Truncate the log behind the applied state. Safe unsynced: the engine loses only
        suffixes, and the applied state was written before the truncation."""
        cfg = self.config.replica
        applied = replica.sm.applied_index
        upto = applied - cfg.log_retain_entries
        if upto - replica.group.first_index >= cfg.log_compact_every:
            replica.group.compact(upto)

    def _take_outbound(self) -> dict[int, dict]:
        if not self._outbound:
            return {}
        ts = self.hlc.now().encode()
        frames = {to: {"ts": ts, "m": msgs} for to, msgs in self._outbound.items()}
        self._outbound = {}
        return frames

    # ------------------------------------------------------------------ status

    def status(self) -> dict:
        now_ns = self.hlc.physical_now_ns()
        now = self.hlc.now()
        window = self.config.liveness_window_ns
        nodes = []
        for node_id, address in sorted(self.identity.nodes.items()):
            heard = self.last_heard_ns.get(node_id)
            live = node_id == self.node_id or (heard is not None and now_ns - heard < window)
            nodes.append({"node_id": node_id, "address": address, "live": live})
        ranges = []
        for replica in sorted(self.replicas.values(), key=lambda r: r.sm.descriptor.start_key):
            d = replica.sm.descriptor
            ranges.append({
                "range_id": d.range_id,
                "start_key": d.start_key,
                "end_key": d.end_key,
                "replicas": list(d.replicas),
                "leaseholder": replica.leaseholder(now),
                "leader": replica.group.leader_hint,
                "applied_index": replica.sm.applied_index,
                "size_bytes": replica.sm.size_bytes(),
            })
        return {"node_id": self.node_id, "cluster_id": self.identity.cluster_id, "nodes": nodes, "ranges": ranges}

    def close(self) -> None:
        for replica in self.replicas.values():
            replica.fail_all(NotInitialized(f"node {self.node_id} is shutting down; retry another node"))
