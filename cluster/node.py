"""The node process: a trio driver around the sans-I/O Store.

One task loop owns the Store. Everything else (peer frames from the transport, client
requests, ticks) reaches it through one bounded inbox channel; the loop drains what is
there, feeds it to the Store, runs `Store.process()` once (persist -> send -> apply) and
hands the output to the transport and to the client connections. Batching falls out of
this: every event that arrived while the previous cycle ran shares the next fsync.

A node with an empty store waits for `spanlite init` (on itself, or a Bootstrap request
from the node being initialized) before it starts its Store.

Chaos testing (`spanlite chaos`, cluster/chaos/): a node started with `--enable-chaos-admin`
accepts `ChaosDropPeers` (a partition: drop peer frames to and from these nodes) and
`ChaosClockOffset` (skew its physical clock) from clients; any other node refuses them.
Under the planted bug `ack-before-fsync` the Store's writes are held in this process's
memory for a while before they reach the engine (`HeldWritesEngine`), so a kill -9 loses
acknowledged writes as the bug intends (the OS would otherwise keep unsynced writes).
"""

from __future__ import annotations

import bisect
import collections
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import trio

from clock.hlc import HybridLogicalClock
from clock.physical import OffsetClock, PhysicalClock, SystemClock
from clock.settings import DEFAULT_MAX_OFFSET_NS
from cluster import transport
from paxos_groups.engine import Engine
from ranges import keys
from ranges.api import (
    CHAOS_ADMIN_REQUESTS,
    AlreadyInitialized,
    BadRequest,
    Bootstrap,
    ChaosClockOffset,
    ChaosDropPeers,
    Init,
    NotInitialized,
    SpanliteError,
    Status,
    Unavailable,
    decode_error,
    decode_request,
    encode_request,
)
from ranges.store import Identity, Store, StoreConfig, bootstrap_store, load_identity

log = logging.getLogger("spanlite.node")

INBOX_CAPACITY = 100_000
MAX_EVENTS_PER_CYCLE = 20_000
CLIENT_OUTBOX_CAPACITY = 10_000
DEFAULT_TICK_NS = 50_000_000
REPLICATION_FACTOR = 3
HLC_HIGH_WATER_WINDOW_NS = 100_000_000
SYNC_PIPELINE_DEPTH_DEFAULT = 0
SYNC_PIPELINE_DEPTH_MAX = 1024


@dataclass
class NodeConfig:
    listen: str = "127.0.0.1:26257"
    advertise: str | None = None
    join: list[str] = field(default_factory=list)
    max_offset_ns: int = DEFAULT_MAX_OFFSET_NS
    tick_ns: int = DEFAULT_TICK_NS
    store: StoreConfig = field(default_factory=StoreConfig)
    bugs: frozenset[str] = frozenset()
    seed: int | None = None
    # fsync each cycle's batch in a worker thread, holding the cycle's output until it is
    # durable (`_SyncPipeline`), instead of blocking the event loop in the engine write.
    # Off by default: measured on the 2-core benchmark machine (BENCHMARKS.md) it costs
    # ~12% more CPU per operation on the leaseholder (thread hand-offs, smaller batches)
    # and lowers YCSB-A throughput by ~9% without improving p99 latency there. It pays
    # where the event loop, not the CPU, is the bottleneck (more cores, slower disks).
    defer_syncs: bool = False
    # How many more cycles the loop may run while earlier outputs wait for their sync.
    sync_pipeline_depth: int = SYNC_PIPELINE_DEPTH_DEFAULT
    # Accept the chaos tool's fault-injection requests (partitions, clock skew). Never in
    # production: any client could partition the node or break its clock.
    chaos_admin: bool = False


class _ClientSession:
    """One client connection: responses are queued to a sender task, never awaited by the loop.

    The sender writes every response queued since it last woke with one `send_all`: a loop
    cycle that answers many requests of one client costs one syscall, not one per response.
    """

    def __init__(self, conn) -> None:
        self.conn = conn
        # Invariant: len(outbox) <= CLIENT_OUTBOX_CAPACITY (beyond it the session closes).
        self.outbox: list[dict] = []
        self.wakeup = trio.Event()
        self.closed = False

    def deliver(self, request_id: int, result: Any) -> None:
        if self.closed:
            return
        if isinstance(result, SpanliteError):
            frame = {"id": request_id, "err": result.encode()}
        else:
            frame = {"id": request_id, "ok": result}
        if len(self.outbox) >= CLIENT_OUTBOX_CAPACITY:
            log.error("client is not reading its responses; closing its connection")
            self.close()
            return
        self.outbox.append(frame)
        self.wakeup.set()

    def close(self) -> None:
        self.closed = True
        self.outbox = []
        self.wakeup.set()

    async def send_queued(self) -> None:
        """Send queued responses until the session closes (then return)."""
        while not self.closed:
            if not self.outbox:
                self.wakeup = trio.Event()
                await self.wakeup.wait()
                continue
            frames, self.outbox = self.outbox, []
            await self.conn.send_many(frames)


