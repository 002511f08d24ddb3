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

import bisect
import dataclasses
import heapq
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
from paxos_groups.messages import InstallSnapshot, MessageDecodeError, decode_message, encode_message
from ranges import commands, keys
from ranges.api import (
    BadRequest,
    ConditionFailed,
    Increment,
    IncrementNodeEpoch,
    MetaSplit,
    NODE_ONLY_REQUESTS,
    NodeHeartbeat,
    NotInitialized,
    NotLeaseholder,
    RangeKeyMismatch,
    Request,
    SpanliteError,
    Status,
    SPANNING_REQUESTS,
    EndTxnRequest,
    decode_request,
)
from ranges.descriptor import RangeDescriptor, decode_meta_value
from ranges.replica import PendingRequest, Replica, ReplicaConfig
from ranges.clock_monitor import ClockMonitor
from ranges.internal import InternalRouter
from ranges.liveness import (
    DEFAULT_HEARTBEAT_INTERVAL_NS,
    DEFAULT_LIVENESS_DURATION_NS,
    LivenessRecord,
    NodeLiveness,
)
from ranges.state_machine import KNOWN_BUGS as SM_BUGS
from ranges.state_machine import ApplyResult, RangeStateMachine, meta_bootstrap_batch

log = logging.getLogger("spanlite.store")

MAX_PROCESS_ROUNDS = 8
META_RANGE_ID = 1
BOOTSTRAP_TS = Timestamp(1, 0)
SPLIT_TIMEOUT_NS = 10_000_000_000
MAX_EPOCHS_ENDING = 64  # Epoch increments in flight at once (a limit on everything).
SPLIT_ATTEMPTS_MAX = 5  # A requested split restarts at most this often after concurrent splits.
# Idle quiesced groups are ticked this much less often (leader and followers alike, so
# their timeouts keep the same ratio); node liveness wakes them when a leader's node dies.
QUIESCED_TICK_EVERY = 10
MAX_EARLY_GROUPS = 256
MAX_EARLY_MESSAGES_PER_GROUP = 32
EARLY_MESSAGE_TTL_TICKS = 20
SNAPSHOT_ASK_AFTER_TICKS = 10
OFFSET_LOG_INTERVAL_NS = 10_000_000_000  # One "dropping frames" error line per peer per 10 s.


@dataclass
class StoreConfig:
    group: GroupConfig = field(default_factory=GroupConfig)
    replica: ReplicaConfig = field(default_factory=ReplicaConfig)
    liveness_window_ns: int = 3_000_000_000
    liveness_ping_ticks: int = 10
    suspect_after_ns: int = 1_200_000_000
    meta_verify_ticks: int = 10
    lease_balance_ticks: int = 40
    split_check_ticks: int = 20
    split_threshold_bytes: int = 64 << 20
    # Node liveness and epoch leases (ranges.liveness). Without them every range renews an
    # expiration lease every second; with them a node heartbeats once a second for all.
    epoch_leases: bool = True
    liveness_duration_ns: int = DEFAULT_LIVENESS_DURATION_NS
    liveness_heartbeat_ns: int = DEFAULT_HEARTBEAT_INTERVAL_NS


@dataclass
class Identity:
    cluster_id: str
    node_id: int
    nodes: dict[int, str]
    # The meta range never splits and (until rebalancing exists) never moves: every node
    # knows where to send meta requests.
    meta_replicas: tuple[int, ...] = ()

    def encode(self) -> bytes:
        return cbor2.dumps({"cluster_id": self.cluster_id, "node_id": self.node_id, "nodes": self.nodes,
                            "meta_replicas": list(self.meta_replicas)})

    @staticmethod
    def decode(raw: bytes) -> "Identity":
        data = cbor2.loads(raw)
        nodes = {int(k): v for k, v in data["nodes"].items()}
        meta = tuple(data.get("meta_replicas") or sorted(nodes)[:3])
        return Identity(data["cluster_id"], data["node_id"], nodes, meta)


def load_identity(engine: Engine) -> Identity | None:
    raw = engine.get(keys.ident_key())
    return None if raw is None else Identity.decode(raw)


def initial_descriptors(replicas: tuple[int, ...]) -> list[RangeDescriptor]:
    """A new cluster: the meta range (the system keyspace) and one range of user keys."""
    return [
        RangeDescriptor(META_RANGE_ID, keys.KEY_MIN, keys.SYSTEM_KEY_MAX, tuple(replicas), 0),
        RangeDescriptor(META_RANGE_ID + 1, keys.SYSTEM_KEY_MAX, keys.KEY_MAX, tuple(replicas), 0),
    ]


