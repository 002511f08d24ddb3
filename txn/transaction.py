"""Read-write transactions, driven by the client: locking reads, buffered writes, and two-phase
commit over the ranges' Paxos groups (docs/TRANSACTIONS.md).

    async with db.transaction() as txn:
        balance = int(await txn.get(b"acct/1") or b"0")
        txn.put(b"acct/1", str(balance - 10).encode())
    print(txn.commit_ts)          # the commit timestamp, once committed

    await db.run_transaction(transfer)   # retries retryable aborts, with backoff, bounded

Commit: with every lock and write in one range, one request commits in one replicated round.
Otherwise each participant range replicates a PREPARE (in parallel), the anchor's range (the
coordinator) replicates COMMIT at `commit_ts >= max(prepare_ts)` and waits out commit-wait
before answering, and the participants are resolved in the background (or, if this client
dies, by their own recovery, which asks the coordinator).

Guarantees: strict serializability. If transaction T1's commit returned before T2 started,
`T2.commit_ts > T1.commit_ts` (commit-wait), on clocks skewed within max offset.

HAZARD: an `AmbiguousResult` from commit means the outcome is unknown (the coordinator did
not answer in time); the transaction may have committed. Do not blindly retry non-idempotent
work after it.
"""

from __future__ import annotations

import os
import random
from typing import Any, Awaitable, Callable, Protocol

from clock.timestamp import Timestamp
from ranges.api import (
    AmbiguousResult,
    EndTxnRequest,
    PrepareTxnRequest,
    RangeKeyMismatch,
    ResolveTxnRequest,
    SpanliteError,
    ReadAt,
    TxnAborted,
    TxnRead,
)
from ranges.descriptor import RangeDescriptor
from ranges.keys import KEY_MAX, validate_user_key, validate_value
from ranges.locks import TxnMeta

RETRY_ATTEMPTS_DEFAULT = 10
RETRY_BACKOFF_MIN_S = 0.005
RETRY_BACKOFF_MAX_S = 0.5


class TxnClosed(SpanliteError):
    """The transaction was already committed or aborted: start a new one."""

    code = "txn_closed"