class _SyncPipeline:
    """Group commit with the fsync off the event loop (for engines that can defer syncs).

    The engine writes each cycle's synced batch to its WAL without syncing and counts the
    request (`RocksEngine.defer_syncs`). Every cycle's output (peer frames, client
    responses) is held here, tagged with `syncs_requested` as of the end of its cycle, and
    released - in cycle order - only once a WAL sync that started after that cycle's writes
    has returned. One sync is in flight at a time, in a worker thread (it releases the GIL):
    meanwhile the transport's tasks go on reading, decoding and sending, and the loop may
    run up to `depth` more cycles (the next sync covers all of them). Depth 0 keeps one
    cycle per sync, so batches stay as large as with a blocking fsync; every cycle more
    per sync costs CPU (smaller batches) and buys latency.

    Why this keeps the durability rule (nothing leaves before the state it depends on is on
    disk): every message and acknowledgement a cycle produces leaves through its output, and
    is held until all writes made up to the end of that cycle are durable, including writes
    of earlier cycles (the WAL is sequential and outputs leave in order). State a later cycle
    builds on an earlier cycle's not-yet-durable writes is never visible outside the node
    before those writes are durable either, since its output waits for a later sync still.
    The HLC's high-water mark is written the same way: the timestamps it covers leave the
    node only through held outputs, and MVCC versions stamped with them follow it in the WAL.
    """

    def __init__(self, engine, release, depth: int = 0) -> None:
        assert engine.defers_syncs, "the sync pipeline needs an engine in deferred-sync mode"
        assert 0 <= depth <= SYNC_PIPELINE_DEPTH_MAX, f"sync pipeline depth out of range: {depth}"
        self.engine = engine
        self.release = release
        # Invariant (between cycles): len(held) <= depth + 1.
        self.depth = depth
        # (syncs_requested at the end of the cycle, that cycle's output), in cycle order.
        self.held: collections.deque = collections.deque()
        self.wakeup = trio.Event()
        self.drained = trio.Event()
        self.syncs = 0

    def submit(self, output) -> None:
        if not output.peer_frames and not output.responses:
            return
        needed = self.engine.syncs_requested
        if not self.held and needed <= self.engine.syncs_durable:
            self.release(output)  # depends on nothing that is not durable yet
            return
        self.held.append((needed, output))
        self.wakeup.set()

    @property
    def full(self) -> bool:
        """The loop must not start another cycle yet (more than `depth` outputs held)."""
        return len(self.held) > self.depth

    async def wait_not_full(self) -> None:
        while self.full:
            self.drained = trio.Event()
            await self.drained.wait()

    async def run(self) -> None:
        engine = self.engine
        while True:
            if not self.held:
                self.wakeup = trio.Event()
                await self.wakeup.wait()
                continue
            target = engine.syncs_requested
            if target > engine.syncs_durable:
                if not await trio.to_thread.run_sync(engine.sync_wal):
                    return  # the engine was closed under us (the node is being killed)
                engine.mark_durable(target)
                self.syncs += 1
            durable = engine.syncs_durable
            while self.held and self.held[0][0] <= durable:
                self.release(self.held.popleft()[1])
            self.drained.set()


