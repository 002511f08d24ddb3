"""Range leases: expiration-based, replicated through the range's log (as in CockroachDB).

A `Lease(holder, start, expiration, sequence)` lets `holder` serve reads from its applied
state, without a consensus round, while its clock is in `[start, expiration - max_offset)`.
Leases change only by applying a lease request from the log, with `apply_lease_request`,
which every replica runs on the same log, so every replica sees the same lease sequence.

Rules:
- Status (`lease_status`): the holder is VALID in `[start, expiration - max_offset)`, in STASIS
  in `[expiration - max_offset, expiration)` (it must not serve: another node's clock may be
  past `expiration` already), and the lease is EXPIRED from `expiration` on, for everyone.
- Renewal: the holder extends its own lease; start and sequence stay, expiration grows.
  Commands proposed under the lease (tagged with its sequence) stay valid.
- Acquisition: another node may request a lease once the current one is expired by its own
  clock; the new lease has `sequence + 1` and `start >= previous expiration`.

Guarantee 1, disjointness in timestamp space: the `[start, expiration)` intervals of any two
distinct accepted leases are disjoint. Proof: sequences of accepted leases go 1, 2, 3, ...
(a new lease is accepted only with `sequence == current.sequence + 1`). Lease k changes only by
renewals, which are accepted only while k is the current lease (same sequence). Lease k+1 is
accepted only with `start_{k+1} >= expiration_k` as it stands then; from then on k is not
current, so no renewal can move `expiration_k` again. Hence
`start_k < expiration_k <= start_{k+1} < expiration_{k+1} <= ...`: the intervals are ordered.

Guarantee 2, disjointness in real time. Assume (a) any two nodes' physical clocks differ by at
most `max_offset` at every real instant, and (b) a node's HLC is never below its own physical
clock and never above the largest physical clock of any node (the HLC rejects remote
timestamps beyond max offset). Let old lease k be held by A, next lease k+1 by B. B serves only
at real times t with `hlc_B(t) >= start_{k+1} >= expiration_k`. By (b) some node j has
`pt_j(t) >= expiration_k`; by (a) `pt_A(t) >= expiration_k - max_offset`; by (b)
`hlc_A(t) >= pt_A(t)`, so at t A's status for lease k is STASIS or EXPIRED and A does not
serve. So at no real instant do A and B both serve.

Epoch leases (CockroachDB's epoch-based leases). A lease with `epoch > 0` has no expiration of
its own: it lasts as long as its holder's node-liveness record keeps that epoch
(`ranges.liveness`). The holder extends its liveness record once a second for all its leases
together, so 1,000 leased ranges cost no lease renewals at all. The effective expiration of an
epoch lease, as a node knows it, is its holder's liveness expiration at that epoch (ZERO once a
higher epoch is known); every rule above applies to it, stasis included. Taking over an epoch
lease needs its holder's epoch incremented first, on the meta range, which succeeds only once
that record has expired; so the old holder, whose liveness is then in stasis or expired by the
argument of guarantee 2, can never serve under that epoch again. Apply-time rules for epoch
leases: a renewal never changes the epoch (an epoch lease is only re-asserted, or an expiration
lease upgraded to an epoch lease); a new lease replacing an epoch lease must name exactly the
lease it replaces (`prev`), so a request built on a stale view (before an upgrade, say) fails.

HAZARD: the real-time guarantee holds only while clocks stay within max_offset. A node whose
clock drifts further must stop serving (the clock layer detects offset and fails fast).
HAZARD: a lease of duration <= max_offset is all stasis and never serves; keep leases much
longer than max offset.
HAZARD: apply-time decisions use only the command and the applied state, never a clock:
anything clock-dependent here would make replicas diverge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from clock.timestamp import ZERO, Timestamp


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Lease:
    holder: int  # Node id; 0 only for NO_LEASE.
    start: Timestamp
    expiration: Timestamp  # Exclusive. Invariant: start < expiration for a real lease.
    sequence: int  # 1, 2, 3, ... per new lease; unchanged by renewal. 0 only for NO_LEASE.
    # 0: an expiration lease. > 0: an epoch lease, valid while the holder's liveness record has
    # this epoch; its `expiration` is then ZERO (unused).
    epoch: int = 0

    @property
    def is_epoch(self) -> bool:
        return self.epoch > 0

    def __post_init__(self) -> None:
        problem = _lease_problem(self)
        if problem is not None:
            raise ValueError(f"invalid lease {self!r}: {problem}")

    def encode(self) -> list:
        fields = [self.holder, self.start.encode(), self.expiration.encode(), self.sequence]
        return fields + [self.epoch] if self.epoch else fields

    @staticmethod
    def decode(raw: object) -> "Lease":
        if not (isinstance(raw, list) and len(raw) in (4, 5)):
            raise ValueError(f"a lease is [holder, start, expiration, sequence(, epoch)], got {raw!r:.80}")
        holder, start, expiration, sequence = raw[:4]
        epoch = raw[4] if len(raw) == 5 else 0
        return Lease(holder, Timestamp.decode(start), Timestamp.decode(expiration), sequence, epoch)


def _lease_problem(lease: Lease) -> str | None:
    if not (_is_int(lease.holder) and _is_int(lease.sequence) and _is_int(lease.epoch)):
        return "holder, sequence and epoch must be ints"
    if not (isinstance(lease.start, Timestamp) and isinstance(lease.expiration, Timestamp)):
        return "start and expiration must be Timestamps"
    if lease.holder < 0 or lease.sequence < 0 or lease.epoch < 0:
        return "holder, sequence and epoch must not be negative"
    if lease.sequence == 0:
        no_lease = lease.holder == 0 and lease.start == ZERO and lease.expiration == ZERO and lease.epoch == 0
        return None if no_lease else "sequence 0 is reserved for NO_LEASE"
    if lease.holder == 0:
        return "a lease with a sequence needs a holder"
    if lease.epoch:
        return None if lease.expiration == ZERO else "an epoch lease has no expiration of its own"
    if not lease.start < lease.expiration:
        return "start must be before expiration"
    return None


NO_LEASE = Lease(holder=0, start=ZERO, expiration=ZERO, sequence=0)


class LeaseStatus(enum.Enum):
    VALID = "valid"  # This node holds the lease and may serve.
    STASIS = "stasis"  # This node holds it, but within max_offset of expiration: do not serve.
    EXPIRED = "expired"  # Expired by this node's clock: anyone may request a new lease.
    NOT_HOLDER = "not_holder"  # Another node holds an unexpired lease: redirect to it.
    NOT_STARTED = "not_started"  # This node holds it, but its start is still in the future.


class LeaseNotExpired(Exception):
    """A node asked to take over a lease that is not yet expired by its own clock."""

    def __init__(self, current: Lease, now: Timestamp) -> None:
        super().__init__(
            f"lease {current.sequence} of node {current.holder} expires at {current.expiration}, "
            f"now is {now}: wait for it to expire or redirect to node {current.holder}"
        )
        self.current = current


# (holder, epoch) -> that epoch's liveness expiration as this node knows it; ZERO when the
# epoch is known to be dead or nothing is known. Supplied by ranges.liveness.NodeLiveness.
LivenessLookup = Callable[[int, int], Timestamp]


def effective_expiration(lease: Lease, liveness: LivenessLookup | None) -> Timestamp:
    """When `lease` ends, as far as this node knows: its own expiration, or for an epoch lease
    its holder's liveness expiration at that epoch (ZERO without liveness information)."""
    if not lease.is_epoch:
        return lease.expiration
    return ZERO if liveness is None else liveness(lease.holder, lease.epoch)