class Sender(Protocol):
    """What a transaction needs from the client (cluster.client.Client)."""

    async def send(self, request: Any, *, retry_mismatch: bool = True, retry_ambiguous: bool = True) -> Any: ...

    async def descriptor_for(self, key: bytes) -> RangeDescriptor: ...

    def forget_descriptor(self, key: bytes) -> None: ...

    def spawn(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None: ...

    async def gather(self, awaitables: list[Awaitable[Any]]) -> None:
        """Run them concurrently (or one after another: both are correct, one is faster)."""

    async def sleep(self, seconds: float) -> None: ...

    def now_ns(self) -> int:
        """Wall-clock ns for a new transaction's priority (any roughly synchronized clock)."""


class Transaction:
    def __init__(self, sender: Sender, *, priority: int | None = None) -> None:
        self._sender = sender
        self.meta = TxnMeta(_txn_id(sender), sender.now_ns() if priority is None else priority)
        self._writes: dict[bytes, bytes | None] = {}
        self._read_spans: list[tuple[bytes, bytes]] = []
        self._state = "open"
        self.commit_ts: Timestamp | None = None

    @property
    def state(self) -> str:
        return self._state

    def _check_open(self) -> None:
        if self._state != "open":
            raise TxnClosed(f"transaction {self.meta.short()} is already {self._state}: start a new transaction")

    # ------------------------------------------------------------------ reads and writes

    async def get(self, key: bytes) -> bytes | None:
        """The value of `key` (None if absent), seeing this transaction's own writes."""
        self._check_open()
        validate_user_key(key)
        if key in self._writes:
            return self._writes[key]
        result = await self._sender.send(TxnRead(self.meta, key, key + b"\x00", None))
        self._read_spans.append(tuple(result["span"]))
        rows = result["rows"]
        return rows[0][1] if rows else None

    async def scan(self, start: bytes, end: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """Keys in `[start, end)` in key order across ranges, with this transaction's writes."""
        self._check_open()
        validate_user_key(start)
        if limit is not None and limit <= 0:
            raise ValueError("scan limit must be positive")
        end = min(end, KEY_MAX)
        buffered = {k: v for k, v in self._writes.items() if start <= k < end}
        # Enough rows that the buffered deletions cannot starve the limit.
        want_total = None if limit is None else limit + sum(1 for v in buffered.values() if v is None)
        rows = await self._locking_scan(start, end, want_total)
        merged = {k: v for k, v in rows}
        merged.update(buffered)
        result = sorted((k, v) for k, v in merged.items() if v is not None)
        return result if limit is None else result[:limit]

    async def _locking_scan(self, start: bytes, end: bytes, limit: int | None) -> list[tuple[bytes, bytes]]:
        rows: list[tuple[bytes, bytes]] = []
        while start < end and (limit is None or len(rows) < limit):
            want = None if limit is None else limit - len(rows)
            result = await self._sender.send(TxnRead(self.meta, start, end, want))
            self._read_spans.append(tuple(result["span"]))
            rows.extend((k, v) for k, v in result["rows"])
            start = result["range_end"]
        return rows

    def put(self, key: bytes, value: bytes) -> None:
        """Buffer a write; it is sent (and locked) at commit."""
        self._check_open()
        validate_user_key(key)
        validate_value(value)
        self._writes[key] = value

    def delete(self, key: bytes) -> None:
        self._check_open()
        validate_user_key(key)
        self._writes[key] = None

    # ------------------------------------------------------------------ commit and abort

    async def commit(self) -> Timestamp | None:
        """Commit; returns (and sets `commit_ts`). Raises TxnAborted (retry the transaction),
        AmbiguousResult (outcome unknown) or another SpanliteError."""
        self._check_open()
        self._state = "committing"
        try:
            groups = await self._participants()
            if not groups:
                self._state = "committed"  # Nothing read or written.
                return None
            if len(groups) == 1:
                self.commit_ts = await self._commit_one_phase(next(iter(groups.values())))
            else:
                self.commit_ts = await self._commit_two_phase(groups)
        except SpanliteError as e:
            if self._state == "deciding" or (self._state == "deciding-1pc" and isinstance(e, AmbiguousResult)):
                # The commit may have been recorded: resolving as aborted could drop committed
                # writes. Leave the locks to recovery, which asks the coordinator.
                self._state = "unknown"
                raise AmbiguousResult(f"the commit of transaction {self.meta.short()} was sent but not "
                                      f"confirmed ({e.message}); it may have committed") from None
            if self._state in ("committing", "deciding-1pc"):
                self._state = "aborted"
                await self._release(self._all_spans(), None)
            raise
        self._state = "committed"
        return self.commit_ts

    async def abort(self) -> None:
        """Give up: drop this transaction's locks (best effort; they expire anyway)."""
        if self._state != "open":
            return
        self._state = "aborted"
        await self._release(self._all_spans(), None)

    async def _participants(self) -> dict[int, "_Participant"]:
        groups: dict[int, _Participant] = {}
        for start, end in self._read_spans:
            descriptor = await self._sender.descriptor_for(start)
            groups.setdefault(descriptor.range_id, _Participant(descriptor)).reads.append((start, end))
        for key, value in sorted(self._writes.items()):
            descriptor = await self._sender.descriptor_for(key)
            groups.setdefault(descriptor.range_id, _Participant(descriptor)).writes.append((key, value))
        return groups

    def _anchor(self) -> bytes:
        """Where the transaction record lives: its first written key (else first read)."""
        return min(self._writes) if self._writes else min(s for s, _ in self._read_spans)

    async def _commit_one_phase(self, participant: "_Participant") -> Timestamp:
        result = await self._prepare(participant, self._anchor(), one_phase=True)
        return Timestamp.decode(result["commit_ts"])

    async def _commit_two_phase(self, groups: dict[int, "_Participant"]) -> Timestamp:
        anchor = self._anchor()
        prepare_ts: list[Timestamp] = []
        failures: list[BaseException] = []

        async def prepare(participant: _Participant) -> None:
            try:
                result = await self._prepare(participant, anchor, one_phase=False)
                prepare_ts.append(Timestamp.decode(result["prepare_ts"]))
            except SpanliteError as e:
                failures.append(e)

        await self._sender.gather([prepare(participant) for participant in groups.values()])
        if failures:
            self._state = "aborted"
            await self._decide_abort(anchor)
            raise failures[0]
        self._state = "deciding"
        decision = await self._sender.send(EndTxnRequest(self.meta.txn_id, anchor, True, max(prepare_ts)))
        self._state = "committing"
        if not decision["committed"]:
            self._state = "aborted"
            await self._release(self._all_spans(), None)
            raise TxnAborted(f"transaction {self.meta.short()} was aborted by recovery before its commit "
                             f"reached the coordinator (it was too slow); retry", txn=self.meta.txn_id.hex())
        commit_ts = Timestamp.decode(decision["commit_ts"])
        self._sender.spawn(self._release, self._all_spans(), commit_ts)  # Resolve in the background.
        return commit_ts

    async def _prepare(self, participant: "_Participant", anchor: bytes, *, one_phase: bool) -> dict:
        request = PrepareTxnRequest(self.meta, anchor, tuple(participant.reads), tuple(participant.writes), one_phase)
        if one_phase:
            self._state = "deciding-1pc"  # A one-phase commit is its own decision.
        try:
            # A retried one-phase commit after an ambiguous attempt would find its locks gone
            # and report an abort of what may have committed: surface the ambiguity instead.
            return await self._sender.send(request, retry_mismatch=False, retry_ambiguous=not one_phase)
        except RangeKeyMismatch as e:
            for key in [s for s, _ in participant.reads] + [k for k, _ in participant.writes]:
                self._sender.forget_descriptor(key)
            raise TxnAborted(f"range {participant.descriptor.range_id} split or moved during the transaction "
                             f"({e.message}); retry", txn=self.meta.txn_id.hex()) from None

    async def _decide_abort(self, anchor: bytes) -> None:
        """Record ABORT at the coordinator (so recovery agrees), then drop every lock."""
        try:
            await self._sender.send(EndTxnRequest(self.meta.txn_id, anchor, False, Timestamp(0, 0)))
        except SpanliteError:
            pass  # Recovery will decide it: nothing was committed.
        await self._release(self._all_spans(), None)

    def _all_spans(self) -> list[tuple[bytes, bytes]]:
        spans = list(self._read_spans) + [(k, k + b"\x00") for k in self._writes]
        return _merge_spans(spans)

    async def _release(self, spans: list[tuple[bytes, bytes]], commit_ts: Timestamp | None) -> None:
        """Resolve (commit_ts set) or abort this transaction's locks in `spans`, range by range."""
        for start, end in spans:
            while start < end:
                try:
                    result = await self._sender.send(ResolveTxnRequest(self.meta.txn_id, start, end, commit_ts))
                except SpanliteError:
                    break  # The participants' recovery finishes the job.
                start = result["range_end"]


class _Participant:
    def __init__(self, descriptor: RangeDescriptor) -> None:
        self.descriptor = descriptor
        self.reads: list[tuple[bytes, bytes]] = []
        self.writes: list[tuple[bytes, bytes | None]] = []


def _merge_spans(spans: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    merged: list[tuple[bytes, bytes]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


async def run_transaction(sender: Sender, fn: Callable[[Transaction], Awaitable[Any]], *,
                          max_attempts: int = RETRY_ATTEMPTS_DEFAULT) -> Any:
    """Run `fn(txn)` and commit, retrying retryable aborts with jittered exponential backoff;
    the retries keep the first attempt's priority, so the transaction ages and eventually
    wins its conflicts (wound-wait). Returns what `fn` returned."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    priority = sender.now_ns()
    backoff = RETRY_BACKOFF_MIN_S
    last: SpanliteError | None = None
    for _ in range(max_attempts):
        txn = Transaction(sender, priority=priority)
        try:
            result = await fn(txn)
            await txn.commit()
            return result
        except SpanliteError as e:
            await txn.abort()
            if not e.retryable or isinstance(e, AmbiguousResult):
                raise
            last = e
        except Exception:
            await txn.abort()  # The caller's own error: release the locks, then let it through.
            raise
        await sender.sleep(backoff * (0.5 + _rng(sender).random()))
        backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
    assert last is not None
    raise TxnAborted(f"gave up after {max_attempts} attempts; last error: {last.message}", attempts=max_attempts)


def _txn_id(sender: Sender) -> bytes:
    """Random, unless the sender supplies ids (the simulator: seeded, so a run replays)."""
    make = getattr(sender, "new_txn_id", None)
    return make() if make is not None else os.urandom(16)


def _rng(sender: Sender) -> random.Random:
    return getattr(sender, "rng", None) or random.Random()


class ReadOnlyTransaction:
    """Lock-free reads of one consistent snapshot: every read is at the timestamp the first
    one chose (the first leaseholder's `now`), or at `ts` if given. Waits only for prepared
    writes that could still commit at or below it; never conflicts with writers.

        async with db.read_only() as snap:
            a, b = await snap.get(b"acct/1"), await snap.get(b"acct/2")
    """

    def __init__(self, sender: Sender, ts: Timestamp | None = None) -> None:
        self._sender = sender
        self.ts = ts

    async def get(self, key: bytes) -> bytes | None:
        validate_user_key(key)
        rows = await self.scan(key, key + b"\x00")
        return rows[0][1] if rows else None

    async def scan(self, start: bytes, end: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        if limit is not None and limit <= 0:
            raise ValueError("scan limit must be positive")
        end = min(end, KEY_MAX)
        rows: list[tuple[bytes, bytes]] = []
        while start < end and (limit is None or len(rows) < limit):
            want = None if limit is None else limit - len(rows)
            result = await self._sender.send(ReadAt(start, end, want, self.ts))
            self.ts = Timestamp.decode(result["ts"])
            rows.extend((k, v) for k, v in result["rows"])
            start = result["range_end"]
        return rows