class Node:
    def __init__(self, engine: Engine, config: NodeConfig, physical: PhysicalClock | None = None) -> None:
        self.engine = engine
        self.config = config
        # An OffsetClock over the real one, so skew can be injected at runtime (tests, chaos).
        self.physical = physical or OffsetClock(SystemClock(), 0)
        self.listen_host, self.listen_port = transport.parse_address(config.listen, allow_port_zero=True)
        self.store: Store | None = None
        self.peers: transport.PeerTransport | None = None
        self.listener: transport.Listener | None = None
        self._inbox_send, self._inbox_receive = trio.open_memory_channel(INBOX_CAPACITY)
        self._initialized = trio.Event()
        self._init_lock = trio.Lock()
        self.inbox_drops = 0
        self._wake_at_ns: int | None = None  # physical ns the Store asked to be woken at
        self._wake_changed = trio.Event()
        self.bound_port: int | None = None
        self._message_filter = None
        self._sync_pipeline: _SyncPipeline | None = None

    @property
    def identity(self) -> Identity | None:
        return load_identity(self.engine)

    @property
    def advertise(self) -> str:
        if self.config.advertise:
            return self.config.advertise
        return f"{self.listen_host}:{self.bound_port or self.listen_port}"

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        identity = self.identity
        self.listener = transport.Listener(
            cluster_id=identity.cluster_id if identity else None,
            node_id=identity.node_id if identity else None,
            handler=self,
        )
        async with trio.open_nursery() as nursery:
            self.bound_port = await nursery.start(self.listener.serve, self.listen_host, self.listen_port)
            if identity is not None:
                nursery.start_soon(self._start_store, nursery, identity)
            else:
                log.info("node at %s has an empty store: waiting for `spanlite init`", self.advertise)
                nursery.start_soon(self._start_when_initialized, nursery)
            task_status.started(self.bound_port)

    async def _start_when_initialized(self, nursery: trio.Nursery) -> None:
        await self._initialized.wait()
        identity = self.identity
        assert identity is not None, "initialized without an identity"
        await self._start_store(nursery, identity)

    async def _start_store(self, nursery: trio.Nursery, identity: Identity) -> None:
        hlc = HybridLogicalClock(
            self.physical, self.config.max_offset_ns,
            high_water_ns=self._load_high_water(), persist_high_water=self._persist_high_water,
            high_water_window_ns=HLC_HIGH_WATER_WINDOW_NS)
        # After a restart the HLC starts at the persisted high-water mark, which may be ahead
        # of the physical clock; peers would reject our messages as too far ahead. Wait it
        # out before serving, as CockroachDB does.
        await trio.sleep(hlc.restart_floor_lead_ns() / 1e9)
        seed = self.config.seed if self.config.seed is not None else random.SystemRandom().getrandbits(64)
        store_engine = self.engine
        if "ack-before-fsync" in self.config.bugs:
            store_engine = HeldWritesEngine(self.engine, time.monotonic_ns)  # not the skewable clock
            nursery.start_soon(_flush_held_writes, store_engine)
        self.store = Store(store_engine, hlc, self.config.store, random.Random(seed), self.config.bugs)
        self.listener.cluster_id = identity.cluster_id
        self.listener.node_id = identity.node_id
        self.listener.is_known_peer = lambda node_id: node_id in identity.nodes
        self.peers = transport.PeerTransport(identity.node_id, identity.cluster_id, dict(identity.nodes))
        self.set_message_filter(self._message_filter)
        nursery.start_soon(self.peers.run)
        if self.config.defer_syncs and hasattr(store_engine, "defer_syncs"):
            self.engine.defer_syncs()
            self._sync_pipeline = _SyncPipeline(self.engine, self._release_output, self.config.sync_pipeline_depth)
            nursery.start_soon(self._sync_pipeline.run)
        nursery.start_soon(self._ticker)
        nursery.start_soon(self._waker)
        nursery.start_soon(self._loop)
        log.info("node %d serving at %s (cluster %s)", identity.node_id, self.advertise, identity.cluster_id)
        self._initialized.set()

    def _load_high_water(self) -> int:
        raw = self.engine.get(keys.hlc_key())
        return 0 if raw is None else int.from_bytes(raw, "big")

    def _persist_high_water(self, wall_ns: int) -> None:
        self.engine.write([(keys.hlc_key(), wall_ns.to_bytes(8, "big"))], sync=True)

    def notify_initialized(self) -> None:
        """The store was bootstrapped by someone else (the embedded cluster): start serving."""
        assert self.identity is not None, "notify_initialized before the store was bootstrapped"
        self._initialized.set()

    def set_message_filter(self, allowed) -> None:
        """Fault injection: `allowed(from_node, to_node) -> bool` decides every peer frame."""
        self._message_filter = allowed
        if self.peers is not None:
            self.peers.filter = allowed
        if self.listener is not None:
            self.listener.filter = allowed

    # ------------------------------------------------------------------ the loop

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.config.tick_ns / 1e9)
            self._enqueue(("tick",))

    async def _waker(self) -> None:
        """Runs a cycle when the Store asked to be woken (a commit-wait ends): ticks alone
        (50 ms) would add up to a tick to every commit's latency."""
        while True:
            await self._wake_changed.wait()
            self._wake_changed = trio.Event()
            while self._wake_at_ns is not None:
                delay_s = (self._wake_at_ns - self.store.hlc.physical_now_ns()) / 1e9
                with trio.move_on_after(max(0.0, delay_s)):
                    await self._wake_changed.wait()  # an earlier wake-up replaces this one
                if self._wake_changed.is_set():
                    self._wake_changed = trio.Event()
                    continue
                self._wake_at_ns = None
                self._enqueue(("wake",))

    def _schedule_wake(self) -> None:
        wake_ns = self.store.next_wake_ns()
        if wake_ns is not None and (self._wake_at_ns is None or wake_ns < self._wake_at_ns):
            self._wake_at_ns = wake_ns
            self._wake_changed.set()

    def _enqueue(self, event: tuple) -> None:
        try:
            self._inbox_send.send_nowait(event)
        except trio.WouldBlock:
            self.inbox_drops += 1

    async def _loop(self) -> None:
        store = self.store
        assert store is not None
        while True:
            events = [await self._inbox_receive.receive()]
            while len(events) < MAX_EVENTS_PER_CYCLE:
                try:
                    events.append(self._inbox_receive.receive_nowait())
                except trio.WouldBlock:
                    break
            ticked = False
            for event in events:
                if event[0] == "tick":
                    if not ticked:  # Coalesce ticks that piled up behind a slow cycle.
                        store.tick()
                        ticked = True
                elif event[0] == "peer":
                    store.receive_peer_frame(event[1], event[2])
                elif event[0] == "wake":
                    pass  # process() below releases the commit-waits that are due
                else:
                    _, session, request_id, request = event
                    store.receive_request(session, request_id, request)
            output = store.process()
            self._schedule_wake()
            pipeline = self._sync_pipeline
            if pipeline is None:
                self._release_output(output)
            else:
                pipeline.submit(output)
                if pipeline.full:
                    await pipeline.wait_not_full()
            await trio.sleep(0)

    def _release_output(self, output) -> None:
        """Hand a cycle's output to the transport and the client sessions (after its sync)."""
        for to_node, frame in output.peer_frames.items():
            self.peers.send(to_node, frame)
        for session, request_id, result in output.responses:
            session.deliver(request_id, result)

    # ------------------------------------------------------------------ transport handler

    def peer_frame(self, from_node: int, frame: object) -> None:
        if self.store is not None:
            self._enqueue(("peer", from_node, frame))

    async def client_connection(self, conn) -> None:
        session = _ClientSession(conn)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._client_sender, session, nursery.cancel_scope)
            try:
                await self._client_reader(session, nursery)
            finally:
                session.close()
                nursery.cancel_scope.cancel()

    async def _client_sender(self, session: _ClientSession, connection_scope: trio.CancelScope) -> None:
        await session.send_queued()
        # The session closed (the client stopped reading): end the connection, reader included.
        connection_scope.cancel()

    async def _client_reader(self, session: _ClientSession, nursery: trio.Nursery) -> None:
        while not session.closed:
            frame = await session.conn.receive()
            request_id = frame.get("id") if isinstance(frame, dict) else None
            if not isinstance(request_id, int):
                session.deliver(-1, BadRequest("a request frame is {'id': int, 'req': [...]}"))
                continue
            try:
                request = decode_request(frame.get("req"))
            except BadRequest as e:
                session.deliver(request_id, e)
                continue
            if isinstance(request, (Init, Bootstrap)):
                nursery.start_soon(self._admin_request, session, request_id, request)
            elif isinstance(request, CHAOS_ADMIN_REQUESTS):
                session.deliver(request_id, self._chaos_admin(request))
            elif self.store is None:
                session.deliver(request_id, NotInitialized(
                    f"node at {self.advertise} is not part of a cluster yet: run `spanlite init --host {self.advertise}`"))
            else:
                self._enqueue(("req", session, request_id, request))

    async def _admin_request(self, session: _ClientSession, request_id: int, request) -> None:
        try:
            if isinstance(request, Init):
                result = await self._init_cluster()
            else:
                result = await self._accept_bootstrap(request)
        except SpanliteError as e:
            session.deliver(request_id, e)
        else:
            session.deliver(request_id, result)

    # ------------------------------------------------------------------ chaos admin

    def _chaos_admin(self, request) -> dict | SpanliteError:
        """Fault injection for `spanlite chaos` (only with --enable-chaos-admin)."""
        if not self.config.chaos_admin:
            return BadRequest(f"{type(request).__name__} is a fault-injection request of the chaos tool; node at "
                              f"{self.advertise} refuses it: start the node with --enable-chaos-admin (tests only)")
        if isinstance(request, ChaosClockOffset):
            assert isinstance(self.physical, OffsetClock), "clock skew needs the node's OffsetClock"
            previous = self.physical.offset_ns
            self.physical.offset_ns = request.offset_ns
            log.warning("chaos: physical clock offset set to %+.1f ms (was %+.1f ms)",
                        request.offset_ns / 1e6, previous / 1e6)
            return {"offset_ns": request.offset_ns, "previous_ns": previous}
        assert isinstance(request, ChaosDropPeers), f"unknown chaos request {request!r}"
        dropped = frozenset(request.peers)
        self.set_message_filter(_drop_filter(dropped) if dropped else None)
        log.warning("chaos: dropping peer frames to and from nodes %s", sorted(dropped) or "none (healed)")
        return {"dropped": sorted(dropped)}

    # ------------------------------------------------------------------ bootstrap

    async def _init_cluster(self) -> dict:
        async with self._init_lock:
            identity = self.identity
            if identity is not None:
                raise AlreadyInitialized(
                    f"the cluster is already initialized (cluster id {identity.cluster_id}); nothing to do")
            addresses = [self.advertise] + [a for a in self.config.join if a != self.advertise]
            addresses = list(dict.fromkeys(addresses))
            nodes = {i + 1: address for i, address in enumerate(addresses)}
            replicas = tuple(sorted(nodes))[:REPLICATION_FACTOR]
            cluster_id = str(uuid.uuid4())
            for node_id, address in nodes.items():
                if node_id != 1:
                    await _call(address, Status(), expect_not_initialized=True)
            for node_id, address in nodes.items():
                if node_id != 1:
                    await _call(address, Bootstrap(cluster_id, node_id, nodes, replicas))
            bootstrap_store(self.engine, Identity(cluster_id, 1, nodes), replicas)
            self._initialized.set()
            return {"cluster_id": cluster_id, "nodes": nodes}

    async def _accept_bootstrap(self, request: Bootstrap) -> dict:
        async with self._init_lock:
            identity = self.identity
            if identity is not None:
                if identity.cluster_id == request.cluster_id and identity.node_id == request.node_id:
                    return {"cluster_id": identity.cluster_id}
                raise AlreadyInitialized(
                    f"node at {self.advertise} already belongs to cluster {identity.cluster_id} "
                    f"as node {identity.node_id}; use an empty --store to join a new cluster")
            bootstrap_store(self.engine, Identity(request.cluster_id, request.node_id, request.nodes),
                            request.replicas)
            self._initialized.set()
            return {"cluster_id": request.cluster_id}