def stasis_start(expiration: Timestamp, max_offset_ns: int) -> Timestamp:
    """The first timestamp at which the holder of a lease ending at `expiration` must stop serving."""
    assert max_offset_ns >= 0, f"max_offset_ns must not be negative: {max_offset_ns}"
    wall_ns = max(0, expiration.wall_ns - max_offset_ns)
    return Timestamp(wall_ns, expiration.logical)


def lease_status(lease: Lease, node_id: int, now: Timestamp, max_offset_ns: int,
                 liveness: LivenessLookup | None = None) -> LeaseStatus:
    """The status of `lease` as seen by `node_id` whose clock reads `now`."""
    assert node_id > 0, f"node ids are positive: {node_id}"
    expiration = effective_expiration(lease, liveness)
    if now >= expiration:
        return LeaseStatus.EXPIRED
    if lease.holder != node_id:
        return LeaseStatus.NOT_HOLDER
    if now < lease.start:
        return LeaseStatus.NOT_STARTED
    if now >= stasis_start(expiration, max_offset_ns):
        return LeaseStatus.STASIS
    return LeaseStatus.VALID


def request_lease(current: Lease, holder: int, now: Timestamp, duration_ns: int, *, epoch: int = 0,
                  current_expiration: Timestamp | None = None) -> Lease:
    """The lease `holder` should propose, given the applied `current` lease and its clock:
    an epoch lease at `epoch` if given (the holder's live liveness epoch), else an expiration
    lease. `current_expiration` is `effective_expiration(current, ...)` (needed for epoch leases).

    Raises `LeaseNotExpired` if another node's lease is not yet expired by `now`. For an epoch
    lease of another node, the caller must also know that its epoch was incremented.
    """
    assert holder > 0, f"node ids are positive: {holder}"
    assert duration_ns > 0, f"lease duration must be positive: {duration_ns}"
    assert epoch >= 0, f"liveness epochs are positive: {epoch}"
    ends = current.expiration if current_expiration is None else current_expiration
    if holder == current.holder:
        renewal = _own_renewal(current, now, duration_ns, epoch)
        if renewal is not None:
            return renewal
    elif now < ends:
        raise LeaseNotExpired(current, now)
    start = max(now, ends)
    if epoch:
        return Lease(holder, start, ZERO, current.sequence + 1, epoch)
    return Lease(holder, start, start.add_ns(duration_ns), current.sequence + 1)


