"""A Replica: one range's Paxos group and state machine on one node, and the requests it serves.

Sans-I/O, like the Paxos core under it: the Store feeds it requests, ticks and chosen log
entries, and collects the responses it produces.

Serving rules (the reasons are the guarantees):
- Only the leaseholder serves, and only while its lease is VALID by its own clock
  (`paxos_groups.lease`): reads are answered from applied state at `hlc.now()` without a
  consensus round. Lease disjointness means no other node serves at the same time.
- A write is proposed only by a leaseholder that is also the Paxos leader, stamped with
  `hlc.now()` and the lease sequence; the state machine rejects it if another lease was
  applied first, so a write never lands outside the lease it was proposed under.
- A read of a key with a write in flight (proposed here, not yet applied) waits for it:
  the write's timestamp is below the read's, so answering without it would expose a
  version order that a later read contradicts. Writes hold a latch on their key until
  applied, dropped or timed out.
- Every request has a deadline; nothing waits forever, every queue is bounded.

HAZARD: a write that times out after being proposed may still apply later. The client
gets `AmbiguousResult` and retries with the same op_id, which the state machine
deduplicates, so the retry never applies twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from clock.hlc import HybridLogicalClock
from clock.timestamp import Timestamp
from paxos_groups.core import NotLeader, PaxosGroup, ProposalQueueFull
from paxos_groups.lease import (
    Lease,
    LeaseStatus,
    effective_expiration,
    lease_status,
    request_lease,
    transfer_lease,
)
from ranges import commands
from ranges.api import (
    AdminSplit,
    AmbiguousResult,
    ConditionFailed,
    Increment,
    IncrementNodeEpoch,
    NodeHeartbeat,
    Delete,
    Get,
    NotLeaseholder,
    Put,
    RangeKeyMismatch,
    Scan,
    SpanliteError,
    TXN_REQUESTS,
    Unavailable,
)
from ranges.liveness import NodeLiveness
from ranges.locks import WRITE, LockTable
from ranges.replica_txn import CommitWait, TxnServing
from ranges.state_machine import ApplyResult, RangeStateMachine

log = logging.getLogger("spanlite.replica")

# Writes whose answer carries the applied value.
VALUE_ANSWERS = (Increment, NodeHeartbeat, IncrementNodeEpoch)

# respond(client, request_id, result_or_error)
Respond = Callable[[Any, int, Any], None]


@dataclass
class ReplicaConfig:
    lease_duration_ns: int = 2_000_000_000
    lease_renew_before_ns: int = 1_000_000_000
    lease_request_timeout_ns: int = 1_000_000_000
    request_timeout_ns: int = 5_000_000_000
    redirect_after_ns: int = 1_000_000_000  # a queued request at a node without a valid lease
    max_queued_requests: int = 10_000
    log_retain_entries: int = 1_000
    log_compact_every: int = 500
    lease_idle_keep_ns: int = 10_000_000_000


@dataclass
class PendingRequest:
    client: Any
    request_id: int
    request: Get | Put | Delete | Scan
    deadline_ns: int
    proposed: bool = False
    attempts: int = 0  # Restarts of an AdminSplit after concurrent splits (Store._retry_split).


@dataclass
class _LeaseAttempt:
    sequence: int
    deadline_ns: int


TXN_KINDS = ("prepare", "commit1pc", "end_txn", "resolve")


@dataclass
class Replica(TxnServing):
    node_id: int
    group: PaxosGroup
    sm: RangeStateMachine
    hlc: HybridLogicalClock
    config: ReplicaConfig
    respond: Respond
    address_of: Callable[[int], str | None]
    bugs: frozenset[str] = frozenset()
    queued: list[PendingRequest] = field(default_factory=list)
    # op_id -> requests waiting for that write to apply (a retry may share an op_id).
    waiting_writes: dict[bytes, list[PendingRequest]] = field(default_factory=dict)
    # key -> number of writes proposed here and not yet resolved (latches).
    latched_keys: dict[bytes, int] = field(default_factory=dict)
    lease_attempt: _LeaseAttempt | None = None
    # See commands.RequestLease.proposed_ts: set at construction (store start), and the
    # lease becomes usable here once a lease command proposed after it has applied.
    started_ts: Timestamp | None = None
    lease_usable: bool = False
    # When this replica last got a request (physical ns); see wants_lease.
    last_active_ns: int = 0
    # The meta range keeps its lease even when idle: splits and lookups need it at once.
    always_leased: bool = False
    # The sequence of a lease of ours we proposed to transfer away (0: none).
    transferred_sequence: int = 0
    # Set by the Store: called whenever this replica's group may have new output.
    on_dirty: Callable[["Replica"], None] = lambda replica: None
    # Set by the Store: runs the split of this range requested by `pending` (AdminSplit).
    on_admin_split: Callable[["Replica", PendingRequest], None] | None = None
    # The node's liveness view (set by the Store): with it, this range takes epoch leases
    # (unless always_leased: the meta range, which liveness itself lives on, keeps
    # expiration leases). None: expiration leases only.
    liveness: NodeLiveness | None = None
    # Set by the Store: ask the meta range to end (holder, epoch), whose liveness expired.
    on_epoch_expired: Callable[[int, int], None] = lambda holder, epoch: None
    # Transactions (ranges.replica_txn): the leaseholder's lock table, requests waiting for
    # a transaction command to apply, answers held back by commit-wait.
    locks: LockTable = field(default_factory=LockTable)
    waiting_txn: dict[tuple[str, bytes], list[PendingRequest]] = field(default_factory=dict)
    commit_waits: list[CommitWait] = field(default_factory=list)
    recovering: set[bytes] = field(default_factory=set)
    # Committed transaction writes still in their commit-wait: (until physical ns, commit_ts, keys).
    unwaited: list[tuple[int, Timestamp, list[bytes]]] = field(default_factory=list)
    # Set by the Store: wake the node at this physical time (a commit-wait ends).
    on_wake_at: Callable[[int], None] = lambda until_ns: None
    # Set by the Store: False while this node's clock is too far from the cluster's
    # (ranges.clock_monitor): then it neither serves nor takes leases.
    clock_ok: Callable[[], bool] = lambda: True
    # Set by the Store: find out how transaction txn_id (anchored at key) was decided.
    on_recover_txn: Callable[["Replica", bytes, bytes], None] = lambda replica, txn_id, anchor: None

    def __post_init__(self) -> None:
        self.started_ts = self.hlc.now()

    @property
    def range_id(self) -> int:
        return self.sm.descriptor.range_id

    # ------------------------------------------------------------------ requests

    def _propose(self, value: object) -> None:
        self.group.propose(value)
        self.on_dirty(self)  # The Store collects Readies only from groups marked dirty.

    def wants_lease(self) -> bool:
        """Keep (or get) a lease only while someone uses the range: 1,000 idle ranges must
        not cost 1,000 lease renewals a second. The next request re-acquires it (one round)."""
        if self.queued or self.waiting_writes or self.always_leased or self.sm.pending_meta or self.waiting_txn:
            return True
        return self.hlc.physical_now_ns() - self.last_active_ns < self.config.lease_idle_keep_ns

    def is_idle(self) -> bool:
        busy = (self.queued or self.waiting_writes or self.lease_attempt or self.group.transfer_target is not None
                or self.waiting_txn or self.commit_waits or self.locks.txns or self.sm.txn.prepared)
        return not busy and self.group.quiesced

    def handle(self, pending: PendingRequest) -> None:
        self.last_active_ns = self.hlc.physical_now_ns()
        start, end = pending.request.keys_touched()
        if not self.sm.descriptor.contains_span(start, end):
            self._fail(pending, RangeKeyMismatch(
                f"keys [{start!r}, {end!r}) are not all in range {self.range_id}",
                descriptor=self.sm.descriptor.encode()))
            return
        if len(self.queued) >= self.config.max_queued_requests:
            self._fail(pending, Unavailable(f"range {self.range_id} is overloaded: too many queued requests; retry later"))
            return
        self.queued.append(pending)
        self.serve_queued()

    def serve_queued(self) -> None:
        """Try every queued request again; keep those still waiting (lease, latch, leader)."""
        if not self.queued:
            return
        now = self.hlc.now()
        still_waiting = []
        for pending in self.queued:
            if not self._try_serve(pending, now):
                still_waiting.append(pending)
        self.queued = still_waiting

    def _try_serve(self, pending: PendingRequest, now: Timestamp) -> bool:
        """Serve or redirect `pending`; False when it must wait (and stays queued)."""
        if not self.sm.descriptor.contains_span(*pending.request.keys_touched()):
            # The range split while the request waited: its keys now belong to another
            # range, whose lease (and applied state) this one must not answer for.
            self._fail(pending, RangeKeyMismatch(
                f"range {self.range_id} no longer holds these keys (it split); retry",
                descriptor=self.sm.descriptor.encode()))
            return True
        lease = self.sm.lease
        status = self._lease_status(lease, now)
        if status is LeaseStatus.VALID:
            if isinstance(pending.request, (Get, Scan)):
                return self._try_read(pending, now)
            if isinstance(pending.request, TXN_REQUESTS):
                return self._try_txn(pending, now, lease)
            if isinstance(pending.request, AdminSplit):
                return self._try_admin_split(pending)
            return self._try_write(pending, now, lease)
        redirect = self._redirect_target(lease, now)
        if redirect is not None:
            self._fail(pending, NotLeaseholder(
                f"node {self.node_id} does not hold the lease of range {self.range_id}",
                leaseholder=redirect, leaseholder_address=self.address_of(redirect),
                descriptor=self.sm.descriptor.encode()))
            return True
        self.maintain_lease(now)
        return False

    def _liveness_lookup(self):
        return None if self.liveness is None else self.liveness.expiration_of

    def _lease_end(self, lease: Lease) -> Timestamp:
        return effective_expiration(lease, self._liveness_lookup())

    def _lease_status(self, lease: Lease, now: Timestamp) -> LeaseStatus:
        status = lease_status(lease, self.node_id, now, self.hlc.max_offset_ns, self._liveness_lookup())
        if status is LeaseStatus.VALID and not self.lease_usable:
            return LeaseStatus.STASIS  # Held from before a restart: renew before serving.
        if status is LeaseStatus.VALID and not self.clock_ok():
            return LeaseStatus.STASIS  # Our clock is off: serving could break lease disjointness.
        if status is LeaseStatus.VALID and lease.sequence == self.transferred_sequence:
            return LeaseStatus.STASIS  # Being handed to another node: never serve under it again.
        if "lease-without-stasis" in self.bugs and status is LeaseStatus.STASIS:
            return LeaseStatus.VALID  # Planted bug: serve through the stasis period.
        return status

    def _redirect_target(self, lease: Lease, now: Timestamp) -> int | None:
        """Another node that may be serving this range, or None when we should wait here."""
        ends = self._lease_end(lease)
        if lease.holder not in (0, self.node_id) and now < ends:
            return lease.holder
        if lease.is_epoch and lease.holder != self.node_id and not self._holder_liveness_known(lease):
            return lease.holder  # Just started, no ping from the holder yet: assume it lives.
        if lease.holder == self.node_id and now < ends:
            return None  # Ours but not usable yet (stasis, or from before a restart): wait here.
        if self.group.is_leader:
            return None  # We will acquire the lease.
        hint = self.group.leader_hint
        if hint is not None and hint != self.node_id:
            return hint
        return None  # Election in progress: wait.

    def _try_read(self, pending: PendingRequest, now: Timestamp) -> bool:
        request = pending.request
        if self._span_latched(*request.keys_touched()) or self._snapshot_blocked(*request.keys_touched(), now):
            return False
        if isinstance(request, Get):
            self.respond(pending.client, pending.request_id, {"value": self.sm.mvcc.get(request.key, now)})
        else:
            rows = self.sm.mvcc.scan(request.start, request.end, now, request.limit)
            # range_end tells the client where to continue a scan that spans ranges.
            self.respond(pending.client, pending.request_id, {
                "rows": [[k, v] for k, v in rows], "range_end": self.sm.descriptor.end_key})
        return True

    def _span_latched(self, start: bytes, end: bytes) -> bool:
        if not self.latched_keys:
            return False
        if end == start + b"\x00":
            return start in self.latched_keys
        return any(start <= key < end for key in self.latched_keys)

    def _try_write(self, pending: PendingRequest, now: Timestamp, lease: Lease) -> bool:
        if not self.group.is_leader:
            return False  # Leaseholder without leadership: wait for it, or for the lease to move.
        request = pending.request
        if self._lock_holders(None, WRITE, request.key, request.key + b"\x00"):
            return False  # A plain write is the youngest of all: it waits for transactions' locks.
        command = _command_for(request, now, lease.sequence)
        try:
            self._propose(commands.encode_command(command))
        except (NotLeader, ProposalQueueFull) as e:
            self._fail(pending, Unavailable(f"range {self.range_id} cannot take the write now: {e}"))
            return True
        pending.proposed = True
        self.waiting_writes.setdefault(request.op_id, []).append(pending)
        self.latched_keys[request.key] = self.latched_keys.get(request.key, 0) + 1
        return True

    def _try_admin_split(self, pending: PendingRequest) -> bool:
        if not self.group.is_leader:
            return False
        assert self.on_admin_split is not None, "a replica without a split orchestrator"
        self.on_admin_split(self, pending)
        return True

    def propose_split(self, split_key: bytes, right_range_id: int) -> bool:
        """As leaseholder and leader: propose the Split command; False if we cannot now."""
        now = self.hlc.now()
        lease = self.sm.lease
        if self._lease_status(lease, now) is not LeaseStatus.VALID or not self.group.is_leader:
            return False
        command = commands.Split(split_key=split_key, right_range_id=right_range_id,
                                 expected_generation=self.sm.descriptor.generation, ts=now,
                                 lease_sequence=lease.sequence)
        try:
            self._propose(commands.encode_command(command))
        except (NotLeader, ProposalQueueFull):
            return False
        return True

    def propose_meta_ack(self, generation: int) -> bool:
        """As leader: record that meta holds our splits up to `generation`."""
        if not self.group.is_leader:
            return False
        try:
            self._propose(commands.encode_command(commands.MetaAck(generation, self.hlc.now())))
        except (NotLeader, ProposalQueueFull):
            return False
        return True

    # ------------------------------------------------------------------ leases

    def transfer_lease(self, target: int) -> bool:
        """Hand lease and leadership to `target` (a replica). From the moment of proposing,
        this node stops serving under its lease for good; if the transfer fails, the lease
        runs out and the leader acquires a fresh one."""
        now = self.hlc.now()
        lease = self.sm.lease
        if target not in self.sm.descriptor.replicas or target == self.node_id:
            return False
        if self._lease_status(lease, now) is not LeaseStatus.VALID or not self.group.is_leader:
            return False
        wanted = transfer_lease(lease, target, now, self.config.lease_duration_ns)
        command = commands.RequestLease(wanted, lease.sequence, now, transfer_from=self.node_id, prev=lease)
        try:
            self._propose(commands.encode_command(command))
        except (NotLeader, ProposalQueueFull):
            return False
        self.transferred_sequence = lease.sequence
        self.group.transfer_leadership(target)
        self.on_dirty(self)
        return True

    def _holder_liveness_known(self, lease: Lease) -> bool:
        return self.liveness is None or self.liveness.knows(lease.holder)

    def _live_epoch(self, now: Timestamp) -> int:
        """Our liveness epoch if we may take epoch leases now, else 0 (expiration leases)."""
        if self.liveness is None or self.always_leased:
            return 0
        return self.liveness.live_epoch(now, self.hlc.max_offset_ns)

    def maintain_lease(self, now: Timestamp) -> None:
        """As Paxos leader: acquire an expired lease; renew our expiration lease before it runs
        out, or upgrade it to an epoch lease; re-assert our lease after a restart."""
        if not self.group.is_leader:
            return
        if not self.clock_ok():
            self._hand_leadership_away()
            return
        attempt = self.lease_attempt
        if attempt is not None and self.hlc.physical_now_ns() < attempt.deadline_ns:
            return  # One lease request in flight at a time.
        lease = self.sm.lease
        if "epoch-increment-early" in self.bugs and lease.is_epoch and lease.holder != self.node_id:
            self.on_epoch_expired(lease.holder, lease.epoch)  # Planted bug: no wait for expiry.
        if self._hand_leadership_to_holder(lease, now):
            return
        wanted = self._wanted_lease(lease, now)
        if wanted is None:
            return
        command = commands.RequestLease(wanted, lease.sequence, now, prev=lease)
        try:
            self._propose(commands.encode_command(command))
        except (NotLeader, ProposalQueueFull):
            return
        deadline = self.hlc.physical_now_ns() + self.config.lease_request_timeout_ns
        self.lease_attempt = _LeaseAttempt(wanted.sequence, deadline)

    def _hand_leadership_away(self) -> None:
        """Our clock is off and we must not hold leases; as Paxos leader we would also stop
        anyone else from taking them (only the leader proposes a lease). Step aside."""
        peers = [n for n in self.sm.descriptor.replicas if n != self.node_id]
        if peers:
            self.group.transfer_leadership(peers[self.range_id % len(peers)])  # Idempotent while running.
            self.on_dirty(self)

    def _hand_leadership_to_holder(self, lease: Lease, now: Timestamp) -> bool:
        """Leadership follows the lease (as in CockroachDB). An epoch lease does not expire
        while its holder lives, so a leader that is not the holder must hand leadership to
        it: only the leader can propose, and the holder must propose its writes (and, after a
        restart, the re-assertion that makes its lease usable)."""
        if not lease.is_epoch or lease.holder in (0, self.node_id):
            return False
        if lease.holder not in self.sm.descriptor.replicas or now >= self._lease_end(lease):
            return False
        self.group.transfer_leadership(lease.holder)  # Idempotent while one is running.
        self.on_dirty(self)
        return True

    def _wanted_lease(self, lease: Lease, now: Timestamp) -> Lease | None:
        """The lease to propose now, or None when nothing needs doing."""
        if not self.clock_ok():
            return None
        epoch = self._live_epoch(now)
        ends = self._lease_end(lease)
        if lease.holder == self.node_id:
            if self._own_lease_needs_nothing(lease, now, ends, epoch):
                return None
            upgrade = epoch and not lease.is_epoch and self.lease_usable
            if not upgrade and not self.wants_lease():
                return None  # Idle: let the lease lapse so the group can quiesce.
        else:
            if now < ends:
                return None  # Someone else's lease is still running.
            if lease.is_epoch and self.liveness is not None and not self.liveness.epoch_dead(lease.holder, lease.epoch):
                if self.wants_lease():
                    self.on_epoch_expired(lease.holder, lease.epoch)  # First end its epoch.
                return None
            if not self.wants_lease():
                return None  # Idle: the next request acquires the lease (one round).
        return request_lease(lease, self.node_id, now, self.config.lease_duration_ns, epoch=epoch,
                             current_expiration=ends)

    def _own_lease_needs_nothing(self, lease: Lease, now: Timestamp, ends: Timestamp, epoch: int) -> bool:
        if not self.lease_usable:
            return False  # Held from before a restart: re-assert it before serving.
        if lease.is_epoch:
            # Our epoch still runs (perhaps between heartbeats): nothing to do. A dead epoch
            # needs a new lease.
            return self.liveness is not None and not self.liveness.epoch_dead(self.node_id, lease.epoch)
        if epoch:
            return False  # Upgrade our expiration lease to an epoch lease: no more renewals.
        return ends.wall_ns - now.wall_ns > self.config.lease_renew_before_ns

    # ------------------------------------------------------------------ apply

    def apply(self, slot: int, value: object) -> ApplyResult:
        result = self.sm.apply(slot, value)
        if result.kind == "lease":
            self.lease_attempt = None
            self._note_lease_applied(value)
        if result.op_id is not None:
            self._resolve_write(result)
        elif result.kind in TXN_KINDS:
            self._txn_applied(result, value)
        return result

    def _note_lease_applied(self, value: object) -> None:
        if self.sm.lease.holder != self.node_id:
            self.lease_usable = False
            return
        command = commands.decode_command(value)
        assert isinstance(command, commands.RequestLease), "a lease result from a non-lease command"
        if command.lease.holder == self.node_id and command.proposed_ts >= self.started_ts:
            self.lease_usable = True

    def _resolve_write(self, result: ApplyResult) -> None:
        waiters = self.waiting_writes.pop(result.op_id, [])
        for pending in waiters:
            self._unlatch(pending)
            if result.ok:
                answer = {"value": result.value} if isinstance(pending.request, VALUE_ANSWERS) else None
                self.respond(pending.client, pending.request_id, answer)
            elif result.error == "key outside the range":
                # A split applied between proposal and apply: nothing was written; the
                # retry finds the key's new range.
                self._fail(pending, RangeKeyMismatch(
                    f"range {self.range_id} split before the write applied; retry",
                    descriptor=self.sm.descriptor.encode()))
            elif result.error == "lease changed":
                self._fail(pending, NotLeaseholder(
                    f"write rejected by range {self.range_id}: {result.error}; retry",
                    leaseholder=None, leaseholder_address=None))
            else:
                self._fail(pending, ConditionFailed(f"range {self.range_id} rejected the write: {result.error}",
                                                    current=result.value))

    def _unlatch(self, pending: PendingRequest) -> None:
        key = pending.request.key
        count = self.latched_keys.get(key, 0)
        assert count > 0, f"unlatching {key!r}, which holds no latch"
        if count == 1:
            del self.latched_keys[key]
        else:
            self.latched_keys[key] = count - 1

    def proposals_dropped(self, values: list[object]) -> None:
        """The core dropped queued proposals (it lost leadership): they never got a slot."""
        for value in values:
            try:
                command = commands.decode_command(value)
            except commands.CommandDecodeError:
                continue
            if isinstance(command, commands.RequestLease):
                self.lease_attempt = None
                continue
            if isinstance(command, commands.TXN_COMMANDS):
                self._txn_dropped(command)
                continue
            for pending in self.waiting_writes.pop(command.op_id, []):
                self._unlatch(pending)
                self._fail(pending, Unavailable(
                    f"range {self.range_id} lost leadership before proposing the write; retry"))

    # ------------------------------------------------------------------ time

    def tick(self) -> None:
        self.expire_requests(self.hlc.physical_now_ns())
        self.tick_txns(self.hlc.physical_now_ns())
        now = self.hlc.now()
        self.maintain_lease(now)
        self.serve_queued()

    def expire_requests(self, physical_now_ns: int) -> None:
        keep = []
        serving = self._lease_status(self.sm.lease, self.hlc.now()) is LeaseStatus.VALID
        for pending in self.queued:
            waited_ns = physical_now_ns - (pending.deadline_ns - self.config.request_timeout_ns)
            if physical_now_ns >= pending.deadline_ns:
                self._fail(pending, Unavailable(
                    f"range {self.range_id} could not serve the request in time "
                    f"(no leaseholder reachable); retry"))
            elif not serving and waited_ns >= self.config.redirect_after_ns:
                # No valid lease here for a while (e.g. this node is cut off from the others):
                # send the client elsewhere now rather than hold it to its deadline.
                self._fail(pending, NotLeaseholder(
                    f"node {self.node_id} cannot serve range {self.range_id} now; try another node",
                    leaseholder=None, leaseholder_address=None))
            else:
                keep.append(pending)
        self.queued = keep
        for op_id in list(self.waiting_writes):
            waiters = self.waiting_writes[op_id]
            expired = [p for p in waiters if physical_now_ns >= p.deadline_ns]
            if not expired:
                continue
            for pending in expired:
                self._unlatch(pending)
                self._fail(pending, AmbiguousResult(
                    f"the write to range {self.range_id} was proposed but its outcome is unknown; "
                    "retrying with the same op_id is safe"))
            remaining = [p for p in waiters if p not in expired]
            if remaining:
                self.waiting_writes[op_id] = remaining
            else:
                del self.waiting_writes[op_id]
        self._expire_txn_waiters(physical_now_ns)

    def _expire_txn_waiters(self, physical_now_ns: int) -> None:
        for key in list(self.waiting_txn):
            waiters = self.waiting_txn[key]
            expired = [p for p in waiters if physical_now_ns >= p.deadline_ns]
            for pending in expired:
                self._fail(pending, AmbiguousResult(
                    f"the {key[0]} of transaction {key[1].hex()[:8]} at range {self.range_id} was proposed but "
                    f"did not apply in time; its outcome is unknown"))
            remaining = [p for p in waiters if p not in expired]
            if remaining:
                self.waiting_txn[key] = remaining
            else:
                del self.waiting_txn[key]

    def _txn_dropped(self, command) -> None:
        txn_id = command.txn.txn_id if hasattr(command, "txn") else command.txn_id
        self.locks.release(txn_id)
        for key in [k for k in self.waiting_txn if k[1] == txn_id]:
            for pending in self.waiting_txn.pop(key):
                self._fail(pending, Unavailable(f"range {self.range_id} lost leadership before proposing; retry"))

    def fail_all(self, error: SpanliteError) -> None:
        self.fail_txn_waiters(error)
        for pending in self.queued:
            self._fail(pending, error)
        self.queued = []
        for waiters in self.waiting_writes.values():
            for pending in waiters:
                self._fail(pending, error)
        self.waiting_writes.clear()
        self.latched_keys.clear()

    def _fail(self, pending: PendingRequest, error: SpanliteError) -> None:
        self.respond(pending.client, pending.request_id, error)

    # ------------------------------------------------------------------ status

    def leaseholder(self, now: Timestamp) -> int | None:
        lease = self.sm.lease
        if lease.holder == 0 or now >= self._lease_end(lease):
            return None
        return lease.holder


def _command_for(request, now: Timestamp, lease_sequence: int):
    """The replicated command for a client write, stamped with `now` and the lease."""
    if isinstance(request, Put):
        return commands.Put(request.key, request.value, now, request.op_id, lease_sequence)
    if isinstance(request, Delete):
        return commands.Delete(request.key, now, request.op_id, lease_sequence)
    if isinstance(request, Increment):
        return commands.Increment(key=request.key, delta=request.delta, op_id=request.op_id,
                                  lease_sequence=lease_sequence, ts=now)
    if isinstance(request, NodeHeartbeat):
        return commands.LivenessHeartbeat(request.node_id, request.epoch, request.expiration, now, request.op_id,
                                          lease_sequence)
    if isinstance(request, IncrementNodeEpoch):
        return commands.IncrementEpoch(request.node_id, request.epoch, now, request.op_id, lease_sequence)
    return commands.MetaSplit(old=request.old, left=request.left, right=request.right, ts=now,
                              op_id=request.op_id, lease_sequence=lease_sequence)
