"""Plain data of the Multi-Paxos core: config, durable state, Ready, errors, role table.

Split out of `core.py` to keep that file about the protocol rules. See `core.py` for the
guarantees and the durability contract these types carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from paxos_groups.ballot import Ballot

NOOP = None
"""The value a new leader proposes for a hole in the log. The caller skips it when applying."""

# Names of planted bugs (`PaxosGroup(bugs=...)`): the simulator switches them on to prove
# that its checkers can fail. Each is one `if` at the rule it breaks.
BUG_ACCEPT_LOWER_BALLOT = "accept-lower-ballot"
BUG_SKIP_REPROPOSAL = "skip-reproposal"
KNOWN_BUGS = frozenset({BUG_ACCEPT_LOWER_BALLOT, BUG_SKIP_REPROPOSAL})


class Rng(Protocol):
    """What the core needs of randomness: a seeded `random.Random` instance fits."""

    def randrange(self, start: int, stop: int) -> int: ...


class NotLeader(Exception):
    """This replica cannot propose. `leader_hint` is the node it believes leads, or None."""

    def __init__(self, leader_hint: int | None) -> None:
        super().__init__(f"not the leader (leader hint: {leader_hint})")
        self.leader_hint = leader_hint


class ProposalQueueFull(Exception):
    """The leader's pipeline window and its bounded proposal queue are both full: back off."""