def bootstrap_store(engine: Engine, identity: Identity, replicas: tuple[int, ...]) -> None:
    """Write a new node's identity and, if it is a replica, the first ranges and the meta
    entries describing them; fsynced."""
    assert load_identity(engine) is None, "bootstrapping a store that already has an identity"
    assert replicas, "the first range needs replicas"
    identity.meta_replicas = tuple(replicas)
    batch = [(keys.ident_key(), identity.encode())]
    if identity.node_id in replicas:
        descriptors = initial_descriptors(tuple(replicas))
        for descriptor in descriptors:
            batch.append((keys.range_state_key(descriptor.range_id), RangeStateMachine.initial_state(descriptor)))
        batch.extend(meta_bootstrap_batch(descriptors, BOOTSTRAP_TS))
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
        self._offset_logged_ns: dict[int, int] = {}  # peer -> when its offset drops were last logged
        self._offset_drops: dict[int, int] = {}  # peer -> frames dropped since then
        self._outbound: dict[int, list] = {}
        self._outbound_rq: dict[int, list] = {}
        self._outbound_rs: dict[int, list] = {}
        self._outbound_ns: dict[int, list] = {}  # snapshot requests for groups we lack
        self._snapshot_sent_tick: dict[tuple[int, int], int] = {}
        self._local_rq: list = []
        self._responses: list[tuple[Any, int, Any]] = []
        self.router = InternalRouter(self.node_id, self._send_internal)
        # Replicas whose group may have a Ready: a cycle looks only at these, not at every
        # replica (1,000 ranges, a few active). Every slow tick re-checks all (a safety net).
        self._dirty: dict[int, Replica] = {}
        # Replicas ticked every tick (not idle, or touched since the last tick); the rest are
        # ticked every QUIESCED_TICK_EVERY ticks.
        self._awake: dict[int, Replica] = {}
        self._ordered: list[Replica] = []  # Sorted by start key, for routing.
        self._starts: list[bytes] = []
        # Test hook (the simulator's checkers): called with (range_id, slot, value) per applied entry.
        self.apply_observer = None
        # Test hook: called with (range_id, quorum, slot, ballot, value) per durably accepted entry.
        self.accept_observer = None
        self._split_waiters: dict[tuple[int, int], SplitTask] = {}
        self._meta_waiters: dict[tuple[int, int], SplitTask] = {}
        self._early_messages: dict[int, list] = {}
        self._meta_flushing: set[int] = set()
        self._auto_splitting: set[int] = set()
        self._ticks = 0
        self._started_ns = hlc.physical_now_ns()
        self.liveness = NodeLiveness(self.node_id, self.config.liveness_duration_ns)
        self._heartbeat_in_flight = False
        self._next_heartbeat_ns = 0
        self._epochs_ending: set[tuple[int, int]] = set()
        self._gossip_liveness = False
        self._wakeups: list[tuple[int, int]] = []  # heap of (physical ns, 0): commit-waits ending
        self._apply_batch: list = []  # applied entries' writes of this cycle, not yet in the engine
        self._apply_ranges: set[int] = set()
        self.clock = ClockMonitor(self.node_id, hlc.max_offset_ns, len(identity.nodes))
        self._clock_echoes: dict[int, list[int]] = {}  # peer -> [its probe time, our time]: to send
        self._clock_probe = False
        for range_id in range_ids_on_store(engine):
            self._load_replica(range_id)
        self._reindex()

    # ------------------------------------------------------------------ setup

    def _load_replica(self, range_id: int, descriptor: RangeDescriptor | None = None) -> Replica:
        sm = RangeStateMachine(self.engine, descriptor, self.hlc.max_offset_ns, range_id=range_id,
                               bugs=self.bugs & SM_BUGS)
        descriptor = sm.descriptor
        state = load_durable_state(self.engine, range_id)
        group = PaxosGroup(
            range_id, self.node_id, tuple(descriptor.replicas), state, self.config.group,
            random.Random(self.rng.getrandbits(64)), bugs=self.bugs & CORE_BUGS, applied_index=sm.applied_index)
        replica = Replica(
            self.node_id, group, sm, self.hlc, self.config.replica, self._respond,
            self.identity.nodes.get, bugs=self.bugs)
        replica.on_admin_split = self._start_split
        if self.config.epoch_leases:
            replica.liveness = self.liveness
            replica.on_epoch_expired = self._end_epoch
        replica.on_wake_at = self._wake_at
        sm.write_sink = self._sink_apply
        replica.clock_ok = lambda: self.clock.serving
        replica.on_recover_txn = self._recover_txn
        replica.on_dirty = self._mark_dirty
        replica.always_leased = range_id == META_RANGE_ID
        self.replicas[range_id] = replica
        self._mark_dirty(replica)
        return replica

    def _mark_dirty(self, replica: Replica) -> None:
        self._dirty[replica.range_id] = replica
        self._awake[replica.range_id] = replica

    def _reindex(self) -> None:
        self._ordered = sorted(self.replicas.values(), key=lambda r: r.sm.descriptor.start_key)
        self._starts = [r.sm.descriptor.start_key for r in self._ordered]

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        self._ticks += 1
        if self._early_messages and self._ticks % EARLY_MESSAGE_TTL_TICKS == 0:
            self._ask_for_snapshots()
            self._early_messages.clear()  # Asked for; fresh messages will stash again.
        if self._ticks % self.config.liveness_ping_ticks == 0:
            self._ping_peers()
        now_ns = self.hlc.physical_now_ns()
        if self.config.epoch_leases and self.clock.serving:
            self._maybe_heartbeat(now_ns)  # (A node whose clock is off lets its leases expire.)
        self.router.tick(now_ns)
        slow_tick = self._ticks % QUIESCED_TICK_EVERY == 0
        # Idle quiesced replicas are visited only on slow ticks: 1,000 idle ranges must not
        # cost 1,000 visits every tick. Anything that makes one busy marks it dirty (awake).
        visit = list(self.replicas.values()) if slow_tick else list(self._awake.values())
        self._awake = {}
        for replica in visit:
            leader = replica.group.leader_hint
            if slow_tick and leader is not None and leader != self.node_id and self._suspect(leader, now_ns):
                # A quiesced follower waits ~10x longer to elect; a dead leader's node
                # must not cost that. Node liveness (pings) tells us sooner.
                replica.group.wake()
            if replica.is_idle() and not slow_tick:
                if replica.group.has_ready():
                    self._mark_dirty(replica)
                continue  # Quiesced and idle: its timers run at 1/QUIESCED_TICK_EVERY speed.
            replica.group.tick()
            replica.tick()
            self._mark_dirty(replica)
            if not replica.is_idle():
                self._awake[replica.range_id] = replica
        if self._ticks % self.config.meta_verify_ticks == 0:
            self._verify_meta(now_ns)
        if self._ticks % self.config.lease_balance_ticks == 0:
            self._balance_leases(now_ns)
        if self._ticks % self.config.split_check_ticks == 0:
            self._maybe_split_large_ranges()

    def _suspect(self, node_id: int, now_ns: int) -> bool:
        heard = self.last_heard_ns.get(node_id, self._started_ns)
        return now_ns - heard > self.config.suspect_after_ns

    def _ping_peers(self) -> None:
        """Node-level liveness (and a clock reading): an empty frame to every peer.
        Groups quiesce when idle, so group traffic alone cannot tell who is up."""
        for node_id in self.identity.nodes:
            if node_id != self.node_id:
                self._outbound.setdefault(node_id, [])
        self._gossip_liveness = True  # The ping frames carry our liveness record...
        self._clock_probe = True  # ...and our physical time, which the peer echoes (ranges.clock_monitor).
        line = self.clock.check(self.hlc.physical_now_ns())
        if line is not None:
            (log.error if not self.clock.serving else log.warning)(line)

    # ------------------------------------------------------------------ node liveness

    def _maybe_heartbeat(self, now_ns: int) -> None:
        """Extend our liveness record on the meta range, once per heartbeat interval."""
        if self._heartbeat_in_flight or now_ns < self._next_heartbeat_ns:
            return
        epoch, expiration = self.liveness.next_heartbeat(self.hlc.now())
        self._heartbeat_in_flight = True
        request = NodeHeartbeat(self.node_id, epoch, expiration, self._new_op_id())
        self.router.call(request, self.identity.meta_replicas, self._heartbeat_done, now_ns,
                         self.config.liveness_heartbeat_ns)

    def _heartbeat_done(self, result: Any) -> None:
        self._heartbeat_in_flight = False
        now_ns = self.hlc.physical_now_ns()
        record = _liveness_record_in(result)
        if record is not None and record.node_id == self.node_id:
            self.liveness.learn(record)
        if isinstance(result, SpanliteError) and not isinstance(result, ConditionFailed):
            self._next_heartbeat_ns = now_ns + self.config.liveness_heartbeat_ns // 10
            log.warning("node %d: liveness heartbeat failed: %s", self.node_id, result.message)
        elif isinstance(result, ConditionFailed):
            self._next_heartbeat_ns = now_ns  # Our epoch was ended: heartbeat at the new one.
            log.warning("node %d: liveness epoch ended by another node; now %s", self.node_id, record)
        else:
            self._next_heartbeat_ns = now_ns + self.config.liveness_heartbeat_ns

    def _end_epoch(self, holder: int, epoch: int) -> None:
        """A range we lead has an epoch lease of `holder`, whose liveness expired: ask the meta
        range to end that epoch, so we may take the lease (ranges.liveness)."""
        if (holder, epoch) in self._epochs_ending or len(self._epochs_ending) >= MAX_EPOCHS_ENDING:
            return
        self._epochs_ending.add((holder, epoch))
        self.router.call(IncrementNodeEpoch(holder, epoch, self._new_op_id()), self.identity.meta_replicas,
                         lambda result: self._epoch_ended(holder, epoch, result), self.hlc.physical_now_ns(),
                         self.config.liveness_heartbeat_ns)

    def _epoch_ended(self, holder: int, epoch: int, result: Any) -> None:
        self._epochs_ending.discard((holder, epoch))
        record = _liveness_record_in(result)
        if record is not None and record.node_id == holder:
            self.liveness.learn(record, from_self=False)
        if not isinstance(result, SpanliteError):
            log.info("node %d: ended liveness epoch %d of node %d", self.node_id, epoch, holder)

    def _log_offset_drop(self, from_node: int, error: ClockOffsetError) -> None:
        """One error line per peer per OFFSET_LOG_INTERVAL_NS, with how many frames were
        dropped since: a node beyond max offset refuses every frame, many per second."""
        now_ns = self.hlc.physical_now_ns()
        dropped = self._offset_drops.get(from_node, 0) + 1
        if now_ns - self._offset_logged_ns.get(from_node, -OFFSET_LOG_INTERVAL_NS) < OFFSET_LOG_INTERVAL_NS:
            self._offset_drops[from_node] = dropped
            return
        self._offset_logged_ns[from_node], self._offset_drops[from_node] = now_ns, 0
        log.error("node %d: dropping frames from node %s (%d since the last report): %s",
                  self.node_id, from_node, dropped, error)

    def receive_peer_frame(self, from_node: int, frame: object) -> None:
        """A frame from a peer: `{"ts": [wall, logical], "m": [encoded messages]}`. Never raises."""
        if not isinstance(frame, dict) or not isinstance(frame.get("m"), list):
            log.error("node %d: dropping malformed frame from node %s", self.node_id, from_node)
            return
        # Clock probes and echoes carry physical times only: measure them even from a frame
        # whose timestamp is refused below, or a node beyond max offset never learns it.
        self._note_clock_fields(from_node, frame)
        try:
            self.hlc.update(Timestamp.decode(frame.get("ts")))
        except ClockOffsetError as e:
            self._log_offset_drop(from_node, e)
            return
        except ValueError as e:
            log.error("node %d: dropping frame from node %s with bad timestamp: %s", self.node_id, from_node, e)
            return
        self.last_heard_ns[from_node] = self.hlc.physical_now_ns()
        if "lv" in frame:
            self._learn_gossiped_liveness(from_node, frame["lv"])
        for raw in frame["m"]:
            self._step_message(from_node, raw)
        snapshot_asks = frame.get("ns")
        if isinstance(snapshot_asks, list):
            self._send_requested_snapshots(from_node, snapshot_asks)
        requests, responses = frame.get("rq"), frame.get("rs")
        if isinstance(requests, list):
            self._receive_internal_requests(from_node, requests)
        if isinstance(responses, list):
            for item in responses:
                if isinstance(item, list) and len(item) == 2:
                    self.router.on_response(from_node, item[0], item[1])

    def _note_clock_fields(self, from_node: int, frame: dict) -> None:
        probe, echo = frame.get("ck"), frame.get("ca")
        now_ns = self.hlc.physical_now_ns()
        if isinstance(probe, int) and not isinstance(probe, bool):
            self._clock_echoes[from_node] = [probe, now_ns]
            self._outbound.setdefault(from_node, [])  # Answer it in the next cycle's frame.
        if isinstance(echo, list) and len(echo) == 2 and all(isinstance(x, int) for x in echo):
            self.clock.echo_received(from_node, echo[0], echo[1], now_ns)

    def _learn_gossiped_liveness(self, from_node: int, raw: object) -> None:
        try:
            record = LivenessRecord.decode(raw)
        except (ValueError, TypeError, AssertionError) as e:
            log.error("node %d: ignoring malformed liveness record from node %s: %s", self.node_id, from_node, e)
            return
        if record.node_id == from_node:  # A node speaks only for itself.
            self.liveness.learn(record, from_self=False)

    def _step_message(self, from_node: int, raw: object) -> None:
        try:
            msg = decode_message(raw)
        except MessageDecodeError as e:
            log.error("node %d: dropping malformed message from node %s: %s", self.node_id, from_node, e)
            return
        replica = self.replicas.get(msg.group_id)
        if replica is None and isinstance(msg, InstallSnapshot):
            replica = self._replica_from_snapshot(msg)
        if replica is None:
            self._stash_early_message(from_node, msg)
            return
        replica.group.step(from_node, msg)
        self._mark_dirty(replica)

    def _replica_from_snapshot(self, msg: InstallSnapshot) -> Replica | None:
        """A range we should host but do not know: its split reached us only as a snapshot
        (we were down while it was split off). Create the replica, then let the snapshot fill it."""
        try:
            descriptor = RangeDescriptor.decode(msg.data["descriptor"])
        except (ValueError, TypeError, KeyError):
            log.error("node %d: snapshot for unknown group %d carries no valid descriptor", self.node_id, msg.group_id)
            return None
        if descriptor.range_id != msg.group_id or self.node_id not in descriptor.replicas:
            return None
        log.info("node %d: creating range %d from a snapshot", self.node_id, descriptor.range_id)
        replica = self._load_replica(descriptor.range_id, descriptor)
        self._reindex()
        return replica

    def _ask_for_snapshots(self) -> None:
        """Groups that kept messaging us without our hosting them: ask the sender (their
        leader, most likely) for a snapshot, which creates them here."""
        for group_id, stash in self._early_messages.items():
            first_tick, from_node, _ = stash[0]
            if self._ticks - first_tick >= SNAPSHOT_ASK_AFTER_TICKS:
                self._outbound_ns.setdefault(from_node, []).append(group_id)

    def _send_requested_snapshots(self, from_node: int, group_ids: list) -> None:
        for group_id in group_ids[:MAX_EARLY_GROUPS]:
            replica = self.replicas.get(group_id) if isinstance(group_id, int) else None
            if replica is None or not replica.group.is_leader or from_node not in replica.sm.descriptor.replicas:
                continue
            last = self._snapshot_sent_tick.get((group_id, from_node))
            if last is not None and self._ticks - last < SNAPSHOT_ASK_AFTER_TICKS:
                continue
            self._snapshot_sent_tick[(group_id, from_node)] = self._ticks
            replica.group.send_snapshot(from_node, replica.sm.applied_index, replica.sm.snapshot())
            self._mark_dirty(replica)

    def _stash_early_message(self, from_node: int, msg) -> None:
        """A message for a group we do not host yet: most likely the right half of a split
        that the sender applied a moment before us. Keep a few, and replay them when the
        split creates the group, so the new range elects its leader at once instead of
        after an election timeout. Bounded; everything else the sender retries anyway."""
        if msg.group_id in self._early_messages or len(self._early_messages) < MAX_EARLY_GROUPS:
            stash = self._early_messages.setdefault(msg.group_id, [])
            if len(stash) < MAX_EARLY_MESSAGES_PER_GROUP:
                stash.append((self._ticks, from_node, msg))

    def _replay_early_messages(self, replica: Replica) -> None:
        for stashed_tick, from_node, msg in self._early_messages.pop(replica.range_id, []):
            if self._ticks - stashed_tick <= EARLY_MESSAGE_TTL_TICKS:
                replica.group.step(from_node, msg)
        self._mark_dirty(replica)

    def receive_request(self, client: Any, request_id: int, request: Request) -> None:
        if isinstance(request, Status):
            self._respond(client, request_id, self.status())
            return
        if isinstance(request, NODE_ONLY_REQUESTS) and not isinstance(client, PeerClient):
            self._respond(client, request_id, BadRequest(
                f"{type(request).__name__} is sent only between nodes, never by a client"))
            return
        deadline = self.hlc.physical_now_ns() + self.config.replica.request_timeout_ns
        pending = PendingRequest(client, request_id, request, deadline)
        start, end = request.keys_touched()
        replica = self._replica_for(start)
        if replica is None:
            self._respond(client, request_id, RangeKeyMismatch(
                f"node {self.node_id} has no replica of the range holding {start!r}"))
            return
        if isinstance(request, SPANNING_REQUESTS):
            # Answered per range: the client continues at the answer's range_end.
            pending.request = dataclasses.replace(request, end=min(end, replica.sm.descriptor.end_key))
        replica.handle(pending)
        self._mark_dirty(replica)

    def _replica_for(self, key: bytes) -> Replica | None:
        i = bisect.bisect_right(self._starts, key) - 1
        if i < 0:
            return None
        replica = self._ordered[i]
        return replica if replica.sm.descriptor.contains(key) else None

    def _respond(self, client: Any, request_id: int, result: Any) -> None:
        if not isinstance(client, PeerClient):
            self._responses.append((client, request_id, result))
            return
        raw = {"err": result.encode()} if isinstance(result, SpanliteError) else {"ok": result}
        if client.node_id == self.node_id:
            self.router.on_response(self.node_id, request_id, raw)
        else:
            self._outbound_rs.setdefault(client.node_id, []).append([request_id, raw])

    # ------------------------------------------------------------------ internal requests

    def _send_internal(self, to_node: int, item: list) -> None:
        if to_node == self.node_id:
            self._local_rq.append(item)
        else:
            self._outbound_rq.setdefault(to_node, []).append(item)

    def _receive_internal_requests(self, from_node: int, items: list) -> None:
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)):
                log.error("node %d: dropping malformed internal request from node %s", self.node_id, from_node)
                continue
            call_id, raw = item
            client = PeerClient(from_node)
            try:
                request = decode_request(raw)
            except BadRequest as e:
                self._respond(client, call_id, e)
                continue
            if isinstance(request, (Status,)) or not hasattr(request, "keys_touched"):
                self._respond(client, call_id, BadRequest("not an internal request"))
                continue
            self.receive_request(client, call_id, request)

    def _drain_local_requests(self) -> bool:
        if not self._local_rq:
            return False
        items, self._local_rq = self._local_rq, []
        self._receive_internal_requests(self.node_id, items)
        return True

    # ------------------------------------------------------------------ splits

    def _start_split(self, replica: Replica, pending, key: bytes | None = None) -> None:
        """AdminSplit at the leaseholder (or an automatic split when `pending` is None):
        allocate an id, split in our log, update meta."""
        key = pending.request.key if pending is not None else key
        descriptor = replica.sm.descriptor
        error = _split_key_error(key, descriptor)
        task = SplitTask(pending, replica.range_id, key, descriptor,
                         attempts=pending.attempts if pending is not None else 0)
        if error is not None:
            self._finish_split(task, BadRequest(error))
            return
        self.router.call(Increment(keys.RANGE_ID_COUNTER_KEY, 1, self._new_op_id()), self.identity.meta_replicas,
                         lambda result: self._split_with_id(task, result),
                         self.hlc.physical_now_ns(), SPLIT_TIMEOUT_NS)

    def _split_with_id(self, task: "SplitTask", result: Any) -> None:
        if isinstance(result, SpanliteError):
            self._finish_split(task, result)
            return
        task.right_range_id = result["value"]
        replica = self.replicas.get(task.range_id)
        if replica is not None and replica.sm.descriptor != task.old and self._retry_split(task):
            return  # Another split of this range got in first.
        if replica is None or replica.sm.descriptor != task.old or not replica.propose_split(task.key, task.right_range_id):
            self._finish_split(task, NotLeaseholder(
                f"range {task.range_id} changed or lost its lease during the split; retry",
                leaseholder=None, leaseholder_address=None))
            return
        self._split_waiters[(task.range_id, task.right_range_id)] = task

    def _split_applied(self, replica: Replica, result: ApplyResult, value: object) -> None:
        """A Split applied here: create the right-hand replica; finish the task if ours."""
        right = result.new_range
        self._flush_pending_meta(replica)
        if right is not None and right.range_id not in self.replicas:
            new = self._load_replica(right.range_id)
            self._reindex()
            self._replay_early_messages(new)
            if replica.group.is_leader:
                new.group.campaign()  # The leaseholder of both halves should lead both.
            self._mark_dirty(new)
        command = commands.decode_command(value)
        task = self._split_waiters.pop((replica.range_id, command.right_range_id), None)
        if task is None:
            return
        if not result.ok and replica.sm.descriptor != task.old and self._retry_split(task):
            return  # A concurrent split changed the generation: start again from the new descriptor.
        if not result.ok:
            self._finish_split(task, ConditionFailed(
                f"split of range {task.range_id} rejected: {result.error}"))
            return
        task.left, task.right = replica.sm.descriptor, right
        # Done once meta holds the split: the MetaAck of the left half's generation applies.
        self._meta_waiters[(task.range_id, task.left.generation)] = task

    # ------------------------------------------------------------------ lease balance

    def _balance_leases(self, now_ns: int) -> None:
        """Spread leaseholders: if this node holds clearly more leases than the live node
        with the fewest, hand one range (lease and leadership) to that node."""
        now = self.hlc.now()
        live = [n for n in sorted(self.identity.nodes) if n == self.node_id or not self._suspect(n, now_ns)]
        counts = {n: 0 for n in live}
        mine = []
        for replica in self._ordered:
            holder = replica.leaseholder(now)
            if holder in counts:
                counts[holder] += 1
            if holder == self.node_id and replica.group.is_leader:
                mine.append(replica)
        for replica in mine:
            candidates = [n for n in replica.sm.descriptor.replicas if n in counts and n != self.node_id]
            if not candidates:
                continue
            target = min(candidates, key=lambda n: (counts[n], n))
            if counts[self.node_id] - counts[target] >= 2 and replica.transfer_lease(target):
                log.info("node %d: moving the lease of range %d to node %d (%d vs %d leases)",
                         self.node_id, replica.range_id, target, counts[self.node_id], counts[target])
                return  # One transfer per round: let the counts settle.

    # ------------------------------------------------------------------ automatic splits

    def _maybe_split_large_ranges(self) -> None:
        now = self.hlc.now()
        for replica in self._ordered:
            d = replica.sm.descriptor
            if d.range_id == META_RANGE_ID or replica.sm.size_bytes() <= self.config.split_threshold_bytes:
                continue
            if replica.leaseholder(now) != self.node_id or not replica.group.is_leader:
                continue
            if any(task.range_id == d.range_id for task in self._split_waiters.values()) or d.range_id in self._auto_splitting:
                continue
            key = replica.sm.split_key_near_middle()
            if key is None or _split_key_error(key, d) is not None:
                continue
            log.info("node %d: range %d is %d bytes, over the split threshold: splitting at %r",
                     self.node_id, d.range_id, replica.sm.size_bytes(), key)
            self._auto_splitting.add(d.range_id)
            self._start_split(replica, None, key)
            return  # One automatic split per round.

    # ------------------------------------------------------------------ meta repair

    def _verify_meta(self, now_ns: int) -> None:
        for replica in self._ordered:
            self._flush_pending_meta(replica)

    def _flush_pending_meta(self, replica: Replica) -> None:
        """As leaseholder: make the oldest split of this range that meta does not know yet
        known there (a conditional MetaSplit), then ack it in the range's own log. Runs again
        after any crash, on whichever node holds the lease: a split reaches meta eventually."""
        if replica.range_id in self._meta_flushing or not replica.group.is_leader:
            return
        pending = replica.sm.pending_meta
        if not pending or replica.leaseholder(self.hlc.now()) != self.node_id:
            return
        old, left, right = pending[0]
        self._meta_flushing.add(replica.range_id)
        self.router.call(MetaSplit(old, left, right, self._new_op_id()), self.identity.meta_replicas,
                         lambda result: self._meta_flushed(replica.range_id, old, left, result),
                         self.hlc.physical_now_ns(), SPLIT_TIMEOUT_NS)

    def _meta_flushed(self, range_id: int, old: RangeDescriptor, left: RangeDescriptor, result: Any) -> None:
        self._meta_flushing.discard(range_id)
        replica = self.replicas.get(range_id)
        if replica is None:
            return
        if isinstance(result, ConditionFailed):
            current = result.details.get("current")
            try:
                in_meta = decode_meta_value(current) if isinstance(current, bytes) else RangeDescriptor.decode(current)
            except (ValueError, TypeError, KeyError):
                return
            if in_meta.generation <= old.generation:
                return  # An ancestor's split is not in meta yet: retry on a later round.
            # Otherwise meta is past this update (it applied, then was superseded): ack it.
        elif isinstance(result, SpanliteError):
            return  # Retry on a later round.
        replica.propose_meta_ack(left.generation)

    def _meta_acked(self, replica: Replica) -> None:
        pending_generations = {left.generation for _, left, _ in replica.sm.pending_meta}
        done = [k for k in self._meta_waiters if k[0] == replica.range_id and k[1] not in pending_generations]
        for key in done:
            task = self._meta_waiters.pop(key)
            self._finish_split(task, {"left": task.left.encode(), "right": task.right.encode()})
        self._flush_pending_meta(replica)  # The next pending split, if any.

    def _retry_split(self, task: "SplitTask") -> bool:
        """Run a requested split again after a concurrent split of the same range changed its
        descriptor (the key may now be in the right half, or be a boundary). Bounded."""
        if task.pending is None or task.attempts >= SPLIT_ATTEMPTS_MAX:
            return False
        task.pending.attempts = task.attempts + 1
        replica = self.replicas.get(task.range_id)
        if replica is None:
            return False
        replica.handle(task.pending)  # Re-checks the key's range; a mismatch redirects the client.
        return True

    def _finish_split(self, task: "SplitTask", result: Any) -> None:
        self._auto_splitting.discard(task.range_id)
        if task.pending is not None:
            self._respond(task.pending.client, task.pending.request_id, result)
        elif isinstance(result, SpanliteError):
            log.warning("node %d: automatic split of range %d failed: %s", self.node_id, task.range_id, result.message)

    def _new_op_id(self) -> bytes:
        return self.rng.getrandbits(128).to_bytes(16, "big")  # Seeded: the simulator replays it.

    # ------------------------------------------------------------------ the cycle

    # ------------------------------------------------------------------ timers and recovery

    def _wake_at(self, physical_ns: int) -> None:
        heapq.heappush(self._wakeups, (physical_ns, 0))

    def next_wake_ns(self) -> int | None:
        """When the driver should call `process()` again even with no input (a commit-wait
        ends then), in physical ns; None when nothing is waiting."""
        return self._wakeups[0][0] if self._wakeups else None

    def _release_commit_waits(self) -> None:
        now_ns = self.hlc.physical_now_ns()
        if not self._wakeups or self._wakeups[0][0] > now_ns:
            return
        while self._wakeups and self._wakeups[0][0] <= now_ns:
            heapq.heappop(self._wakeups)
        for replica in self.replicas.values():
            if replica.commit_waits:
                replica.release_commit_waits(now_ns)
            if replica.unwaited and replica.queued:
                replica.serve_queued()  # Reads held back by a commit-wait that just ended.
                self._mark_dirty(replica)

    def _recover_txn(self, replica: Replica, txn_id: bytes, anchor: bytes) -> None:
        """Ask the anchor's range how txn_id was decided; it records an abort, once, if it
        was not (ranges.replica_txn). Then resolve the locks here accordingly."""
        home = self._replica_for(anchor)
        replicas = home.sm.descriptor.replicas if home is not None else self.identity.meta_replicas
        request = EndTxnRequest(txn_id, anchor, False, Timestamp(0, 0))

        def decided(result: Any) -> None:
            if isinstance(result, SpanliteError):
                replica.recovering.discard(txn_id)  # Try again on a later tick.
                return
            commit_ts = Timestamp.decode(result["commit_ts"]) if result.get("committed") else None
            log.info("node %d: recovered transaction %s at range %d: %s", self.node_id, txn_id.hex()[:8],
                     replica.range_id, "committed" if commit_ts else "aborted")
            replica.propose_recovery_resolve(txn_id, commit_ts)
            self._mark_dirty(replica)

        self.router.call(request, tuple(replicas), decided, self.hlc.physical_now_ns(), SPLIT_TIMEOUT_NS)

    def process(self) -> Output:
        """Persist, send, apply, advance; repeat while applying produced more work."""
        self._release_commit_waits()
        for _ in range(MAX_PROCESS_ROUNDS):
            if not self._process_round():
                break
        output = Output(self._take_outbound(), self._responses)
        self._responses = []
        return output

    def _process_round(self) -> bool:
        drained = self._drain_local_requests()
        candidates, self._dirty = list(self._dirty.values()), {}
        readies = [(r, r.group.ready()) for r in candidates if r.group.has_ready()]
        if not readies:
            return drained
        self._persist(readies)
        for replica, ready in readies:
            for to_node, msg in ready.messages:
                self._outbound.setdefault(to_node, []).append(encode_message(msg))
        for replica, ready in readies:
            self._apply(replica, ready)
        self._flush_applies()  # Before anything reads applied state (serving, compaction).
        for replica, ready in readies:
            replica.group.advance(ready)
            self._maybe_compact(replica)
            replica.serve_queued()
            if replica.group.has_ready():
                self._mark_dirty(replica)
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
        if self.accept_observer is not None:
            for replica, ready in readies:
                quorum = len(replica.sm.descriptor.replicas) // 2 + 1
                for slot, ballot, value in ready.accepted:
                    self.accept_observer(replica.range_id, quorum, slot, ballot, value)

    def _apply(self, replica: Replica, ready) -> None:
        if ready.snapshot is not None:
            self._flush_applies()
            index, data = ready.snapshot
            replica.sm.restore(index, data)
        for slot, value in ready.committed:
            if self.apply_observer is not None:
                self.apply_observer(replica.range_id, slot, value)
            if replica.range_id in self._apply_ranges or _is_split(value):
                self._flush_applies()  # This entry may read what the pending batch writes.
            result = replica.apply(slot, value)
            if result.kind == "split":
                self._flush_applies()  # The right-hand replica loads its state from the engine.
                self._split_applied(replica, result, value)
            elif result.kind == "meta_ack":
                self._meta_acked(replica)
        if ready.dropped_proposals:
            replica.proposals_dropped(ready.dropped_proposals)
        if ready.snapshot_requests:
            self._flush_applies()
        for to_node in ready.snapshot_requests:
            replica.group.send_snapshot(to_node, replica.sm.applied_index, replica.sm.snapshot())

    def _sink_apply(self, range_id: int, batch: list) -> None:
        self._apply_batch.extend(batch)
        self._apply_ranges.add(range_id)

    def _flush_applies(self) -> None:
        """One engine write for the applied entries of every group in this cycle (1,000 busy
        ranges apply ~1 entry each per cycle: one write instead of 1,000)."""
        if self._apply_batch:
            self.engine.write(self._apply_batch, sync=False)
            self._apply_batch = []
            self._apply_ranges = set()

    def _maybe_compact(self, replica: Replica) -> None:
        """Truncate the log behind the applied state. Safe unsynced: the engine loses only
        suffixes, and the applied state was written before the truncation."""
        cfg = self.config.replica
        applied = replica.sm.applied_index
        upto = applied - cfg.log_retain_entries
        if upto - replica.group.first_index >= cfg.log_compact_every:
            replica.group.compact(upto)

    def _take_outbound(self) -> dict[int, dict]:
        if not (self._outbound or self._outbound_rq or self._outbound_rs or self._outbound_ns):
            return {}
        ts = self.hlc.now().encode()
        own = self.liveness.own() if self._gossip_liveness else None
        probe = self.hlc.physical_now_ns() if self._clock_probe else None
        self._gossip_liveness = self._clock_probe = False
        echoes, self._clock_echoes = self._clock_echoes, {}
        frames: dict[int, dict] = {}
        for to in sorted(set(self._outbound) | set(self._outbound_rq) | set(self._outbound_rs) | set(self._outbound_ns)):
            frame = {"ts": ts, "m": self._outbound.get(to, [])}
            if own is not None:
                frame["lv"] = own.encode()
            if probe is not None:
                frame["ck"] = probe
            if to in echoes:
                frame["ca"] = echoes[to]
            if to in self._outbound_ns:
                frame["ns"] = self._outbound_ns[to]
            if to in self._outbound_rq:
                frame["rq"] = self._outbound_rq[to]
            if to in self._outbound_rs:
                frame["rs"] = self._outbound_rs[to]
            frames[to] = frame
        self._outbound, self._outbound_rq, self._outbound_rs, self._outbound_ns = {}, {}, {}, {}
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
            entry = {"node_id": node_id, "address": address, "live": live}
            sample = self.clock.samples.get(node_id)
            if sample is not None:
                entry["clock_offset_ms"] = round(sample.offset_ns / 1e6, 3)
            if node_id == self.node_id:
                entry["clock_ok"] = self.clock.serving
            nodes.append(entry)
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


