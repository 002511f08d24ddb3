"""An embedded test cluster: N real nodes in this process, on loopback TCP.

    from cluster.embedded import EmbeddedCluster
    async with EmbeddedCluster(nodes=3) as c:
        async with c.client() as db:
            await db.put(b"k", b"v")
        c.kill(0); await c.restart(0)
        c.partition([0], [1, 2]); c.heal()
        c.skew(1, 5_000_000)

Nodes are the same `Node` the `spanlite start` process runs, with the real transport and
Store; only the process boundary is missing. Stores live in memory (a `MemoryEngine`
whose `kill` loses every unsynced write, like a power cut) or in a temporary directory
(`store="disk"`, rocksdict). Indices are 0-based; node ids are index + 1.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator

import trio

from clock.physical import OffsetClock, SystemClock
from clock.settings import DEFAULT_MAX_OFFSET_NS
from cluster.client import Client, connect
from cluster.node import Node, NodeConfig
from paxos_groups.engine import Engine, MemoryEngine, RocksEngine
from ranges.store import Identity, StoreConfig, bootstrap_store

log = logging.getLogger("spanlite.embedded")

REPLICATION_FACTOR = 3


class EmbeddedCluster:
    def __init__(
        self,
        nodes: int = 3,
        *,
        store: str = "memory",
        max_offset_ns: int = DEFAULT_MAX_OFFSET_NS,
        bugs: frozenset[str] = frozenset(),
        store_config: StoreConfig | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if nodes < 1:
            raise ValueError("an embedded cluster needs at least 1 node")
        if store not in ("memory", "disk"):
            raise ValueError("store must be 'memory' or 'disk'")
        self.size = nodes
        self.store_kind = store
        self.max_offset_ns = max_offset_ns
        self.bugs = bugs
        self.store_config = store_config
        self.host = host
        self.directory: str | None = None
        self.engines: list[Engine] = []
        self.clocks = [OffsetClock(SystemClock(), 0) for _ in range(nodes)]
        self.nodes: list[Node | None] = [None] * nodes
        self.ports: list[int] = [0] * nodes
        self._scopes: list[trio.CancelScope | None] = [None] * nodes
        self._stopped: list[trio.Event] = [trio.Event() for _ in range(nodes)]
        self._nursery: trio.Nursery | None = None
        self._nursery_manager = None
        self._filter_blocked: set[tuple[int, int]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> "EmbeddedCluster":
        if self.store_kind == "disk":
            self.directory = tempfile.mkdtemp(prefix="spanlite-embedded-")
        self.engines = [self._new_engine(i) for i in range(self.size)]
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        try:
            for i in range(self.size):
                await self._start_node(i)
            self._bootstrap()
            await self.wait_ready()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(None, None, None)
            self._nursery = None
        for engine in self.engines:
            engine.close()
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _new_engine(self, i: int) -> Engine:
        if self.store_kind == "memory":
            return MemoryEngine()
        return RocksEngine(f"{self.directory}/node{i + 1}")

    def _bootstrap(self) -> None:
        cluster_id = str(uuid.uuid4())
        nodes = {i + 1: f"{self.host}:{self.ports[i]}" for i in range(self.size)}
        replicas = tuple(range(1, min(self.size, REPLICATION_FACTOR) + 1))
        for i in range(self.size):
            bootstrap_store(self.engines[i], Identity(cluster_id, i + 1, nodes), replicas)
            self.nodes[i].notify_initialized()

    async def _start_node(self, i: int) -> None:
        config = NodeConfig(listen=f"{self.host}:{self.ports[i]}", max_offset_ns=self.max_offset_ns,
                            bugs=self.bugs)
        if self.store_config is not None:
            config.store = self.store_config
        node = Node(self.engines[i], config, physical=self.clocks[i])
        self.nodes[i] = node
        self.ports[i] = await self._nursery.start(self._run_node, i, node)
        self._apply_filters()

    async def _run_node(self, i: int, node: Node, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        stopped = self._stopped[i] = trio.Event()
        engine = self.engines[i]
        try:
            with trio.CancelScope() as scope:
                self._scopes[i] = scope
                await node.run(task_status=task_status)
        finally:
            # A killed node's task may still be mid-cycle when kill() returns: close its disk
            # store only once the task is gone, or that cycle writes to a closed database.
            if self._scopes[i] is None and not isinstance(engine, MemoryEngine):
                engine.close()
            stopped.set()

    # ------------------------------------------------------------------ clients

    @property
    def addresses(self) -> list[str]:
        return [f"{self.host}:{port}" for port in self.ports]

    @asynccontextmanager
    async def client(self, *, timeout_s: float = 15.0) -> AsyncIterator[Client]:
        async with connect(self.addresses, timeout_s=timeout_s) as db:
            yield db

    async def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Until a read goes through (a leaseholder is serving)."""
        with trio.fail_after(timeout_s):
            async with self.client(timeout_s=timeout_s) as db:
                await db.get(b"\x00spanlite-ready")

    # ------------------------------------------------------------------ faults

    def kill(self, i: int) -> None:
        """Stop node i at once; an in-memory store loses every unsynced write."""
        scope = self._scopes[i]
        if scope is None:
            raise ValueError(f"node {i} is not running")
        scope.cancel()
        self._scopes[i] = None
        self.nodes[i] = None
        engine = self.engines[i]
        if isinstance(engine, MemoryEngine):
            engine.crash()  # (a disk store is closed by _run_node once the task has stopped)

    async def restart(self, i: int) -> None:
        if self._scopes[i] is not None:
            raise ValueError(f"node {i} is running; kill it first")
        await self._stopped[i].wait()  # the old store must be closed before it is reopened
        if not isinstance(self.engines[i], MemoryEngine):
            self.engines[i] = self._new_engine(i)
        await self._start_node(i)

    def partition(self, side_a: list[int], side_b: list[int]) -> None:
        """Drop every message between the two sides (both directions)."""
        for a in side_a:
            for b in side_b:
                self._filter_blocked.add((a + 1, b + 1))
                self._filter_blocked.add((b + 1, a + 1))
        self._apply_filters()

    def heal(self) -> None:
        self._filter_blocked.clear()
        self._apply_filters()

    def skew(self, i: int, offset_ns: int) -> None:
        self.clocks[i].offset_ns = offset_ns

    def _apply_filters(self) -> None:
        blocked = self._filter_blocked

        def allowed(from_node: int, to_node: int) -> bool:
            return (from_node, to_node) not in blocked

        for node in self.nodes:
            if node is not None:
                node.set_message_filter(allowed if blocked else None)

    async def status(self) -> dict:
        async with self.client() as db:
            return await db.status()


@asynccontextmanager
async def embedded_cluster(nodes: int = 3, **kwargs) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(nodes, **kwargs) as cluster:
        yield cluster
