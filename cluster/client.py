"""The async Python client.

    from cluster.client import connect
    async with connect(["127.0.0.1:26257", "127.0.0.1:26258"]) as db:
        await db.put(b"k", b"v")
        assert await db.get(b"k") == b"v"

One connection per node, many requests in flight on each (multiplexed by request id).
The client finds the leaseholder, follows `NotLeaseholder` redirects and retries what is
safe to retry until its deadline: redirects and unavailability (nothing was applied),
and ambiguous writes, because every write carries an op_id that the range applies at most
once. Every acknowledged operation is linearizable.
"""

from __future__ import annotations

import bisect
import logging
import os
import random
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import trio

from cluster import transport
from ranges.api import (
    AdminSplit,
    AmbiguousResult,
    Delete,
    Get,
    Init,
    NotInitialized,
    NotLeaseholder,
    Put,
    RangeKeyMismatch,
    Request,
    Scan,
    SpanliteError,
    Status,
    Unavailable,
    ReadAt,
    TxnRead,
    ResolveTxnRequest,
    EndTxnRequest,
    PrepareTxnRequest,
    decode_error,
    encode_request,
)
from clock.timestamp import Timestamp
from ranges.descriptor import RangeDescriptor
from ranges.keys import KEY_MAX, validate_key, validate_split_key, validate_value
from txn.routing import RangeCache, lookup_descriptor
from txn.transaction import RETRY_ATTEMPTS_DEFAULT, ReadOnlyTransaction, Transaction, run_transaction

log = logging.getLogger("spanlite.client")

DEFAULT_TIMEOUT_S = 15.0
BACKOFF_MIN_S = 0.01
BACKOFF_MAX_S = 0.5
MAX_ATTEMPTS = 1_000
MAX_IMMEDIATE_REDIRECTS = 2


class ConnectionLost(Unavailable):
    code = "connection_lost"


_TIMED_OUT = object()  # a waiter's "response" when the sweeper failed it at its deadline


