"""The deterministic simulator: the real Store (and under it the real Paxos cores, state
machines and MVCC) of 3 or 5 nodes, driven by a discrete-event loop in virtual time.

What is simulated, all from one seeded `random.Random`:
- the network: per-frame delay, drop, duplication, reordering (through random delays),
  and partitions of every shape (isolate one, minority/majority, bridge, one-way);
- the disks: each node's `MemoryEngine` keeps only fsynced writes across a crash (plus,
  at random, a prefix of the unsynced suffix, as a real disk may);
- the clocks: per-node physical clocks = virtual time + a skew that changes during the run,
  kept within ±max_offset/2 so any two clocks differ by at most max_offset;
- crashes and restarts of any number of nodes (a minority most of the time, sometimes all);
- clients that behave like `cluster.client`: redirects, retries with the same op_id,
  per-attempt timeouts; every operation is recorded in a Jepsen-style history.

A seed replays a run exactly: nothing here reads the real clock or iterates a hash-seeded
collection. The checkers live in `checkers.py`.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import cbor2

from clock.hlc import HybridLogicalClock
from cluster.sim.history import History
from paxos_groups.core import GroupConfig
from paxos_groups.engine import MemoryEngine
from ranges import keys
from ranges.api import (
    AdminSplit,
    AmbiguousResult,
    BadRequest,
    Delete,
    Get,
    NotLeaseholder,
    Put,
    SpanliteError,
    decode_request,
    encode_request,
)
from ranges.replica import ReplicaConfig
from ranges.store import Identity, Store, StoreConfig, bootstrap_store
from cluster.sim import elle
from cluster.sim.txn_workloads import BankChecker, TxnClient

MS = 1_000_000
SECOND = 1_000_000_000


@dataclass
class SimConfig:
    nodes: int = 3
    max_offset_ns: int = 20 * MS
    tick_ns: int = 50 * MS
    liveness_duration_ns: int = 3000 * MS
    fsync_ns: int = 300_000
    duration_ns: int = 12 * SECOND
    settle_ns: int = 8 * SECOND
    clients: int = 4
    keys: int = 5
    net_delay_min_ns: int = 200_000
    net_delay_max_ns: int = 4 * MS
    drop_rate: float = 0.02
    dup_rate: float = 0.02
    fault_interval_ns: int = 700 * MS
    op_timeout_ns: int = 4 * SECOND
    attempt_timeout_ns: int = 800 * MS
    bugs: frozenset[str] = frozenset()
    split_rate: float = 0.03
    split_threshold_bytes: int = 64 << 20
    # Transactional workload beside the register clients: "bank", "append" or "" (none).
    txn_workload: str = ""
    txn_clients: int = 3


class SimPhysicalClock:
    """A node's physical clock: virtual time plus the node's current skew."""

    def __init__(self, world: "World", node_id: int) -> None:
        self.world = world
        self.node_id = node_id

    def now_ns(self) -> int:
        return self.world.now_ns + self.world.skew_ns[self.node_id]


@dataclass
class SimNode:
    node_id: int
    engine: MemoryEngine
    store: Store | None = None
    inbox: list = field(default_factory=list)
    process_scheduled: bool = False
    incarnation: int = 0
    starting: bool = False


@dataclass
class ClientOp:
    op_id: int | None  # history id (None: not in the history, e.g. a split)
    request: Any
    deadline_ns: int
    maybe_applied: bool = False
    attempt: int = 0


class SimClient:
    """One simulated client process: one operation at a time, retried like cluster.client."""

    def __init__(self, world: "World", index: int) -> None:
        self.world = world
        self.index = index
        self.op: ClientOp | None = None
        self.target: int = 1 + index % world.config.nodes
        self.seq = 0
        self.attempts = 0
        self.final_keys: list[bytes] | None = None

    def start_next(self) -> None:
        world = self.world
        if self.final_keys is not None:
            if not self.final_keys:
                return
            request = Get(self.final_keys.pop(0))
        elif world.now_ns >= world.config.duration_ns:
            return
        else:
            request = self._random_request()
        history_id = None if isinstance(request, AdminSplit) else world.record_invoke(self.index, request)
        self.op = ClientOp(history_id, request, world.now_ns + world.config.op_timeout_ns)
        self._send_attempt()

    def _random_request(self):
        rng = self.world.rng
        key = b"k%d" % rng.randrange(self.world.config.keys)
        self.seq += 1
        op_id = b"c%d-%d" % (self.index, self.seq)
        roll = rng.random()
        if roll < self.world.config.split_rate:
            return AdminSplit(key + b"%d" % rng.randrange(10))
        if roll < 0.45:
            return Get(key)
        if roll < 0.9:
            return Put(key, b"v%d-%d" % (self.index, self.seq), op_id)
        return Delete(key, op_id)

    def _next_attempt(self, op: ClientOp) -> int:
        """Attempt ids are unique per client, so a late answer never matches a later op."""
        self.attempts += 1
        op.attempt = self.attempts
        return op.attempt

    def _send_attempt(self) -> None:
        op = self.op
        attempt = self._next_attempt(op)
        self.world.send_request(self, attempt, self.target, op.request)
        self.world.schedule(self.world.config.attempt_timeout_ns, lambda: self._attempt_timed_out(op, attempt))

    def _attempt_timed_out(self, op: ClientOp, attempt: int) -> None:
        if self.op is not op or op.attempt != attempt:
            return
        if isinstance(op.request, (Put, Delete, AdminSplit)):
            op.maybe_applied = True
        self._retry_elsewhere()

    def _retry_elsewhere(self, hint: int | None = None) -> None:
        world = self.world
        op = self.op
        if world.now_ns >= op.deadline_ns:
            self._finish(SpanliteError("gave up"))
            return
        self.target = hint if hint else 1 + world.rng.randrange(world.config.nodes)
        delay = 0 if hint else world.rng.randrange(5 * MS, 40 * MS)
        attempt = self._next_attempt(op)  # Invalidates the previous attempt's timeout.
        world.schedule(delay, lambda: self._resend(op, attempt))

    def _resend(self, op: ClientOp, attempt: int) -> None:
        if self.op is op and op.attempt == attempt:
            self._send_attempt()

    def receive(self, attempt: int, result: Any) -> None:
        op = self.op
        if op is None or op.attempt != attempt:
            return  # A late answer to an attempt we already gave up on.
        if not isinstance(result, SpanliteError):
            self._finish(result)
            return
        if isinstance(result, AmbiguousResult):
            op.maybe_applied = True
        if isinstance(result, BadRequest) or not result.retryable:
            self._finish(result)
            return
        hint = result.details.get("leaseholder") if isinstance(result, NotLeaseholder) else None
        self._retry_elsewhere(hint)

    def _finish(self, result: Any) -> None:
        op = self.op
        self.op = None
        if op.op_id is not None:
            self.world.record_complete(self.index, op, result)
        elif not isinstance(result, SpanliteError):
            self.world.splits_done += 1
        self.world.schedule(self.world.rng.randrange(1, 20 * MS), self.start_next)


class World:
    def __init__(self, seed: int, config: SimConfig, observers: list | None = None) -> None:
        self.seed = seed
        self.config = config
        self.rng = random.Random(seed)
        self.now_ns = 0
        self._queue: list = []
        self._seq = 0
        self.skew_ns: dict[int, int] = {i: 0 for i in range(1, config.nodes + 1)}
        self._wake_at: dict[int, tuple] = {}
        self.blocked: set[tuple[int, int]] = set()
        self.history = History()
        self.observers = observers or []
        self.nodes: dict[int, SimNode] = {}
        self.clients: list[SimClient] = []
        self.trace: list[str] = []
        self.faults_injected: dict[str, int] = {}
        self.splits_done = 0
        self.txn_clients: list = []
        self.txn_history: list = []  # cluster.sim.elle.Txn, for the append workload
        self.bank = BankChecker()
        self._attempt_ids = 0
        self._append_values = 0
        self._bootstrap()

    # ------------------------------------------------------------------ events

    def schedule(self, delay_ns: int, action: Callable[[], None]) -> None:
        assert delay_ns >= 0, "events cannot be scheduled in the past"
        self._seq += 1
        heapq.heappush(self._queue, (self.now_ns + delay_ns, self._seq, action))

    def run_until(self, end_ns: int) -> None:
        while self._queue and self._queue[0][0] <= end_ns:
            when, _, action = heapq.heappop(self._queue)
            self.now_ns = when
            action()
            for observer in self.observers:
                observer.after_event(self)
        self.now_ns = max(self.now_ns, end_ns)

    # ------------------------------------------------------------------ nodes

    def _bootstrap(self) -> None:
        n = self.config.nodes
        identity_nodes = {i: f"sim-node-{i}:0" for i in range(1, n + 1)}
        replicas = tuple(range(1, n + 1))
        for node_id in range(1, n + 1):
            engine = MemoryEngine()
            bootstrap_store(engine, Identity(f"sim-{self.seed}", node_id, identity_nodes), replicas)
            self.nodes[node_id] = SimNode(node_id, engine)
            self._start_store(node_id)
            self.schedule(self.rng.randrange(self.config.tick_ns), lambda i=node_id: self._tick(i))

    def store_config(self) -> StoreConfig:
        return StoreConfig(group=GroupConfig(), replica=ReplicaConfig(),
                           split_threshold_bytes=self.config.split_threshold_bytes,
                           liveness_duration_ns=self.config.liveness_duration_ns,
                           liveness_heartbeat_ns=self.config.liveness_duration_ns // 3)

    def _start_store(self, node_id: int) -> None:
        node = self.nodes[node_id]
        engine = node.engine
        raw = engine.get(keys.hlc_key())
        high_water = 0 if raw is None else int.from_bytes(raw, "big")

        def persist(wall_ns: int, engine=engine) -> None:
            engine.write([(keys.hlc_key(), wall_ns.to_bytes(8, "big"))], sync=True)

        hlc = HybridLogicalClock(SimPhysicalClock(self, node_id), self.config.max_offset_ns,
                                 high_water_ns=high_water, persist_high_water=persist,
                                 high_water_window_ns=100 * MS)
        rng = random.Random(self.rng.getrandbits(64))
        node.incarnation += 1
        node.starting = True
        # As cluster/node.py does: wait until the physical clock passes the persisted HLC
        # high-water mark before serving, or peers reject our timestamps as too far ahead.
        lead_ns = hlc.restart_floor_lead_ns()
        self.schedule(lead_ns, lambda: self._serve(node_id, node.incarnation, hlc, rng))

    def _serve(self, node_id: int, incarnation: int, hlc: HybridLogicalClock, rng: random.Random) -> None:
        node = self.nodes[node_id]
        if node.incarnation != incarnation or not node.starting:
            return  # Crashed again while starting.
        node.starting = False
        node.store = Store(node.engine, hlc, self.store_config(), rng, self.config.bugs)
        for observer in self.observers:
            observer.store_started(self, node_id, node.store)
        self._schedule_process(node_id)

    def crash(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.store is None and not node.starting:
            return
        node.store = None
        node.starting = False
        node.incarnation += 1
        node.process_scheduled = False
        node.inbox.clear()
        keep = self.rng.randrange(node.engine.pending_batches + 1)
        node.engine.crash(keep_pending_batches=keep)
        self._count("crash")
        self.trace.append(f"{self.now_ns} crash {node_id} keep={keep}")

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.store is not None or node.starting:
            return
        self._start_store(node_id)
        self.trace.append(f"{self.now_ns} restart {node_id}")

    def live_nodes(self) -> list[int]:
        return [i for i, node in sorted(self.nodes.items()) if node.store is not None]

    def _tick(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.store is not None:
            node.inbox.append(("tick",))
            self._schedule_process(node_id)
        self.schedule(self.config.tick_ns, lambda: self._tick(node_id))

    def _schedule_process(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.process_scheduled:
            return
        node.process_scheduled = True
        incarnation = node.incarnation
        self.schedule(self.config.fsync_ns, lambda: self._process(node_id, incarnation))

    def _process(self, node_id: int, incarnation: int) -> None:
        node = self.nodes[node_id]
        node.process_scheduled = False
        if node.store is None or node.incarnation != incarnation:
            return
        store = node.store
        events, node.inbox = node.inbox, []
        ticked = False
        for event in events:
            if event[0] == "tick":
                if not ticked:
                    store.tick()
                    ticked = True
            elif event[0] == "peer":
                store.receive_peer_frame(event[1], event[2])
            else:
                store.receive_request(event[1], event[2], event[3])
        output = store.process()
        for to_node, frame in sorted(output.peer_frames.items()):
            self._send_frame(node_id, to_node, frame)
        for client, attempt, result in output.responses:
            self._send_response(node_id, client, attempt, result)
        self._schedule_wake(node_id, incarnation)

    def _schedule_wake(self, node_id: int, incarnation: int) -> None:
        """The Store asked to run again at a physical time (a commit-wait ends)."""
        store = self.nodes[node_id].store
        wake_ns = store.next_wake_ns()
        if wake_ns is None or self._wake_at.get(node_id, (None,))[0] == wake_ns:
            return
        self._wake_at[node_id] = (wake_ns,)
        delay = max(0, wake_ns - store.hlc.physical_now_ns())
        self.schedule(delay, lambda: self._schedule_process(node_id) if self.nodes[node_id].incarnation == incarnation else None)

    # ------------------------------------------------------------------ network

    def _delay(self) -> int:
        return self.rng.randrange(self.config.net_delay_min_ns, self.config.net_delay_max_ns)

    def _send_frame(self, from_node: int, to_node: int, frame: dict) -> None:
        if (from_node, to_node) in self.blocked or self.rng.random() < self.config.drop_rate:
            return
        wire = cbor2.dumps(frame)  # Frames cross the wire encoded, as on TCP.
        copies = 2 if self.rng.random() < self.config.dup_rate else 1
        for _ in range(copies):
            self.schedule(self._delay(), lambda: self._deliver_frame(from_node, to_node, wire))

    def _deliver_frame(self, from_node: int, to_node: int, wire: bytes) -> None:
        node = self.nodes[to_node]
        if node.store is None:
            return
        node.inbox.append(("peer", from_node, cbor2.loads(wire)))
        self._schedule_process(to_node)

    def send_request(self, client: SimClient, attempt: int, node_id: int, request) -> None:
        wire = cbor2.dumps(encode_request(request))

        def deliver() -> None:
            node = self.nodes[node_id]
            if node.store is None:
                return  # Connection refused: the client's attempt timeout retries.
            node.inbox.append(("req", client, attempt, decode_request(cbor2.loads(wire))))
            self._schedule_process(node_id)

        self.schedule(self._delay(), deliver)

    def _send_response(self, node_id: int, client: SimClient, attempt: int, result: Any) -> None:
        if isinstance(result, SpanliteError):
            wire = cbor2.dumps({"err": result.encode()})
        else:
            wire = cbor2.dumps({"ok": result})

        def deliver() -> None:
            frame = cbor2.loads(wire)
            if "err" in frame:
                from ranges.api import decode_error

                client.receive(attempt, decode_error(frame["err"]))
            else:
                client.receive(attempt, frame["ok"])

        self.schedule(self._delay(), deliver)

    # ------------------------------------------------------------------ history

    def record_invoke(self, process: int, request) -> int:
        if isinstance(request, Get):
            return self.history.invoke(process, "get", request.key, None, self.now_ns)
        if isinstance(request, Put):
            return self.history.invoke(process, "put", request.key, request.value, self.now_ns)
        return self.history.invoke(process, "delete", request.key, None, self.now_ns)

    def record_complete(self, process: int, op: ClientOp, result: Any) -> None:
        if not isinstance(result, SpanliteError):
            value = result.get("value") if isinstance(op.request, Get) else None
            self.history.complete(op.op_id, "ok", value=value, time=self.now_ns)
        elif isinstance(op.request, Get) or not op.maybe_applied:
            self.history.complete(op.op_id, "fail", time=self.now_ns)
        else:
            self.history.complete(op.op_id, "info", time=self.now_ns)

    def _count(self, fault: str) -> None:
        self.faults_injected[fault] = self.faults_injected.get(fault, 0) + 1

    # ------------------------------------------------------------------ the run

    def start_clients(self) -> None:
        self.clients = [SimClient(self, i) for i in range(self.config.clients)]
        for client in self.clients:
            self.schedule(self.rng.randrange(50 * MS, 300 * MS), client.start_next)
        if self.config.txn_workload:
            first = 100  # process ids of transactional clients, apart from the register clients'
            self.txn_clients = [TxnClient(self, first + i, self.config.txn_workload)
                                for i in range(self.config.txn_clients)]
            for client in self.txn_clients:
                self.schedule(self.rng.randrange(50 * MS, 300 * MS), client.start_next)

    def next_attempt_id(self) -> int:
        self._attempt_ids += 1
        return self._attempt_ids

    def next_append_value(self) -> int:
        self._append_values += 1
        return self._append_values

    def record_txn(self, process: int, ops: list, status: str, invoke_ns: int) -> None:
        complete = None if status == "info" else self.now_ns
        self.txn_history.append(elle.Txn(len(self.txn_history) + 1, process, ops, status, invoke_ns, complete))

    def start_final_reads(self) -> None:
        """After healing: one client reads every key, which checks no acknowledged write was lost."""
        reader = SimClient(self, len(self.clients))
        reader.final_keys = [b"k%d" % i for i in range(self.config.keys)]
        self.clients.append(reader)
        reader.start_next()
        if self.config.txn_workload:
            final = TxnClient(self, 99, self.config.txn_workload)
            final.final = True
            self.txn_clients.append(final)
            final.start_next()
