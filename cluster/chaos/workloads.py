"""The chaos tool's workloads: operations through the real client, recorded as a history.

Three workloads (op shapes: `cluster/chaos/history.py` and the checkers' contract):

- register: single-key reads (`db.get`), blind writes (`db.put`) of values unique per key,
  and compare-and-set. There is no conditional put in the KV API, so a cas is a one-key
  read-write transaction (read, compare, write): strictly serializable, hence a true cas.
- bank: transfers between accounts on different ranges (a transaction reading both
  balances, failing without a write when the balance is short, writing both) and snapshot
  reads of every account (`db.read_only()`), whose total must never change.
- append: transactions appending unique values to lists on several keys and reading lists
  (read-write transactions, and read-only ones through `db.read_only()`). Some read-write
  transactions are followed at once, by the same process, by a read-only one of the keys
  they appended, at a timestamp from the client's own clock: if a commit is acknowledged
  before its commit-wait ended (planted bug `skip-commit-wait`), that read misses it.

Snapshot reads (bank reads, read-only transactions) pick their timestamp like the
simulator's: half at the first leaseholder's `now`, half at the client's clock (Spanner's
read at TT.now()); the client shares the machine's real clock, which the nodes' skewed
clocks stay within max offset of. A read-write attempt aborted for sure (`TxnAborted`) is
retried within its op, keeping its priority; the op is recorded once.

Outcome rules (Jepsen's): `ok` = happened once; `fail` = definitely did not happen; `info` =
unknown. Every error of a read is `fail` (a read changes nothing). A write or commit that
may have reached the cluster is `info` unless the error proves it was not applied: a
`TxnAborted` from commit (the contract of `txn.transaction`: nothing was written), a failed
comparison (the cas wrote nothing), an error before the commit was sent. A client timeout
(`Unavailable`), `AmbiguousResult`, a lost connection: `info`.

Keys live under their own prefix per workload, spread over several ranges at setup (register:
a range per slot; bank and append: two keys per range), so transactions span ranges and
leaseholders on several nodes; the `split` nemesis splits at keys in use (`split_key`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import trio

from clock.timestamp import Timestamp
from ranges.api import BadRequest, SpanliteError, TxnAborted
from txn.transaction import Transaction

OP_TIMEOUT_S = 12.0  # beyond the client's per-request timeout: a transaction makes several
TXN_ATTEMPTS = 3
RETRY_BACKOFF_S = 0.02
CLIENT_CLOCK_READ_SHARE = 0.5
FINAL_READERS = 4


class Failed(Exception):
    """The operation definitely did not happen."""


class Unknown(Exception):
    """The operation may or may not have happened."""


async def run_op(history, process: int, f: str, value, action) -> str:
    """Record `f` for `process` around `await action()`; returns "ok", "fail" or "info".

    `action` returns the ok value (None: the invoke's value) or raises Failed / Unknown.
    A SpanliteError that escapes `action` is `info` (when in doubt, info); so is a timeout.
    """
    op = history.invoke(process, f, value)
    try:
        with trio.fail_after(OP_TIMEOUT_S):
            result = await action()
    except Failed as e:
        history.fail(op, str(e))
        return "fail"
    except (Unknown, SpanliteError) as e:
        history.info(op, _error_text(e))
        return "info"
    except trio.TooSlowError:
        history.info(op, f"no answer within {OP_TIMEOUT_S:.0f}s")
        return "info"
    history.ok(op, result)
    return "ok"


def _error_text(e: BaseException) -> str:
    message = getattr(e, "message", None) or str(e)
    return f"{type(e).__name__}: {message}"


def _definite(e: SpanliteError) -> Failed:
    return Failed(_error_text(e))


async def split_at(db, split_keys: list[bytes]) -> None:
    """Give every key its own range; a key that already is a boundary is fine (a rerun)."""
    for key in split_keys:
        try:
            await db.admin_split(key)
        except BadRequest as e:
            if "already a range boundary" not in e.message:
                raise


def snapshot(db, rng: random.Random, *, client_clock: bool | None = None):
    """A read-only snapshot: half at the first leaseholder's `now`, half at a timestamp from
    this client's own clock, as Spanner reads at TT.now() of any server (the simulator does
    the same with a node's clock). The client shares the machine's real clock, which every
    node's skewed clock stays within max offset of; such reads are externally consistent only
    because commits wait out max offset before they are acknowledged (commit-wait)."""
    if client_clock or (client_clock is None and rng.random() < CLIENT_CLOCK_READ_SHARE):
        return db.read_only(ts=Timestamp(time.time_ns(), 0))
    return db.read_only()


def _encode_int(n: int) -> bytes:
    return b"%d" % n


def _decode_int(raw: bytes | None) -> int | None:
    return None if raw is None else int(raw)


# ---------------------------------------------------------------------------------------
# register


@dataclass
class RegisterWorkload:
    """Registers in `slots` ranges. Like Jepsen's independent keys, a slot moves on to a fresh
    key after `ops_per_key` operations: the linearizability search is exponential in the
    worst case, and short per-key histories keep a 10-minute run checkable. History key k is
    slot `k % slots`, generation `k // slots`."""

    name = "register"
    slots: int = 8
    ops_per_key: int = 150
    read_share: float = 0.45
    write_share: float = 0.30  # the rest are cas
    _generation: dict[int, int] = field(default_factory=dict)  # slot -> current generation
    _ops_on_key: dict[int, int] = field(default_factory=dict)
    _next_value: dict[int, int] = field(default_factory=dict)
    _last_seen: dict[int, int] = field(default_factory=dict)  # a recent value per key, for cas

    @property
    def keys(self) -> int:
        return self.slots

    def key(self, k: int) -> bytes:
        slot, generation = k % self.slots, k // self.slots
        return b"reg/%03d/%06d" % (slot, generation)

    def slot_key(self, slot: int) -> bytes:
        return b"reg/%03d" % slot

    def split_key(self, rng: random.Random) -> bytes:
        """A slot's current key: its latest writes land right of the split."""
        slot = rng.randrange(self.slots)
        return self.key(self._generation.get(slot, 0) * self.slots + slot)

    async def setup(self, db) -> None:
        await split_at(db, [self.slot_key(slot) for slot in range(self.slots)])

    def check_kwargs(self) -> dict:
        return {}

    def _current_key(self, slot: int) -> int:
        k = self._generation.get(slot, 0) * self.slots + slot
        self._ops_on_key[k] = self._ops_on_key.get(k, 0) + 1
        if self._ops_on_key[k] >= self.ops_per_key:
            self._generation[slot] = self._generation.get(slot, 0) + 1
        return k

    def _unique_value(self, k: int) -> int:
        self._next_value[k] = self._next_value.get(k, 0) + 1
        return self._next_value[k]

    async def operate(self, db, history, process: int, rng: random.Random) -> str:
        k = self._current_key(rng.randrange(self.slots))
        roll = rng.random()
        if roll < self.read_share:
            return await self.read(db, history, process, k)
        if roll < self.read_share + self.write_share:
            return await self._write(db, history, process, k, self._unique_value(k))
        old = self._last_seen.get(k, rng.randrange(1, 5))
        return await self._cas(db, history, process, k, old, self._unique_value(k))

    async def read(self, db, history, process: int, k: int) -> str:
        async def action():
            try:
                value = _decode_int(await db.get(self.key(k)))
            except SpanliteError as e:
                raise _definite(e) from None
            if value is not None:
                self._last_seen[k] = value
            return [k, value]

        return await run_op(history, process, "read", [k, None], action)

    async def _write(self, db, history, process: int, k: int, v: int) -> str:
        async def action():
            await db.put(self.key(k), _encode_int(v))  # any error: it may have been applied
            self._last_seen[k] = v

        return await run_op(history, process, "write", [k, v], action)

    async def _cas(self, db, history, process: int, k: int, old: int, new: int) -> str:
        async def body(txn) -> None:
            current = _decode_int(await txn.get(self.key(k)))
            if current != old:
                raise Failed(f"the value was {current}, not {old}")
            txn.put(self.key(k), _encode_int(new))

        async def action():
            await in_transaction(db, body)
            self._last_seen[k] = new

        return await run_op(history, process, "cas", [k, [old, new]], action)

    async def final_reads(self, db, history, new_process) -> bool:
        """A read of every key ever used, after the faults healed (a few in parallel)."""
        used = sorted(self._ops_on_key)
        outcomes: list[str] = []

        async def read_some(part: list[int]) -> None:
            process = new_process()
            for k in part:
                outcomes.append(await self.read(db, history, process, k))
                if outcomes[-1] == "info":
                    process = new_process()  # never reuse a process whose op is indeterminate

        async with trio.open_nursery() as nursery:
            for i in range(FINAL_READERS):
                nursery.start_soon(read_some, used[i::FINAL_READERS])
        return all(outcome == "ok" for outcome in outcomes)


async def in_transaction(db, body, attempts: int = TXN_ATTEMPTS):
    """`await body(txn)` in a read-write transaction, then commit; returns what body returned.
    An attempt aborted for sure (`TxnAborted`: a conflict, lost locks) is retried, keeping its
    priority so it ages and wins (wound-wait), as `run_transaction` does; the op is one op
    whichever attempt commits. Raises Failed when nothing was written for sure (body raised
    Failed, a read failed, every attempt aborted) and Unknown when a commit may have happened."""
    priority = db.now_ns()
    for attempt in range(attempts):
        try:
            return await _attempt(Transaction(db, priority=priority), body)
        except Failed as e:
            if not isinstance(e.__cause__, TxnAborted) or attempt == attempts - 1:
                raise
        await trio.sleep(RETRY_BACKOFF_S * (attempt + 1))
    raise AssertionError("unreachable: the last attempt raises")


async def _attempt(txn: Transaction, body):
    try:
        result = await body(txn)
    except BaseException as e:
        with trio.CancelScope(shield=True):
            await txn.abort()  # best effort; the locks expire anyway
        if isinstance(e, SpanliteError):
            raise _definite(e) from e  # a read, before anything was sent to commit
        raise
    try:
        await txn.commit()
    except TxnAborted as e:
        raise _definite(e) from e
    except SpanliteError as e:
        # AmbiguousResult; or a timeout (Unavailable) or lost connection, which may hide an
        # applied one-phase commit.
        raise Unknown(_error_text(e)) from None
    return result


# ---------------------------------------------------------------------------------------
# bank


@dataclass
class BankWorkload:
    name = "bank"
    accounts: int = 8
    initial_balance: int = 100
    read_share: float = 0.3
    max_amount: int = 30

    @property
    def total(self) -> int:
        return self.accounts * self.initial_balance

    def key(self, account: int) -> bytes:
        return b"bank/%03d" % account

    def split_key(self, rng: random.Random) -> bytes:
        return self.key(rng.randrange(self.accounts))

    def check_kwargs(self) -> dict:
        return {"bank_accounts": self.accounts, "bank_total": self.total}

    async def setup(self, db) -> None:
        # Two accounts per range: the split nemesis splits them apart during the run.
        await split_at(db, [self.key(a) for a in range(0, self.accounts, 2)])

        async def fund(txn) -> None:
            for account in range(self.accounts):
                txn.put(self.key(account), _encode_int(self.initial_balance))

        await db.run_transaction(fund)  # before the history starts: the checker's known start

    async def operate(self, db, history, process: int, rng: random.Random) -> str:
        if rng.random() < self.read_share:
            return await self.read(db, history, process, rng)
        source, target = rng.sample(range(self.accounts), 2)
        return await self._transfer(db, history, process, source, target, rng.randrange(1, self.max_amount))

    async def read(self, db, history, process: int, rng: random.Random | None = None) -> str:
        async def action():
            try:
                async with (db.read_only() if rng is None else snapshot(db, rng)) as snap:
                    rows = await snap.scan(self.key(0), self.key(self.accounts))
            except SpanliteError as e:
                raise _definite(e) from None
            by_key = dict(rows)
            return {str(a): _decode_int(by_key[self.key(a)]) for a in range(self.accounts) if self.key(a) in by_key}

        return await run_op(history, process, "read", None, action)

    async def _transfer(self, db, history, process: int, source: int, target: int, amount: int) -> str:
        async def body(txn) -> None:
            have = _decode_int(await txn.get(self.key(source)))
            other = _decode_int(await txn.get(self.key(target)))
            if have is None or other is None:
                raise Failed(f"account {source if have is None else target} is missing")
            if have < amount:
                raise Failed(f"insufficient balance: account {source} has {have} < {amount}")
            txn.put(self.key(source), _encode_int(have - amount))
            txn.put(self.key(target), _encode_int(other + amount))

        async def action():
            await in_transaction(db, body)

        value = {"from": source, "to": target, "amount": amount}
        return await run_op(history, process, "transfer", value, action)

    async def final_reads(self, db, history, new_process) -> bool:
        return await self.read(db, history, new_process()) == "ok"


# ---------------------------------------------------------------------------------------
# append


def _encode_list(values: list[int]) -> bytes:
    return b",".join(b"%d" % v for v in values)


def _decode_list(raw: bytes | None) -> list[int]:
    return [] if not raw else [int(v) for v in raw.split(b",")]


@dataclass
class AppendWorkload:
    name = "append"
    # Each read-write transaction holds its locks through commit-wait (max offset): with few
    # keys the workers queue behind each other (wound-wait) and little gets done.
    keys: int = 16
    read_only_share: float = 0.25
    append_share: float = 0.6  # of the micro-ops of read-write transactions
    max_ops: int = 3
    read_back_share: float = 0.3  # read-write transactions followed by a read of what they appended
    _next_value: int = 0

    def key(self, k: int) -> bytes:
        return b"app/%03d" % k

    def check_kwargs(self) -> dict:
        return {}

    async def setup(self, db) -> None:
        # Two keys per range: the split nemesis splits them apart during the run.
        await split_at(db, [self.key(k) for k in range(0, self.keys, 2)])

    def split_key(self, rng: random.Random) -> bytes:
        return self.key(rng.randrange(self.keys))

    def _micro_ops(self, rng: random.Random, read_only: bool) -> list[list]:
        ops = []
        for k in rng.sample(range(self.keys), rng.randrange(1, self.max_ops + 1)):  # distinct keys
            if not read_only and rng.random() < self.append_share:
                self._next_value += 1
                ops.append(["append", k, self._next_value])
            else:
                ops.append(["r", k, None])
        return ops

    async def operate(self, db, history, process: int, rng: random.Random) -> str:
        read_only = rng.random() < self.read_only_share
        ops = self._micro_ops(rng, read_only)
        if read_only:
            return await self.read_txn(db, history, process, ops, rng)
        outcome = await self._txn(db, history, process, ops)
        appended = [["r", k, None] for kind, k, _ in ops if kind == "append"]
        if outcome == "ok" and appended and rng.random() < self.read_back_share:
            # Read back at once, at this client's clock: the commit was acknowledged, so every
            # snapshot from now on must show it - if commit-wait ended before the answer.
            return await self.read_txn(db, history, process, appended, rng, client_clock=True)
        return outcome

    async def read_txn(self, db, history, process: int, ops: list[list], rng: random.Random | None = None,
                       *, client_clock: bool | None = None) -> str:
        async def action():
            try:
                async with (db.read_only() if rng is None else snapshot(db, rng, client_clock=client_clock)) as snap:
                    return [["r", k, _decode_list(await snap.get(self.key(k)))] for _, k, _ in ops]
            except SpanliteError as e:
                raise _definite(e) from None

        return await run_op(history, process, "txn", ops, action)

    async def _txn(self, db, history, process: int, ops: list[list]) -> str:
        async def body(txn) -> list[list]:
            done = []
            for kind, k, value in ops:
                current = _decode_list(await txn.get(self.key(k)))
                if kind == "append":
                    txn.put(self.key(k), _encode_list(current + [value]))
                    done.append([kind, k, value])
                else:
                    done.append([kind, k, current])
            return done

        async def action():
            return await in_transaction(db, body)

        return await run_op(history, process, "txn", ops, action)

    async def final_reads(self, db, history, new_process) -> bool:
        return await self.read_txn(db, history, new_process(), [["r", k, None] for k in range(self.keys)]) == "ok"


WORKLOADS = {"register": RegisterWorkload, "bank": BankWorkload, "append": AppendWorkload}
