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

import logging
import os
import random
from contextlib import asynccontextmanager
from typing import AsyncIterator

import trio

from cluster import transport
from ranges.api import (
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
    decode_error,
    encode_request,
)
from ranges.keys import KEY_MAX, validate_key, validate_value

log = logging.getLogger("spanlite.client")

DEFAULT_TIMEOUT_S = 15.0
BACKOFF_MIN_S = 0.01
BACKOFF_MAX_S = 0.5
MAX_ATTEMPTS = 1_000
MAX_IMMEDIATE_REDIRECTS = 2


class ConnectionLost(Unavailable):
    code = "connection_lost"


class _Connection:
    """A multiplexed connection to one node. Responses are matched by request id."""

    def __init__(self, address: str, conn) -> None:
        self.address = address
        self.conn = conn
        self.next_id = 0
        self.waiters: dict[int, list] = {}  # id -> [trio.Event, frame]
        self.broken: Exception | None = None
        self.send_lock = trio.Lock()

    async def reader(self) -> None:
        try:
            while True:
                frame = await self.conn.receive()
                waiter = self.waiters.pop(frame.get("id"), None) if isinstance(frame, dict) else None
                if waiter is not None:
                    waiter[1] = frame
                    waiter[0].set()
        except Exception as e:  # noqa: BLE001 - any failure ends this connection, callers retry.
            self._break(e)

    def _break(self, error: Exception) -> None:
        self.broken = error
        for event, _ in self.waiters.values():
            event.set()
        self.waiters.clear()

    async def call(self, request: Request) -> object:
        if self.broken is not None:
            raise ConnectionLost(f"connection to {self.address} is broken: {self.broken}")
        self.next_id += 1
        request_id = self.next_id
        waiter = [trio.Event(), None]
        self.waiters[request_id] = waiter
        try:
            async with self.send_lock:
                await self.conn.send({"id": request_id, "req": encode_request(request)})
        except Exception as e:  # noqa: BLE001
            self._break(e)
            raise ConnectionLost(f"lost connection to {self.address}: {e}") from None
        await waiter[0].wait()
        frame = waiter[1]
        if frame is None:
            raise ConnectionLost(f"lost connection to {self.address}: {self.broken}")
        if "err" in frame:
            raise decode_error(frame["err"])
        return frame.get("ok")


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
        self._leaseholder: str | None = None
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

    async def status(self) -> dict:
        return await self._request(Status())

    async def init(self) -> dict:
        """Bootstrap the cluster through the first address (`spanlite init`)."""
        connection = await self._connect(self.addresses[0])
        return await connection.call(Init())

    # ------------------------------------------------------------------ routing and retries

    async def _request(self, request: Request) -> object:
        deadline = trio.current_time() + self.timeout_s
        backoff = BACKOFF_MIN_S
        last_error: SpanliteError | None = None
        redirects_in_a_row = 0
        for _ in range(MAX_ATTEMPTS):
            if trio.current_time() >= deadline:
                break
            address = self._choose_address()
            try:
                with trio.fail_after(max(0.001, deadline - trio.current_time())):
                    connection = await self._connect(address)
                    return await connection.call(request)
            except NotLeaseholder as e:
                last_error = e
                hint = e.details.get("leaseholder_address")
                if hint and hint != address:
                    self._leaseholder = hint
                    redirects_in_a_row += 1
                    if redirects_in_a_row <= MAX_IMMEDIATE_REDIRECTS:
                        continue  # A fresh hint: follow it at once (but never ping-pong hot).
                else:
                    self._forget(address)
            except (Unavailable, NotInitialized, RangeKeyMismatch, AmbiguousResult) as e:
                last_error = e
                self._forget(address)
            except trio.TooSlowError:
                break
            await trio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, BACKOFF_MAX_S)
        raise Unavailable(
            f"{type(request).__name__.lower()} did not succeed within {self.timeout_s:.0f}s"
            + (f"; last error: {last_error.message}" if last_error else "")
            + "; check that a majority of nodes is up (`spanlite status`)")

    def _choose_address(self) -> str:
        if self._leaseholder is not None:
            return self._leaseholder
        self._rotation = (self._rotation + 1) % len(self.addresses)
        return self.addresses[self._rotation]

    def _forget(self, address: str) -> None:
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