class _Connection:
    """A multiplexed connection to one node. Responses are matched by request id.

    Requests are not written by the calling task: `call` queues the frame and parks the
    task; one writer task sends every frame queued meanwhile with one `send_all`, and the
    reader task wakes each caller directly (`trio.lowlevel.reschedule`) with its response.
    With many tasks sharing a connection that is one syscall per batch instead of one per
    request, and no Lock or Event per call.

    A call's `deadline` is enforced by the connection's sweeper task, which fails overdue
    calls with `trio.TooSlowError` at most `DEADLINE_SWEEP_S` late: much cheaper than a
    cancel scope (`trio.fail_after`) around every call, which costs ~7 us.
    """

    # A limit on everything: frames queued beyond this wait for the writer (backpressure).
    OUTBOX_FRAMES_MAX = 4096
    DEADLINE_SWEEP_S = 0.05

    def __init__(self, address: str, conn) -> None:
        self.address = address
        self.conn = conn
        self.next_id = 0
        # id -> [parked task, response frame (None: connection lost; _TIMED_OUT), deadline or None]
        self.waiters: dict[int, list] = {}
        self.broken: Exception | None = None
        self._outbox: list[dict] = []
        self._writer_wakeup = trio.Event()
        self._outbox_space = trio.Event()
        self._sweeper_wakeup = trio.Event()

    async def reader(self) -> None:
        """Run the connection (reader, writer, deadline sweeper) until it breaks; started
        once per connection."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer)
            nursery.start_soon(self._sweeper)
            await self._read_loop()
            nursery.cancel_scope.cancel()

    async def _sweeper(self) -> None:
        while True:
            if not self.waiters:
                self._sweeper_wakeup = trio.Event()
                await self._sweeper_wakeup.wait()
                continue
            await trio.sleep(self.DEADLINE_SWEEP_S)
            now = trio.current_time()
            overdue = [rid for rid, w in self.waiters.items() if w[2] is not None and w[2] <= now]
            for request_id in overdue:
                waiter = self.waiters.pop(request_id)
                waiter[1] = _TIMED_OUT
                trio.lowlevel.reschedule(waiter[0])

    async def _read_loop(self) -> None:
        try:
            while True:
                frame = await self.conn.receive()
                waiter = self.waiters.pop(frame.get("id"), None) if isinstance(frame, dict) else None
                if waiter is not None:
                    waiter[1] = frame
                    trio.lowlevel.reschedule(waiter[0])
        except Exception as e:  # noqa: BLE001 - any failure ends this connection, callers retry.
            self._break(e)

    async def _writer(self) -> None:
        try:
            while self.broken is None:
                if not self._outbox:
                    self._writer_wakeup = trio.Event()
                    await self._writer_wakeup.wait()
                    continue
                frames, self._outbox = self._outbox, []
                self._outbox_space.set()
                await self.conn.send_many(frames)
        except Exception as e:  # noqa: BLE001 - any failure ends this connection, callers retry.
            self._break(e)
            with trio.CancelScope(shield=True):
                await self.conn.aclose()  # wakes the reader, which ends the connection

    def _break(self, error: Exception) -> None:
        if self.broken is None:
            self.broken = error
        waiters, self.waiters = self.waiters, {}
        for waiter in waiters.values():
            trio.lowlevel.reschedule(waiter[0])  # with no frame: the caller raises ConnectionLost
        self._writer_wakeup.set()
        self._outbox_space.set()

    async def call(self, request: Request, *, deadline: float | None = None) -> object:
        """Send `request`, wait for its response. `deadline` (trio clock): raise
        `trio.TooSlowError` if there is none by then (see the class docstring)."""
        if self.broken is not None:
            raise ConnectionLost(f"connection to {self.address} is broken: {self.broken}")
        while len(self._outbox) >= self.OUTBOX_FRAMES_MAX:
            self._outbox_space = trio.Event()
            await self._outbox_space.wait()
            if self.broken is not None:
                raise ConnectionLost(f"connection to {self.address} is broken: {self.broken}")
        self.next_id += 1
        request_id = self.next_id
        self._outbox.append({"id": request_id, "req": encode_request(request)})
        self._writer_wakeup.set()
        waiter = [trio.lowlevel.current_task(), None, deadline]
        if not self.waiters:
            self._sweeper_wakeup.set()
        self.waiters[request_id] = waiter

        def abort(_raise_cancel) -> trio.lowlevel.Abort:
            # Cancelled (deadline): forget the waiter; a late response is ignored.
            self.waiters.pop(request_id, None)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        frame = waiter[1]
        if frame is None:
            raise ConnectionLost(f"lost connection to {self.address}: {self.broken}")
        if frame is _TIMED_OUT:
            raise trio.TooSlowError(f"no response from {self.address} by the deadline")
        if "err" in frame:
            raise decode_error(frame["err"])
        return frame.get("ok")


STATUS_PEER_TIMEOUT_S = 2.0


def merge_status_views(views: list[dict]) -> dict:
    """One status from several nodes' `Status` answers (the first is the one asked first)."""
    best: dict[int, tuple[tuple, dict]] = {}
    for view in views:
        for r in view["ranges"]:
            rank = (r.get("leaseholder") == view["node_id"], r.get("applied_index", 0))
            known = best.get(r["range_id"])
            if known is None or rank > known[0]:
                best[r["range_id"]] = (rank, r)
    merged = dict(views[0])
    merged["ranges"] = sorted((r for _, r in best.values()), key=lambda r: r["start_key"])
    return merged


