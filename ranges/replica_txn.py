"""How a leaseholder serves transactions (a mixin of `ranges.replica.Replica`).

The protocol (docs/TRANSACTIONS.md): locking reads take read locks here (`ranges.locks`,
wound-wait); at commit the client sends each participant range a PREPARE with the spans it
read and the writes it buffered there; the participant checks its read locks are still held,
takes write locks, picks `prepare_ts = hlc.now()` (above every timestamp it has served) and
replicates the PREPARE. The coordinator range (the anchor key's) then replicates the decision
(EndTxn, commit at `commit_ts >= max(prepare_ts)` and `>= now`), waits out commit-wait and
answers; the client resolves the participants, which apply the writes at `commit_ts` and drop
the locks. A transaction within one range commits in one replicated round (`one_phase`).

Commit-wait overlaps replication: the answer is released at `max(applied, commit_ts.wall +
max_offset)`, a deadline fixed when the commit timestamp is chosen (before proposing), so
replication and the wait run at the same time rather than one after the other.

Planted bugs (the simulator's): `skip-commit-wait` answers without the wait;
`release-locks-before-commit-record` ignores prepared locks in conflict checks;
`read-ignores-prepared` lets snapshot reads skip prepared writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from clock.hlc import ClockOffsetError
from clock.timestamp import Timestamp
from paxos_groups.core import NotLeader, ProposalQueueFull
from paxos_groups.lease import Lease
from ranges import commands
from ranges.api import (
    BadRequest,
    EndTxnRequest,
    NotLeaseholder,
    PrepareTxnRequest,
    ReadAt,
    ResolveTxnRequest,
    TxnAborted,
    TxnRead,
    Unavailable,
)
from ranges.keys import SYSTEM_KEY_MAX
from ranges.locks import READ, WRITE, PreparedLock, prepared_writes_blocking
from ranges.txn_state import TxnRecord

BUG_SKIP_COMMIT_WAIT = "skip-commit-wait"
BUG_RELEASE_LOCKS_BEFORE_COMMIT = "release-locks-before-commit-record"
BUG_READ_IGNORES_PREPARED = "read-ignores-prepared"
TXN_BUGS = frozenset({BUG_SKIP_COMMIT_WAIT, BUG_RELEASE_LOCKS_BEFORE_COMMIT, BUG_READ_IGNORES_PREPARED})

TXN_LOCK_INACTIVE_NS = 5_000_000_000  # unprepared locks of a silent transaction are dropped
TXN_RECOVER_AFTER_NS = 2_000_000_000  # a prepare older than this asks its coordinator


@dataclass
class CommitWait:
    until_ns: int  # physical time after which the answer may go
    pending: object
    answer: dict


class TxnServing:
    """Mixin: the transaction half of Replica (its fields are declared there)."""

    # ------------------------------------------------------------------ conflicts

    def _prepared_for_conflicts(self) -> list[PreparedLock]:
        if BUG_RELEASE_LOCKS_BEFORE_COMMIT in self.bugs:
            return []  # Planted bug: prepared locks no longer stop anyone.
        return self.sm.txn.prepared

    def _lock_holders(self, txn, kind: str, start: bytes, end: bytes):
        self.locks.check_lease(self.sm.lease.sequence)
        if end <= SYSTEM_KEY_MAX:
            return []  # System keys (meta, liveness) are never locked by transactions.
        return self.locks.holders(txn, kind, start, end, self._prepared_for_conflicts())

    def _snapshot_blocked(self, start: bytes, end: bytes, ts: Timestamp) -> bool:
        """A read at `ts` waits for prepared writes that may commit at or below it, and for
        committed writes at or below it whose commit-wait is not over (`_unwaited_blocks`)."""
        if self._unwaited_blocks(start, end, ts):
            return True
        if BUG_READ_IGNORES_PREPARED in self.bugs:
            return False
        locks = self.sm.txn.prepared + self.locks.reserved_locks()
        return prepared_writes_blocking(locks, start, end, ts)

    def _unwaited_blocks(self, start: bytes, end: bytes, ts: Timestamp) -> bool:
        """Spanner's rule: nobody sees a transaction's writes before its commit-wait is over
        (TT.after(commit_ts)). Otherwise a reader could see a write whose commit timestamp is
        still ahead of another node's clock, and a later snapshot at that clock would not:
        a real-time violation, though no one acknowledged the write yet."""
        if not self.unwaited:
            return False
        now_ns = self.hlc.physical_now_ns()
        self.unwaited = [u for u in self.unwaited if u[0] > now_ns]
        return any(commit_ts <= ts and any(start <= key < end for key in written)
                   for _, commit_ts, written in self.unwaited)

    def _note_unwaited(self, commit_ts: Timestamp, written: list[bytes]) -> None:
        until_ns = self._commit_wait_until(commit_ts)
        if written and BUG_SKIP_COMMIT_WAIT not in self.bugs and until_ns > self.hlc.physical_now_ns():
            self.unwaited.append((until_ns, commit_ts, written))
            self.on_wake_at(until_ns)

    # ------------------------------------------------------------------ dispatch

    def _try_txn(self, pending, now: Timestamp, lease: Lease) -> bool:
        request = pending.request
        try:
            if isinstance(request, ReadAt):
                return self._try_read_at(pending, now)
            if isinstance(request, TxnRead):
                return self._try_txn_read(pending, now)
            if isinstance(request, PrepareTxnRequest):
                return self._try_prepare(pending, now, lease)
            if isinstance(request, EndTxnRequest):
                return self._try_end_txn(pending, lease)
            assert isinstance(request, ResolveTxnRequest), f"not a transaction request: {request!r:.60}"
            return self._try_resolve(pending, now)
        except ClockOffsetError as e:
            self._fail(pending, BadRequest(f"timestamp too far ahead of this node's clock: {e}"))
            return True

    # ------------------------------------------------------------------ reads

    def _try_read_at(self, pending, now: Timestamp) -> bool:
        request = pending.request
        ts = now if request.ts is None else request.ts
        if request.ts is not None:
            self.hlc.update(request.ts)  # Later writes here land above this read.
        if self._span_latched(request.start, request.end) or self._snapshot_blocked(request.start, request.end, ts):
            return False
        rows = self.sm.mvcc.scan(request.start, request.end, ts, request.limit)
        self.respond(pending.client, pending.request_id, {
            "rows": [[k, v] for k, v in rows], "range_end": self.sm.descriptor.end_key, "ts": ts.encode()})
        return True

    def _try_txn_read(self, pending, now: Timestamp) -> bool:
        request = pending.request
        if self._answer_if_wounded(pending, request.txn):
            return True
        holders = self._lock_holders(request.txn, READ, request.start, request.end)
        if not self.locks.may_proceed(request.txn, holders, request.start):
            return False  # Wait for an older or prepared writer.
        if self._span_latched(request.start, request.end) or self._unwaited_blocks(request.start, request.end, now):
            return False
        rows = self.sm.mvcc.scan(request.start, request.end, now, request.limit)
        # Lock what was read: all of the span, or up to the last row when the limit cut it.
        end = request.end
        if request.limit is not None and len(rows) == request.limit:
            end = rows[-1][0] + b"\x00"
        self.locks.add_read(request.txn, request.start, end, self.hlc.physical_now_ns())
        self.respond(pending.client, pending.request_id, {
            "rows": [[k, v] for k, v in rows], "range_end": self.sm.descriptor.end_key,
            "span": [request.start, end], "ts": now.encode()})
        return True

    def _answer_if_wounded(self, pending, txn) -> bool:
        self.locks.check_lease(self.sm.lease.sequence)
        why = self.locks.wounded.get(txn.txn_id)
        if why is None:
            return False
        self._fail(pending, TxnAborted(f"transaction {txn.short()} was aborted at range {self.range_id}: {why}",
                                       txn=txn.txn_id.hex(), range_id=self.range_id))
        return True

    # ------------------------------------------------------------------ prepare / one phase

    def _try_prepare(self, pending, now: Timestamp, lease: Lease) -> bool:
        request = pending.request
        txn = request.txn
        if self._answer_if_wounded(pending, txn):
            return True
        if not self.locks.holds_reads(txn, list(request.reads)):
            self._fail(pending, TxnAborted(
                f"transaction {txn.short()} lost its read locks on range {self.range_id} (the lease moved, "
                f"or they expired); retry the transaction", txn=txn.txn_id.hex(), range_id=self.range_id))
            return True
        for key, _ in request.writes:
            if not self.locks.may_proceed(txn, self._lock_holders(txn, WRITE, key, key + b"\x00"), key):
                return False
        if not self.group.is_leader:
            return False
        if request.one_phase and not request.writes:
            return self._commit_read_only(pending, now)
        return self._propose_prepare(pending, now, lease)

    def _propose_prepare(self, pending, now: Timestamp, lease: Lease) -> bool:
        request = pending.request
        txn = request.txn
        if request.one_phase:
            command = commands.OnePhaseCommit(txn, tuple(request.writes), now, lease.sequence)
            locks = [PreparedLock(txn, WRITE, k, k + b"\x00", v, now, request.anchor) for k, v in request.writes]
            kind = "commit1pc"
        else:
            locks = [PreparedLock(txn, READ, s, e, None, now, request.anchor) for s, e in request.reads]
            locks += [PreparedLock(txn, WRITE, k, k + b"\x00", v, now, request.anchor) for k, v in request.writes]
            command = commands.PrepareTxn(txn, tuple(locks), now, lease.sequence)
            kind = "prepare"
        if not self._propose_txn(pending, command, kind, txn.txn_id):
            return True
        self.locks.reserve(txn, locks, self.hlc.physical_now_ns())
        return True

    def _commit_read_only(self, pending, now: Timestamp) -> bool:
        """A transaction that only read, all in this range: its locks held until now make
        `now` its commit timestamp; nothing to replicate, only commit-wait."""
        self.locks.release(pending.request.txn.txn_id)
        self._answer_after_commit_wait(pending, now, {"commit_ts": now.encode()})
        return True

    def _propose_txn(self, pending, command, kind: str, txn_id: bytes) -> bool:
        try:
            self._propose(commands.encode_command(command))
        except (NotLeader, ProposalQueueFull) as e:
            self._fail(pending, Unavailable(f"range {self.range_id} cannot take the transaction now: {e}"))
            return False
        pending.proposed = True
        self.waiting_txn.setdefault((kind, txn_id), []).append(pending)
        return True

    # ------------------------------------------------------------------ decide / resolve

    def _try_end_txn(self, pending, lease: Lease) -> bool:
        request = pending.request
        if not self.group.is_leader:
            return False
        self.hlc.update(request.min_commit_ts)  # commit_ts >= every prepare_ts
        ts = self.hlc.now()
        command = commands.EndTxn(request.txn_id, request.anchor, request.commit, ts, lease.sequence)
        self._propose_txn(pending, command, "end_txn", request.txn_id)
        return True

    def _try_resolve(self, pending, now: Timestamp) -> bool:
        request = pending.request
        if request.commit_ts is not None:
            self.hlc.update(request.commit_ts)  # Later prepares here land above the commit.
        self.locks.release(request.txn_id)
        end = min(request.end, self.sm.descriptor.end_key)
        mine = [lock for lock in self.sm.txn.prepared_of(request.txn_id) if request.start <= lock.start < end]
        if not mine:
            self.respond(pending.client, pending.request_id, {"resolved": 0, "range_end": self.sm.descriptor.end_key})
            return True
        if not self.group.is_leader:
            return False
        command = commands.ResolveTxn(request.txn_id, request.start, end, request.commit_ts, now)
        self._propose_txn(pending, command, "resolve", request.txn_id)
        return True

    def propose_recovery_resolve(self, txn_id: bytes, commit_ts: Timestamp | None) -> None:
        """Recovery found the decision: resolve the transaction's locks in this whole range."""
        self.recovering.discard(txn_id)
        if not self.group.is_leader or not self.sm.txn.prepared_of(txn_id):
            return
        d = self.sm.descriptor
        command = commands.ResolveTxn(txn_id, max(d.start_key, SYSTEM_KEY_MAX), d.end_key, commit_ts, self.hlc.now())
        try:
            self._propose(commands.encode_command(command))
        except (NotLeader, ProposalQueueFull):
            pass  # The next recovery pass tries again.

    # ------------------------------------------------------------------ applied

    def _txn_applied(self, result, value: object) -> None:
        command = commands.decode_command(value)
        txn_id = command.txn.txn_id if hasattr(command, "txn") else command.txn_id
        if result.ok and isinstance(command, commands.OnePhaseCommit):
            self._note_unwaited(command.ts, [key for key, _ in command.writes])
        elif result.ok and isinstance(command, commands.ResolveTxn) and command.commit_ts is not None:
            self._note_unwaited(command.commit_ts, list(result.written or ()))
        self.locks.release(txn_id)  # Reservations and read locks: now replicated, resolved or gone.
        waiters = self.waiting_txn.pop((result.kind, txn_id), [])
        for pending in waiters:
            self._answer_txn(pending, result)

    def _answer_txn(self, pending, result) -> None:
        if not result.ok:
            self._fail(pending, _txn_failure(self.range_id, result))
            return
        if result.kind == "prepare":
            self.respond(pending.client, pending.request_id, {"prepare_ts": result.ts.encode()})
        elif result.kind == "commit1pc":
            self._answer_after_commit_wait(pending, result.ts, {"commit_ts": result.ts.encode()})
        elif result.kind == "end_txn":
            record = TxnRecord.decode(result.value)
            if record.committed:
                self._answer_after_commit_wait(pending, record.ts, {"committed": True, "commit_ts": record.ts.encode()})
            else:
                self.respond(pending.client, pending.request_id, {"committed": False})
        else:
            self.respond(pending.client, pending.request_id, {"resolved": result.value,
                                                              "range_end": self.sm.descriptor.end_key})

    def _commit_wait_until(self, commit_ts: Timestamp) -> int:
        """Spanner's TT.after(commit_ts): every node's clock is past commit_ts once ours is
        past commit_ts + max_offset."""
        return commit_ts.wall_ns + self.hlc.max_offset_ns + 1

    def _answer_after_commit_wait(self, pending, commit_ts: Timestamp, answer: dict) -> None:
        until_ns = self._commit_wait_until(commit_ts)
        if BUG_SKIP_COMMIT_WAIT in self.bugs or self.hlc.physical_now_ns() >= until_ns:
            self.respond(pending.client, pending.request_id, answer)
            return
        self.commit_waits.append(CommitWait(until_ns, pending, answer))
        self.on_wake_at(until_ns)

    def release_commit_waits(self, physical_now_ns: int) -> None:
        if not self.commit_waits:
            return
        due = [w for w in self.commit_waits if w.until_ns <= physical_now_ns]
        if due:
            self.commit_waits = [w for w in self.commit_waits if w.until_ns > physical_now_ns]
            for wait in due:
                self.respond(wait.pending.client, wait.pending.request_id, wait.answer)

    # ------------------------------------------------------------------ time

    def tick_txns(self, physical_now_ns: int) -> None:
        self.release_commit_waits(physical_now_ns)
        self.locks.check_lease(self.sm.lease.sequence)
        if self.locks.txns:
            self.locks.expire(physical_now_ns, TXN_LOCK_INACTIVE_NS)
        if self.sm.txn.prepared and self.group.is_leader:
            self._recover_stale_prepares(physical_now_ns)

    def _recover_stale_prepares(self, physical_now_ns: int) -> None:
        """A prepare still here long after it was made: its coordinator or client may be
        gone. Ask the anchor's range for the decision (it aborts, exactly once, if none)."""
        for lock in self.sm.txn.prepared:
            txn_id = lock.txn.txn_id
            if txn_id in self.recovering or physical_now_ns - lock.prepare_ts.wall_ns < TXN_RECOVER_AFTER_NS:
                continue
            self.recovering.add(txn_id)
            self.on_recover_txn(self, txn_id, lock.anchor)

    def fail_txn_waiters(self, error) -> None:
        for waiters in self.waiting_txn.values():
            for pending in waiters:
                self._fail(pending, error)
        self.waiting_txn.clear()
        for wait in self.commit_waits:
            self._fail(wait.pending, error)
        self.commit_waits = []


def _txn_failure(range_id: int, result):
    if result.kind in ("prepare", "commit1pc"):
        return TxnAborted(f"range {range_id} rejected the transaction's prepare: {result.error}; retry the "
                          f"transaction", range_id=range_id)
    return NotLeaseholder(f"range {range_id} rejected the request: {result.error}; retry",
                          leaseholder=None, leaseholder_address=None)