def _drop_filter(dropped: frozenset[int]):
    """A message filter cutting this node off from `dropped`, both directions: the transport
    asks it with (from, to) for frames we send and frames we receive, one end is us."""

    def allowed(from_node: int, to_node: int) -> bool:
        return from_node not in dropped and to_node not in dropped

    return allowed


HELD_WRITES_HOLD_NS = 2_000_000_000
HELD_WRITES_FLUSH_EVERY_S = 0.05


class HeldWritesEngine:
    """The planted bug `ack-before-fsync` made observable in real processes.

    The Store under this bug writes its Paxos state unsynced. The simulator's disk loses
    unsynced writes in a crash, but a real RocksDB write reaches the OS page cache at once,
    and a kill -9 loses nothing the OS has: the bug would be invisible. So here the Store's
    writes are not even handed to the engine for `hold_ns`: they sit in this process's memory
    (readable, as the engine would make them), and are written to the engine in order once
    they are that old. A kill -9 loses the last `hold_ns` of acknowledged writes; what is left
    is a prefix of the node's writes, as after a crash that loses an unsynced suffix.

    Reads merge the held writes (newest per key; `None` = deleted) over the engine's data.
    """

    def __init__(self, base: Engine, now_ns, hold_ns: int = HELD_WRITES_HOLD_NS) -> None:
        assert hold_ns > 0, f"hold_ns must be positive, got {hold_ns}"
        self.base = base
        self.now_ns = now_ns
        self.hold_ns = hold_ns
        self._held: collections.deque = collections.deque()  # (written_at_ns, seq, batch), in order
        self._overlay: dict[bytes, tuple[bytes | None, int]] = {}  # key -> (value, seq of its batch)
        self._keys: list[bytes] = []  # Invariant: sorted(self._overlay)
        self._seq = 0

    def write(self, batch, sync: bool) -> None:
        self._seq += 1
        batch = list(batch)
        for key, value in batch:
            if key not in self._overlay:
                bisect.insort(self._keys, key)
            self._overlay[key] = (value, self._seq)
        self._held.append((self.now_ns(), self._seq, batch))

    def flush_due(self) -> int:
        """Hand the engine every held batch older than hold_ns; returns how many."""
        cutoff = self.now_ns() - self.hold_ns
        flushed = 0
        while self._held and self._held[0][0] <= cutoff:
            self._flush_one()
            flushed += 1
        return flushed

    def _flush_one(self) -> None:
        _, seq, batch = self._held.popleft()
        self.base.write(batch, sync=False)
        for key, _ in batch:
            entry = self._overlay.get(key)
            if entry is not None and entry[1] == seq:  # No later held batch wrote this key.
                del self._overlay[key]
                self._keys.pop(bisect.bisect_left(self._keys, key))

    def get(self, key: bytes) -> bytes | None:
        entry = self._overlay.get(key)
        return self.base.get(key) if entry is None else entry[0]

    def scan(self, start: bytes, end: bytes, limit: int | None = None):
        lo, hi = bisect.bisect_left(self._keys, start), bisect.bisect_left(self._keys, end)
        held = [(k, self._overlay[k][0]) for k in self._keys[lo:hi]]
        return _limited(_merge(iter(held), self.base.scan(start, end), reverse=False), limit)

    def scan_reverse(self, start: bytes, end: bytes, limit: int | None = None):
        lo, hi = bisect.bisect_left(self._keys, start), bisect.bisect_left(self._keys, end)
        held = [(k, self._overlay[k][0]) for k in reversed(self._keys[lo:hi])]
        return _limited(_merge(iter(held), self.base.scan_reverse(start, end), reverse=True), limit)

    def first_in(self, start: bytes, end: bytes) -> tuple[bytes, bytes] | None:
        return next(self.scan(start, end), None)

    def close(self) -> None:
        while self._held:  # Only a clean close writes what is held; a kill -9 loses it.
            self._flush_one()
        self.base.close()