class Client:
    def __init__(self, addresses: list[str], nursery: trio.Nursery, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not addresses:
            raise ValueError("connect() needs at least one node address, like ['127.0.0.1:26257']")
        for address in addresses:
            transport.parse_address(address)
        self.addresses = list(addresses)
        self.timeout_s = timeout_s
        self._nursery = nursery
        self._connections: dict[str, _Connection] = {}
        self._dial_locks: dict[str, trio.Lock] = {}
        self._leaseholder: str | None = None  # For keys of ranges we have no hint for.
        self._hints = LeaseholderHints()
        self._ranges = RangeCache()
        self._rotation = random.randrange(len(addresses))

    # ------------------------------------------------------------------ public API

    async def get(self, key: bytes) -> bytes | None:
        validate_key(key)
        result = await self._request(Get(key))
        return result["value"]

    async def put(self, key: bytes, value: bytes) -> None:
        validate_key(key)
        validate_value(value)
        await self._request(Put(key, value, _op_id()))

    async def delete(self, key: bytes) -> None:
        validate_key(key)
        await self._request(Delete(key, _op_id()))

    async def scan(self, start: bytes, end: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """Keys in [start, end) in key order, across range boundaries."""
        if limit is not None and limit <= 0:
            raise ValueError("scan limit must be positive")
        end = min(end, KEY_MAX)
        rows: list[tuple[bytes, bytes]] = []
        while start < end and (limit is None or len(rows) < limit):
            want = None if limit is None else limit - len(rows)
            result = await self._request(Scan(start, end, want))
            rows.extend((k, v) for k, v in result["rows"])
            if want is not None and len(result["rows"]) >= want:
                break
            start = result["range_end"]
        return rows

    async def admin_split(self, key: bytes) -> tuple[RangeDescriptor, RangeDescriptor]:
        """Split the range holding `key` at `key`, through consensus. Returns (left, right)."""
        validate_split_key(key)
        result = await self._request(AdminSplit(key))
        return RangeDescriptor.decode(result["left"]), RangeDescriptor.decode(result["right"])

    async def status(self) -> dict:
        """The whole cluster: every node's view of its replicas, merged. A range is reported
        as its leaseholder sees it (else as the replica furthest along), so the answer covers
        ranges the first node does not hold, on clusters larger than one range's replicas."""
        first = await self._request(Status())
        views = [first]
        others = [n["address"] for n in first["nodes"] if n["node_id"] != first["node_id"] and n["live"]]

        async def ask(address: str) -> None:
            try:
                connection = await self._connect(address)
                views.append(await connection.call(Status(), deadline=trio.current_time() + STATUS_PEER_TIMEOUT_S))
            except (SpanliteError, trio.TooSlowError, OSError):
                pass  # A node that does not answer is reported by the others' liveness.

        async with trio.open_nursery() as nursery:
            for address in others:
                nursery.start_soon(ask, address)
        return merge_status_views(views)

    async def init(self) -> dict:
        """Bootstrap the cluster through the first address (`spanlite init`)."""
        connection = await self._connect(self.addresses[0])
        return await connection.call(Init())

    # ------------------------------------------------------------------ routing and retries

    # ------------------------------------------------------------------ transactions

    def transaction(self, *, priority: int | None = None) -> "_TransactionScope":
        """`async with db.transaction() as txn:` commits on normal exit, aborts on an exception."""
        return _TransactionScope(Transaction(self, priority=priority))

    def read_only(self, *, ts: Timestamp | None = None) -> "_ReadOnlyScope":
        """`async with db.read_only() as snap:` lock-free reads of one snapshot (`snap.ts`)."""
        return _ReadOnlyScope(ReadOnlyTransaction(self, ts))

    async def run_transaction(self, fn, *, max_attempts: int = RETRY_ATTEMPTS_DEFAULT):
        """Run `await fn(txn)` in a transaction and commit it, retrying retryable aborts."""
        return await run_transaction(self, fn, max_attempts=max_attempts)

    async def read_at(self, start: bytes, end: bytes, ts: Timestamp | None = None,
                      limit: int | None = None) -> tuple[list[tuple[bytes, bytes]], Timestamp]:
        """A lock-free snapshot read of `[start, end)` at `ts` (None: now, chosen by the first
        range's leaseholder and used for every range), across ranges. Returns (rows, ts)."""
        snapshot = ReadOnlyTransaction(self, ts)
        rows = await snapshot.scan(start, end, limit)
        return rows, snapshot.ts if snapshot.ts is not None else Timestamp(0, 0)

    # The transaction's Sender interface (txn.transaction.Sender).

    async def send(self, request: Request, *, retry_mismatch: bool = True, retry_ambiguous: bool = True) -> object:
        return await self._request(request, retry_mismatch=retry_mismatch, retry_ambiguous=retry_ambiguous)

    async def descriptor_for(self, key: bytes) -> RangeDescriptor:
        """The descriptor of the range holding `key`, from the range cache or the meta range."""
        return await lookup_descriptor(self, self._ranges, key)

    def forget_descriptor(self, key: bytes) -> None:
        self._ranges.forget(key)

    def spawn(self, async_fn, *args) -> None:
        self._nursery.start_soon(async_fn, *args)

    async def gather(self, awaitables) -> None:
        async def run(awaitable) -> None:
            await awaitable

        async with trio.open_nursery() as nursery:
            for awaitable in awaitables:
                nursery.start_soon(run, awaitable)

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    def now_ns(self) -> int:
        return time.time_ns()

    # ------------------------------------------------------------------ routing and retries

    async def _request(self, request: Request, *, retry_mismatch: bool = True, retry_ambiguous: bool = True) -> object:
        deadline = trio.current_time() + self.timeout_s
        backoff = BACKOFF_MIN_S
        last_error: SpanliteError | None = None
        redirects_in_a_row = 0
        for _ in range(MAX_ATTEMPTS):
            if trio.current_time() >= deadline:
                break
            address = self._choose_address(request)
            sent = False
            try:
                connection = self._connections.get(address)
                if connection is None or connection.broken is not None:
                    with trio.fail_after(max(0.001, deadline - trio.current_time())):
                        connection = await self._connect(address)
                # The connection's sweeper enforces the deadline: a cancel scope per call costs ~7 us.
                sent = True
                return await connection.call(request, deadline=deadline)
            except NotLeaseholder as e:
                last_error = e
                hint = e.details.get("leaseholder_address")
                if hint and hint != address:
                    self._remember_leaseholder(e.details.get("descriptor"), hint)
                    redirects_in_a_row += 1
                    if redirects_in_a_row <= MAX_IMMEDIATE_REDIRECTS:
                        continue  # A fresh hint: follow it at once (but never ping-pong hot).
                else:
                    self._forget(request, address)
            except (Unavailable, NotInitialized, RangeKeyMismatch, AmbiguousResult) as e:
                if (isinstance(e, RangeKeyMismatch) and not retry_mismatch) or (
                        isinstance(e, AmbiguousResult) and not retry_ambiguous):
                    raise
                if sent and isinstance(e, ConnectionLost) and not retry_ambiguous:
                    # The node may have applied it before the connection broke: not ours to retry.
                    raise AmbiguousResult(f"{type(request).__name__} was sent to {address}, then the connection "
                                          f"was lost ({e.message}); it may have been applied") from None
                last_error = e
                self._forget(request, address)
            except trio.TooSlowError:
                if sent and not retry_ambiguous:
                    raise AmbiguousResult(f"{type(request).__name__} sent to {address} got no answer within "
                                          f"{self.timeout_s:.0f}s; it may have been applied") from None
                break
            await trio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, BACKOFF_MAX_S)
        raise Unavailable(
            f"{type(request).__name__.lower()} did not succeed within {self.timeout_s:.0f}s"
            + (f"; last error: {last_error.message}" if last_error else "")
            + "; check that a majority of nodes is up (`spanlite status`)")

    def _choose_address(self, request: Request) -> str:
        key = _routing_key(request)
        hinted = self._hints.lookup(key) if key is not None else None
        if hinted is not None:
            return hinted
        if self._leaseholder is not None:
            return self._leaseholder
        self._rotation = (self._rotation + 1) % len(self.addresses)
        return self.addresses[self._rotation]

    def _remember_leaseholder(self, raw_descriptor: object, address: str) -> None:
        try:
            descriptor = RangeDescriptor.decode(raw_descriptor)
        except (ValueError, TypeError, KeyError):
            self._leaseholder = address
            return
        self._hints.remember(descriptor, address)

    def _forget(self, request: Request, address: str) -> None:
        key = _routing_key(request)
        if key is not None:
            self._hints.forget(key, address)
        if self._leaseholder == address:
            self._leaseholder = None

    async def _connect(self, address: str) -> _Connection:
        connection = self._connections.get(address)
        if connection is not None and connection.broken is None:
            return connection
        lock = self._dial_locks.setdefault(address, trio.Lock())
        async with lock:
            connection = self._connections.get(address)
            if connection is not None and connection.broken is None:
                return connection
            try:
                conn = await transport.dial_client(address, timeout=5.0)
            except (OSError, transport.TransportError) as e:
                raise ConnectionLost(str(e)) from None
            connection = _Connection(address, conn)
            self._connections[address] = connection
            self._nursery.start_soon(connection.reader)
            return connection

    async def aclose(self) -> None:
        for connection in self._connections.values():
            connection._break(ConnectionError("client closed"))
            try:
                await connection.conn.aclose()
            except Exception:  # noqa: BLE001 - closing; nothing to report.
                pass
        self._connections.clear()


class LeaseholderHints:
    """Which node to ask for which key span: learned from NotLeaseholder redirects, which
    carry the range's descriptor. Spans never overlap; a newer one replaces what it covers."""

    def __init__(self) -> None:
        self._starts: list[bytes] = []
        self._entries: list[tuple[bytes, bytes, str]] = []  # (start, end, address), sorted

    def lookup(self, key: bytes) -> str | None:
        i = bisect.bisect_right(self._starts, key) - 1
        if i >= 0 and key < self._entries[i][1]:
            return self._entries[i][2]
        return None

    def remember(self, descriptor: RangeDescriptor, address: str) -> None:
        start, end = descriptor.start_key, descriptor.end_key
        kept = [e for e in self._entries if e[1] <= start or e[0] >= end]
        kept.append((start, end, address))
        kept.sort()
        self._entries = kept
        self._starts = [e[0] for e in kept]

    def forget(self, key: bytes, address: str) -> None:
        i = bisect.bisect_right(self._starts, key) - 1
        if i >= 0 and key < self._entries[i][1] and self._entries[i][2] == address:
            del self._entries[i]
            del self._starts[i]


def _routing_key(request: Request) -> bytes | None:
    if isinstance(request, (Scan, ReadAt, TxnRead, ResolveTxnRequest)):
        return request.start
    if isinstance(request, EndTxnRequest):
        return request.anchor
    if isinstance(request, PrepareTxnRequest):
        return request.keys_touched()[0]
    return getattr(request, "key", None)


class _ReadOnlyScope:
    def __init__(self, snapshot: ReadOnlyTransaction) -> None:
        self.snapshot = snapshot

    async def __aenter__(self) -> ReadOnlyTransaction:
        return self.snapshot

    async def __aexit__(self, *exc) -> bool:
        return False


class _TransactionScope:
    def __init__(self, txn: Transaction) -> None:
        self.txn = txn

    async def __aenter__(self) -> Transaction:
        return self.txn

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            await self.txn.commit()
        else:
            with trio.CancelScope(shield=True):
                await self.txn.abort()
        return False


def _op_id() -> bytes:
    return os.urandom(16)


@asynccontextmanager
async def connect(addresses: list[str] | str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> AsyncIterator[Client]:
    """Connect to a cluster given one or more node addresses ("host:port")."""
    if isinstance(addresses, str):
        addresses = [a for a in addresses.split(",") if a]
    async with trio.open_nursery() as nursery:
        client = Client(addresses, nursery, timeout_s=timeout_s)
        try:
            yield client
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()