@dataclass(frozen=True)
class PeerClient:
    """The 'client' of a request another node's Store sent us (answered in its `rs`)."""

    node_id: int


def _is_split(value: object) -> bool:
    return isinstance(value, list) and bool(value) and value[0] == commands.Split.TAG


def _liveness_record_in(result: Any) -> LivenessRecord | None:
    """The liveness record in a heartbeat/increment answer (or in its ConditionFailed)."""
    if isinstance(result, dict):
        raw = result.get("value")
    elif isinstance(result, ConditionFailed):
        raw = result.details.get("current")
    else:
        return None
    try:
        return None if raw is None else LivenessRecord.decode(raw)
    except (ValueError, TypeError, AssertionError):
        return None


@dataclass
class SplitTask:
    pending: Any
    range_id: int
    key: bytes
    old: RangeDescriptor
    right_range_id: int | None = None
    left: RangeDescriptor | None = None
    right: RangeDescriptor | None = None
    attempts: int = 0


def _split_key_error(key: bytes, descriptor: RangeDescriptor) -> str | None:
    try:
        keys.validate_split_key(key)
    except ValueError as e:
        return str(e)
    if key == descriptor.start_key:
        return f"{key!r} is already a range boundary (range {descriptor.range_id} starts there); nothing to split"
    if not descriptor.contains(key):
        return f"{key!r} is not in range {descriptor.range_id}"
    return None