@dataclass(frozen=True, slots=True)
class GroupConfig:
    election_ticks_min: int = 10
    election_ticks_max: int = 20
    heartbeat_ticks: int = 2
    max_inflight_slots: int = 256
    max_pending_proposals: int = 10000
    max_entries_per_message: int = 128
    # Leader stickiness: followers that heard from a live leader within election_ticks_min
    # ignore Prepares from others; candidates probe (pre-vote) before raising their ballot;
    # a leader that has not heard from a quorum for election_ticks_max steps down.
    stickiness: bool = True
    # Idle leaders heartbeat every quiesced_heartbeat_ticks instead of heartbeat_ticks.
    quiesce: bool = True
    quiesced_heartbeat_ticks: int = 20

    def __post_init__(self) -> None:
        assert 0 < self.heartbeat_ticks < self.election_ticks_min, (
            f"heartbeats ({self.heartbeat_ticks} ticks) must come faster than elections "
            f"({self.election_ticks_min} ticks)"
        )
        assert self.election_ticks_min < self.election_ticks_max, "the election timeout range is empty"
        assert self.quiesced_heartbeat_ticks >= self.heartbeat_ticks, "quiescing must not speed heartbeats up"
        assert self.max_inflight_slots > 0, "the pipeline window must hold a slot"
        assert self.max_pending_proposals >= 0
        assert self.max_entries_per_message > 0

    @property
    def quiesced_scale(self) -> int:
        """How much slower everything leader-liveness related runs while quiesced."""
        return -(-self.quiesced_heartbeat_ticks // self.heartbeat_ticks)


@dataclass
class DurableState:
    """What a replica of one group keeps on disk (see `durable.py` for the key layout)."""

    promised: Ballot = Ballot.ZERO
    # slot -> (ballot it was accepted at, value). Slots <= chosen_upto hold chosen values.
    accepted: dict[int, tuple[Ballot, object]] = field(default_factory=dict)
    chosen_upto: int = 0
    # Slots below first_index were truncated (applied and covered by a state machine snapshot).
    first_index: int = 1


@dataclass
class Ready:
    """Everything one batch of core activity asks the caller to do, in this order:

    1. persist `promised`, `accepted` (fsync: `needs_sync`), `chosen_upto` (no fsync needed),
       and the truncation (`truncate_upto`, `truncate_slots`) in one atomic write batch;
    2. send `messages`;
    3. restore `snapshot` into the state machine if set, then apply `committed` in order;
    4. call `advance(ready)`.
    `dropped_proposals` and `snapshot_requests` are notifications (see `core.py`).
    """

    promised: Ballot | None = None
    accepted: list[tuple[int, Ballot, object]] = field(default_factory=list)
    chosen_upto: int | None = None
    truncate_upto: int | None = None
    # The accepted slots <= truncate_upto that this replica may hold on disk; deleting exactly
    # these keys performs the truncation without a scan (the write batch has no range delete).
    truncate_slots: list[int] = field(default_factory=list)
    snapshot: tuple[int, object] | None = None
    committed: list[tuple[int, object]] = field(default_factory=list)
    messages: list[tuple[int, object]] = field(default_factory=list)
    dropped_proposals: list[object] = field(default_factory=list)
    snapshot_requests: list[int] = field(default_factory=list)


# ---------------------------------------------------------------------------- roles

FOLLOWER = "follower"
PRE_CANDIDATE = "pre-candidate"  # probing (pre-vote) whether a quorum would promise
CANDIDATE = "candidate"  # running phase 1 at its own ballot
LEADER = "leader"  # phase 1 done: phase 2 only
ROLES = (FOLLOWER, PRE_CANDIDATE, CANDIDATE, LEADER)

EVENT_PROBE = "probe"  # election timeout with stickiness on
EVENT_CAMPAIGN = "campaign"  # election timeout without stickiness, probe won, or campaign()
EVENT_ELECTED = "elected"  # a quorum promised
EVENT_STEP_DOWN = "step-down"  # a higher ballot, a lost quorum, a lagging log, or a new leader to follow
EVENTS = (EVENT_PROBE, EVENT_CAMPAIGN, EVENT_ELECTED, EVENT_STEP_DOWN)

# Every legal role change (h11 `_state.py` style). Anything else is a bug in the core.
ROLE_TRANSITIONS: dict[tuple[str, str], str] = {
    (FOLLOWER, EVENT_PROBE): PRE_CANDIDATE,
    (PRE_CANDIDATE, EVENT_PROBE): PRE_CANDIDATE,
    (CANDIDATE, EVENT_PROBE): PRE_CANDIDATE,
    (FOLLOWER, EVENT_CAMPAIGN): CANDIDATE,
    (PRE_CANDIDATE, EVENT_CAMPAIGN): CANDIDATE,
    (CANDIDATE, EVENT_CAMPAIGN): CANDIDATE,
    (CANDIDATE, EVENT_ELECTED): LEADER,
    (FOLLOWER, EVENT_STEP_DOWN): FOLLOWER,
    (PRE_CANDIDATE, EVENT_STEP_DOWN): FOLLOWER,
    (CANDIDATE, EVENT_STEP_DOWN): FOLLOWER,
    (LEADER, EVENT_STEP_DOWN): FOLLOWER,
}


def next_role(role: str, event: str) -> str:
    target = ROLE_TRANSITIONS.get((role, event))
    if target is None:
        raise AssertionError(f"impossible role change: no transition from {role!r} on {event!r}")
    return target


# ---------------------------------------------------------------------------- leader bookkeeping


@dataclass(slots=True)
class InflightSlot:
    """A slot the leader proposed at its ballot and does not yet know chosen."""

    value: object
    acks: set[int]  # Invariant: contains the leader itself (it accepts before sending).
    sent_tick: int  # When Accept for it last went out (to pace retransmissions).


@dataclass(slots=True)
class FollowerProgress:
    """What the leader knows about one follower. Reports may regress (a follower that
    crashed loses its unsynced chosen_upto), so the latest report wins, not the max."""

    chosen_upto: int = 0
    max_accepted_slot: int = 0
    # Slots above chosen_upto it acked at our ballot: with all of them up to our commit index,
    # one quiescing heartbeat (carrying the commit index) is all it still needs.
    acked_slots: set[int] = field(default_factory=set)
    recent_active: bool = True  # heard from it since the last check-quorum window
    catchup_sent_upto: int = 0  # highest slot sent in Chosen catch-up
    catchup_sent_tick: int = -(1 << 62)
    snapshot_requested_tick: int = -(1 << 62)
