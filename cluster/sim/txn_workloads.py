"""Transactional workloads in the simulator, run through the real `txn.transaction` code.

The client's transaction logic is written against a `Sender` (txn.transaction): the real
client sends over TCP from trio tasks; here `SimSender` turns every awaited request into a
simulated request with the simulator's retry rules, and a `CoroutineDriver` steps the
coroutine in virtual time. So the simulator checks the same protocol code the product runs.

Workloads (disjoint key prefixes, beside the register workload of `world.SimClient`):
- bank: transfers between accounts on different ranges, and audits (snapshot reads of every
  account at one timestamp) whose totals must all equal the initial total (`BankChecker`).
- append: transactions appending unique values to lists on several keys and reading lists,
  plus read-only snapshot transactions; checked for strict serializability by the Elle-style
  checker (`cluster.sim.elle`), real-time edges included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clock.timestamp import Timestamp
from cluster.sim import elle
from ranges.api import (
    AmbiguousResult,
    BadRequest,
    NotLeaseholder,
    RangeKeyMismatch,
    ReadAt,
    SpanliteError,
    Unavailable,
)
from txn.routing import RangeCache, lookup_descriptor
from txn.transaction import Transaction, run_transaction

MS = 1_000_000
BANK_ACCOUNTS = 6
BANK_INITIAL = 100
APPEND_KEYS = 6


def bank_key(i: int) -> bytes:
    return b"b%02d" % i


def append_key(i: int) -> bytes:
    return b"l%d" % i


# ---------------------------------------------------------------------------------------
# Driving coroutines in virtual time


class _Call:
    def __init__(self, request: Any, retry_mismatch: bool, retry_ambiguous: bool) -> None:
        self.request = request
        self.retry_mismatch = retry_mismatch
        self.retry_ambiguous = retry_ambiguous

    def __await__(self):
        return (yield self)


class _Sleep:
    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __await__(self):
        return (yield self)


class SimSender:
    """txn.transaction.Sender for one simulated client process."""

    def __init__(self, world, process: int) -> None:
        self.world = world
        self.process = process
        self.rng = world.rng
        self.target = 1 + process % world.config.nodes
        self._ranges = RangeCache()

    def send(self, request: Any, *, retry_mismatch: bool = True, retry_ambiguous: bool = True) -> _Call:
        return _Call(request, retry_mismatch, retry_ambiguous)

    async def descriptor_for(self, key: bytes):
        return await lookup_descriptor(self, self._ranges, key)

    def forget_descriptor(self, key: bytes) -> None:
        self._ranges.forget(key)

    def spawn(self, async_fn, *args) -> None:
        CoroutineDriver(self.world, self, async_fn(*args), None).start()

    async def gather(self, awaitables) -> None:
        pending = list(awaitables)
        try:
            while pending:  # One at a time: correct, and simpler to replay.
                await pending.pop(0)
        finally:
            for awaitable in pending:  # The run ended mid-commit: no "never awaited" warnings.
                awaitable.close()

    async def sleep(self, seconds: float) -> None:
        await _Sleep(int(seconds * 1e9))

    def now_ns(self) -> int:
        return self.world.now_ns

    def new_txn_id(self) -> bytes:
        return self.rng.getrandbits(128).to_bytes(16, "big")

    async def read_at(self, spans: list[tuple[bytes, bytes]],
                      ts: Timestamp | None = None) -> tuple[list[tuple[bytes, bytes]], Timestamp | None]:
        """One snapshot: every span read at `ts`, or at the timestamp the first read chose."""
        rows: list[tuple[bytes, bytes]] = []
        for start, end in spans:
            while start < end:
                result = await self.send(ReadAt(start, end, None, ts))
                ts = Timestamp.decode(result["ts"])
                rows.extend((k, v) for k, v in result["rows"])
                start = result["range_end"]
        return rows, ts


class CoroutineDriver:
    """Steps one coroutine: each awaited `_Call` is sent as a request and retried like the
    real client (leaseholder hints, other nodes, attempt timeouts, an overall deadline)."""

    def __init__(self, world, sender: SimSender, coro, on_done) -> None:
        self.world = world
        self.sender = sender
        self.coro = coro
        self.on_done = on_done
        self.call: _Call | None = None
        self.attempt = 0
        self.deadline_ns = 0

    def start(self) -> None:
        self._step(None, None)

    def _step(self, value: Any, error: BaseException | None) -> None:
        try:
            yielded = self.coro.throw(error) if error is not None else self.coro.send(value)
        except StopIteration as stop:
            self._done(stop.value, None)
            return
        except SpanliteError as e:
            self._done(None, e)
            return
        if isinstance(yielded, _Sleep):
            self.world.schedule(max(0, yielded.ns), lambda: self._step(None, None))
        else:
            assert isinstance(yielded, _Call), f"a simulated coroutine awaited {yielded!r}"
            self.call = yielded
            self.deadline_ns = self.world.now_ns + self.world.config.op_timeout_ns
            self._send()

    def _done(self, value: Any, error: SpanliteError | None) -> None:
        if self.on_done is not None:
            self.on_done(value, error)

    def _send(self) -> None:
        self.attempt = self.world.next_attempt_id()
        attempt = self.attempt
        self.world.send_request(self, attempt, self.sender.target, self.call.request)
        self.world.schedule(self.world.config.attempt_timeout_ns, lambda: self._timed_out(attempt))

    def _timed_out(self, attempt: int) -> None:
        if attempt != self.attempt or self.call is None:
            return
        if not self.call.retry_ambiguous:
            self._answer(None, AmbiguousResult("the attempt timed out; the outcome is unknown"))
            return
        self._retry(None)

    def _retry(self, hint: int | None) -> None:
        world = self.world
        if world.now_ns >= self.deadline_ns:
            self._answer(None, Unavailable("gave up: no answer before the deadline"))
            return
        self.sender.target = hint if hint else 1 + world.rng.randrange(world.config.nodes)
        delay = 0 if hint else world.rng.randrange(5 * MS, 40 * MS)
        self.attempt = world.next_attempt_id()  # Invalidates the previous attempt's answer and timeout.
        attempt = self.attempt
        world.schedule(delay, lambda: self._send() if attempt == self.attempt else None)

    def receive(self, attempt: int, result: Any) -> None:
        if attempt != self.attempt or self.call is None:
            return  # A late answer to an attempt we gave up on.
        if not isinstance(result, SpanliteError):
            self._answer(result, None)
            return
        call = self.call
        if isinstance(result, RangeKeyMismatch) and not call.retry_mismatch:
            self._answer(None, result)
        elif isinstance(result, AmbiguousResult) and not call.retry_ambiguous:
            self._answer(None, result)
        elif isinstance(result, BadRequest) or not result.retryable:
            self._answer(None, result)
        else:
            hint = result.details.get("leaseholder") if isinstance(result, NotLeaseholder) else None
            self._retry(hint)

    def _answer(self, value: Any, error: SpanliteError | None) -> None:
        self.call = None
        self.attempt = self.world.next_attempt_id()
        self._step(value, error)


# ---------------------------------------------------------------------------------------
# Workloads


@dataclass
class BankChecker:
    """Every audit (a snapshot read of all accounts) sees the initial total."""

    audits: list[tuple[int, int]] = field(default_factory=list)  # (time, total)
    violation: Any = None

    def record(self, now_ns: int, rows: list[tuple[bytes, bytes]]) -> None:
        balances = {k: int(v) for k, v in rows}
        total = sum(balances.get(bank_key(i), BANK_INITIAL) for i in range(BANK_ACCOUNTS))
        self.audits.append((now_ns, total))
        if total != BANK_ACCOUNTS * BANK_INITIAL and self.violation is None:
            self.violation = (f"an audit at t={now_ns}ns saw a total of {total}, not {BANK_ACCOUNTS * BANK_INITIAL}: "
                              f"{sorted(balances.items())}")


class TxnClient:
    """One simulated process running transactions of one workload until the run ends."""

    def __init__(self, world, process: int, workload: str) -> None:
        self.world = world
        self.process = process
        self.workload = workload
        self.sender = SimSender(world, process)
        self.final = False
        self.finished = False

    def start_next(self) -> None:
        world = self.world
        if not self.final and world.now_ns >= world.config.duration_ns:
            return
        coro = self._one()
        CoroutineDriver(world, self.sender, coro, self._after).start()

    def _after(self, value: Any, error: SpanliteError | None) -> None:
        if self.final:
            self.finished = error is None
            return
        self.world.schedule(self.world.rng.randrange(1, 20 * MS), self.start_next)

    async def _one(self) -> None:
        if self.workload == "bank":
            await self._bank_op()
        else:
            await self._append_op()

    # -- bank ------------------------------------------------------------------------------

    async def _bank_op(self) -> None:
        rng = self.world.rng
        if self.final or rng.random() < 0.3:
            rows, _ = await self.sender.read_at([(bank_key(0), bank_key(BANK_ACCOUNTS))])
            self.world.bank.record(self.world.now_ns, rows)
            return
        src, dst = rng.sample(range(BANK_ACCOUNTS), 2)
        amount = rng.randrange(1, 30)

        async def transfer(txn: Transaction) -> None:
            a = await txn.get(bank_key(src))
            b = await txn.get(bank_key(dst))
            txn.put(bank_key(src), b"%d" % (int(a or BANK_INITIAL) - amount))
            txn.put(bank_key(dst), b"%d" % (int(b or BANK_INITIAL) + amount))

        try:
            await run_transaction(self.sender, transfer, max_attempts=3)
        except SpanliteError:
            pass  # An abort, or an outcome unknown: the audits judge the totals either way.

    # -- list append -----------------------------------------------------------------------

    async def _append_op(self) -> None:
        rng = self.world.rng
        if self.final or rng.random() < 0.25:
            await self._snapshot_reads(range(APPEND_KEYS) if self.final else rng.sample(range(APPEND_KEYS), rng.randrange(1, 4)))
            return
        ops = []
        for i in rng.sample(range(APPEND_KEYS), rng.randrange(1, 4)):
            if rng.random() < 0.6:
                ops.append(("append", i, self.world.next_append_value()))
            else:
                ops.append(("read", i, None))
        await self._append_txn(ops)

    async def _append_txn(self, ops: list[tuple[str, int, Any]]) -> None:
        world = self.world
        txn = Transaction(self.sender)
        invoke = world.now_ns
        done: list[elle.Op] = []
        try:
            for kind, i, value in ops:
                current = _decode_list(await txn.get(append_key(i)))
                if kind == "append":
                    txn.put(append_key(i), _encode_list(current + [value]))
                    done.append(elle.Op("append", i, value))
                else:
                    done.append(elle.Op("read", i, tuple(current)))
            await txn.commit()
            status = "ok"
        except AmbiguousResult:
            status = "info"
        except SpanliteError:
            await txn.abort()
            status = "fail"
        if status != "ok":  # Reads of a transaction that did not commit say nothing.
            done = [op if op.kind == "append" else elle.Op("read", op.key, None) for op in done]
            done += [elle.Op("append", i, v) for kind, i, v in ops[len(done):] if kind == "append"]
        world.record_txn(self.process, done, status, invoke)

    async def _snapshot_reads(self, which) -> None:
        world = self.world
        invoke = world.now_ns
        spans = [(append_key(i), append_key(i) + b"\x00") for i in sorted(which)]
        try:
            rows, _ = await self.sender.read_at(spans, self._gateway_timestamp())
        except SpanliteError:
            world.record_txn(self.process, [], "fail", invoke)
            raise
        found = {k: _decode_list(v) for k, v in rows}
        reads = [elle.Op("read", i, tuple(found.get(append_key(i), []))) for i in sorted(which)]
        world.record_txn(self.process, reads, "ok", invoke)


    def _gateway_timestamp(self) -> Timestamp | None:
        """Half the snapshots read at a timestamp from some node's physical clock (as Spanner
        reads at TT.now() of any server); the others let the leaseholder choose. Both are
        externally consistent only because commits wait out max offset before acknowledging."""
        world = self.world
        live = world.live_nodes()
        if not live or world.rng.random() < 0.5:
            return None
        gateway = world.nodes[world.rng.choice(live)].store
        return Timestamp(max(1, gateway.hlc.physical_now_ns()), 0)


def _encode_list(values: list[int]) -> bytes:
    return b",".join(b"%d" % v for v in values)


def _decode_list(raw: bytes | None) -> list[int]:
    return [] if not raw else [int(v) for v in raw.split(b",")]