def _merge(held, stored, *, reverse: bool):
    """Merge two key-ordered iterators; a held entry shadows the stored one (None: deleted)."""
    h, s = next(held, None), next(stored, None)
    while h is not None or s is not None:
        if s is None or (h is not None and (h[0] > s[0] if reverse else h[0] < s[0])):
            key, value = h
            h = next(held, None)
        elif h is not None and h[0] == s[0]:
            key, value = h
            h, s = next(held, None), next(stored, None)
        else:
            key, value = s
            s = next(stored, None)
        if value is not None:
            yield key, value


def _limited(rows, limit: int | None):
    for n, row in enumerate(rows):
        if limit is not None and n >= limit:
            return
        yield row


async def _flush_held_writes(engine: HeldWritesEngine) -> None:
    while True:
        await trio.sleep(HELD_WRITES_FLUSH_EVERY_S)
        engine.flush_due()


async def _call(address: str, request, *, expect_not_initialized: bool = False, timeout_s: float = 5.0):
    """One request to one node over a fresh client connection (bootstrap only)."""
    try:
        with trio.fail_after(timeout_s):
            conn = await transport.dial_client(address, timeout=timeout_s)
            try:
                await conn.send({"id": 1, "req": encode_request(request)})
                reply = await conn.receive()
            finally:
                await conn.aclose()
    except (OSError, trio.TooSlowError, transport.TransportError) as e:
        raise Unavailable(f"cannot reach node at {address}: {e}; start every node in --join before init") from None
    if "err" in reply:
        error = decode_error(reply["err"])
        if expect_not_initialized and isinstance(error, NotInitialized):
            return None
        raise error
    if expect_not_initialized:
        raise AlreadyInitialized(f"node at {address} already belongs to a cluster; give it an empty --store")
    return reply.get("ok")