def _own_renewal(current: Lease, now: Timestamp, duration_ns: int, epoch: int) -> Lease | None:
    """Our own lease, extended (same sequence), or None when only a new lease will do."""
    if not current.is_epoch and not epoch:
        expiration = max(current.expiration, now.add_ns(duration_ns))
        return Lease(current.holder, current.start, expiration, current.sequence)
    if not current.is_epoch:
        return Lease(current.holder, current.start, ZERO, current.sequence, epoch)  # upgrade
    if current.epoch == epoch:
        return current  # re-assert (e.g. after a restart, to make it usable again)
    return None  # our epoch moved on, or we lost liveness: a new lease


def transfer_lease(current: Lease, target: int, now: Timestamp, duration_ns: int) -> Lease:
    """The lease the current holder proposes to hand its range to `target`: an expiration
    lease, which the target upgrades to an epoch lease of its own epoch.

    The holder stops serving under `current` BEFORE proposing this (and never serves under it
    again), so every timestamp it served is below `now`, where the new lease starts: the two
    leases stay disjoint even though the new one starts before `current` ends.
    """
    assert target > 0 and target != current.holder, f"transfer from {current.holder} to {target}"
    assert now >= current.start, "a transfer cannot start before the lease it replaces"
    return Lease(target, now, now.add_ns(duration_ns), current.sequence + 1)


def apply_lease_request(current: Lease, requested: Lease, transfer_from: int = 0,
                        prev: Lease | None = None) -> tuple[Lease, bool, str | None]:
    """The deterministic apply-time rule: `(new_lease, accepted, reason_if_rejected)`.

    `transfer_from` is the node that proposed a transfer (`transfer_lease`); a transfer is
    valid only from the current holder and only for the lease it holds. `prev` is the lease
    the proposer saw when it built `requested` (None from old proposers: not checked)."""
    if transfer_from and requested.sequence == current.sequence + 1:
        if transfer_from != current.holder:
            return current, False, f"transfer from node {transfer_from}, but node {current.holder} holds the lease"
        if requested.start < current.start:
            return current, False, "a transfer cannot start before the lease it replaces"
        return requested, True, None
    if requested.sequence == 0:
        return current, False, "NO_LEASE cannot be requested"
    if requested.sequence == current.sequence:
        return _apply_renewal(current, requested)
    if requested.sequence != current.sequence + 1:
        reason = f"lease sequence {requested.sequence} does not follow the current {current.sequence}"
        return current, False, reason
    if current.is_epoch and prev != current:
        # An epoch lease has no expiration to check against: the proposer proved the holder's
        # epoch dead for exactly this lease, so it must be exactly this lease it replaces.
        return current, False, "the epoch lease changed since the request was made"
    if not current.is_epoch and requested.start < current.expiration:
        reason = f"new lease would start at {requested.start}, before the previous expiration {current.expiration}"
        return current, False, reason
    assert requested.sequence > current.sequence, "new leases move the sequence forward"
    return requested, True, None


def _apply_renewal(current: Lease, requested: Lease) -> tuple[Lease, bool, str | None]:
    assert requested.sequence == current.sequence, "renewals keep the sequence"
    if requested.holder != current.holder:
        return current, False, f"lease {current.sequence} belongs to node {current.holder}"
    if requested.start != current.start:
        return current, False, "a renewal must keep the lease start"
    if current.is_epoch:
        if requested != current:
            return current, False, "an epoch lease changes its epoch only through a new lease"
        return current, True, None  # re-asserted
    if requested.is_epoch:
        return requested, True, None  # upgraded: from now on it lasts as long as the holder's liveness
    if requested.expiration <= current.expiration:
        return current, False, "the renewal does not extend the lease"
    return requested, True, None
