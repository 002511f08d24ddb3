"""Sans-I/O Multi-Paxos: one `PaxosGroup` per replicated log per node.

The core is a deterministic state machine. Inputs: `tick()`, `step(from_node, msg)`,
`propose(value)`, `campaign()`, `wake()`, `compact(upto)`, `send_snapshot(...)`,
`transfer_leadership(to_node)`.
Outputs: a `Ready` (see `core_types.Ready`) that the caller takes with `ready()` (which
moves the pending outputs into it) and acknowledges with `advance(ready)` once handled
(which marks its committed entries applied), etcd-raft style. It never imports trio,
socket, time or random: time is ticks, randomness is the seeded `random.Random` passed in.
The leader-only half lives in `core_leader.py`, plain data in `core_types.py`.

Protocol in one paragraph. Slots start at 1. A follower that hears no leader for a
randomized election timeout probes, then campaigns with ballot (max round seen + 1, self):
Prepare(b, from_slot = chosen_upto + 1) to all; acceptors promise (persisted) and report
what they accepted at from_slot and above. On a quorum the candidate re-proposes, for each
slot between from_slot and the highest reported, the highest-ballot value (NOOP for holes), then runs
phase 2 only: each proposal takes the next slot, is accepted locally and sent in Accept
messages batched per peer (`max_entries_per_message`), pipelined up to `max_inflight_slots`
unchosen slots; further proposals wait in a bounded queue. A replica knows a slot chosen by
(a) a quorum of Accepted at its own leader ballot, (b) a leader at ballot b announcing
commit_index >= slot while the replica's own entry for it is of ballot b, or (c) a Chosen
catch-up message carrying the value. Chosen slots are emitted in order, once each, as
`Ready.committed`. Heartbeats carry the commit index; their acks report each follower's
chosen_upto, and the leader answers a lagging follower with Chosen entries, or a snapshot
request when those slots are truncated. Unacked Accepts are resent every heartbeat.

Guarantees (crash-stop nodes, lossy/duplicating/reordering network, caller honouring the
durability rule):
- Agreement: at most one value is ever chosen per slot; every replica applies the same
  value at each slot, slots in order, each exactly once (replay after restart excepted,
  see below).
- Validity: a chosen value was proposed (or is the NOOP `None` filling a hole).
- Liveness (not safety): with a quorum connected and ticking, a leader is elected,
  proposals get chosen, lagging replicas catch up from the log or a snapshot.

Durability rule. The caller handles each Ready in this order:
1. persist `promised` + `accepted` (+ `chosen_upto`, truncation) in ONE write batch, fsynced
   when `durable.needs_sync(ready)`; on a node with many groups, one fsynced batch covers the
   Readies of all groups (group commit);
2. only then send `messages` (every Promise/Accepted reply depends on state in this Ready or
   an earlier one, so an acceptor's state is on disk before its reply leaves the node);
3. restore `snapshot`, then apply `committed` in order;
4. call `advance(ready)`.
Several Readies may be outstanding; they must be persisted and advanced in the order
`ready()` returned them. On restart the caller rebuilds `DurableState` from the engine
(`durable.load_durable_state`) and passes the state machine's durable applied index; the
core re-emits `committed` from applied_index + 1 through chosen_upto (replay) and assumes
nothing it did not persist. The state machine must persist its effects in the same engine
as the log (so a crash that keeps the state machine's writes keeps the log writes before
them), or at least durably after the Ready that produced them.

Decisions (where the brief left room):
- Self-delivery: the proposer's own promise and accept are processed immediately and
  counted at once. That is safe because they enter the same Ready as the Prepare/Accept
  messages that depend on them, and the caller persists a Ready before sending it.
- Chosen catch-up values are stored as accepted entries at the sender's ballot unless the
  replica already holds that value. An entry holding the chosen value may be reported in a
  Promise at any ballot without harm (the value is chosen: every correct proposal for the
  slot is that value), and an entry already holding it is never replaced, so the quorum
  that chose it still reports a ballot at least the choosing one.
- Leader stickiness (config `stickiness`, default on) is three etcd mechanisms together:
  acceptors ignore Prepares from others while they hear a live leader (CheckQuorum lease);
  an election starts with a probe (`Prepare.probe`, PreVote) that changes no state, so a
  partitioned node does not inflate its ballot and depose the leader when it returns; and a
  leader that has not heard from a quorum for `election_ticks_max` ticks steps down.
- Quiescence: an idle leader (nothing in flight or queued, every follower's chosen_upto equal
  to its own) flags its heartbeat `quiesce` and then heartbeats every
  `quiesced_heartbeat_ticks`; followers following a quiesced leader scale their election
  timeout and stickiness window by the same factor. Any proposal, `wake()`, or leader message
  without the flag ends it. A follower's `wake()` returns it to the normal election timeout,
  which is how a caller that suspects a dead leader makes a quiesced group re-elect quickly.
- `propose` returns the slot the value occupies if this leadership lasts; a queued proposal's
  slot is predicted (the queue drains in order). After a leader change an in-flight slot may
  be chosen with this value or replaced by another (NOOP or a newer leader's value): the
  caller must match applied values to its waiters and never assume slot -> value.
- Leadership transfer (etcd's MsgTransferLeader/MsgTimeoutNow), so a range lease can move
  with leadership: `transfer_leadership(to)` on the leader stops new proposals (`propose`
  raises NotLeader(leader_hint=to); queued ones are dropped as on step-down) and waits until
  `to` reports a chosen_upto >= the leader's and has acked every in-flight slot, sending it
  the unacked Accepts and a heartbeat (whose ack triggers Chosen catch-up) if it lags. Then
  it sends `TimeoutNow(ballot)`, again every heartbeat interval until the transfer ends (a
  duplicate is ignored). A follower takes TimeoutNow only from the leader it follows at that
  ballot, and campaigns at once, no probe, with `Prepare.force`: acceptors, the leader
  included, answer a forced Prepare despite stickiness, since the leader asked for it; all
  else (higher ballot, the behind check, persisted promise) is plain phase 1, so safety does
  not depend on the transfer. The old leader steps down on the higher ballot as usual; the
  target holding every in-flight value means its own promise re-proposes them, so in-flight
  proposals survive the handover. Not done within `election_ticks_max` ticks, the transfer
  is abandoned and the leader takes proposals again. A forced Prepare can depose a newer
  leader only if a stale TimeoutNow races an election: a liveness cost, never a safety one.
- Snapshot installs are made durable late: the Ready carrying `snapshot` persists nothing of
  the install; the truncation and the new chosen_upto are emitted only after `advance` of
  that Ready, i.e. after the state machine holds the snapshot. A crash in between restarts
  the replica with its pre-snapshot log, which is consistent. If the state machine survived
  a crash with applied_index beyond the persisted chosen_upto (an install whose truncation
  was lost), the constructor completes the truncation.

HAZARD: a Promise carries every accepted entry at or above the candidate's from_slot, with
no size bound; a candidate far behind asks for a lot. Truncation bounds it in practice.
HAZARD: values are compared with `==` (one value per slot per ballot, chosen-value checks);
use cbor-canonical values (bytes, str, int, lists, maps, None): a tuple and the list it
becomes after a cbor round trip are not equal.
HAZARD: the caller-supplied applied_index is trusted; an applied_index beyond what the state
machine really holds skips slots silently.
HAZARD: a group with a dead follower never quiesces (quiescence waits for every follower).
HAZARD: a follower of a quiesced leader waits ~10x longer before electing, and ignores
Prepares ~10x longer: when the caller learns that a leader's node is down it should `wake()`
every replica of the group (one woken replica alone is still ignored by its sticky peers).
HAZARD: stickiness assumes ticks advance at similar rates on all nodes.
HAZARD: the log from first_index on is held in memory (one dict per group); the caller's
compaction bounds it. Snapshot data is opaque and unbounded (chunking is the caller's).
"""

from __future__ import annotations

from collections import deque

from paxos_groups.ballot import Ballot
from paxos_groups.core_leader import LeaderRole
from paxos_groups.core_types import (
    BUG_ACCEPT_LOWER_BALLOT,
    CANDIDATE,
    EVENT_CAMPAIGN,
    EVENT_PROBE,
    EVENT_STEP_DOWN,
    FOLLOWER,
    KNOWN_BUGS,
    LEADER,
    NOOP,
    PRE_CANDIDATE,
    DurableState,
    FollowerProgress,
    GroupConfig,
    InflightSlot,
    NotLeader,
    ProposalQueueFull,
    Ready,
    Rng,
    next_role,
)
from paxos_groups.messages import (
    Accept,
    Accepted,
    Chosen,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    Nack,
    Prepare,
    Promise,
    TimeoutNow,
)

__all__ = [
    "PaxosGroup",
    "GroupConfig",
    "DurableState",
    "Ready",
    "NotLeader",
    "ProposalQueueFull",
    "NOOP",
]


class PaxosGroup(LeaderRole):
    def __init__(
        self,
        group_id: int,
        node_id: int,
        members: tuple[int, ...],
        state: DurableState,
        config: GroupConfig,
        rng: Rng,
        bugs: frozenset[str] = frozenset(),
        applied_index: int = 0,
    ) -> None:
        assert node_id in members, f"node {node_id} is not a member of group {group_id}: {members}"
        assert len(set(members)) == len(members), f"duplicate members: {members}"
        assert bugs <= KNOWN_BUGS, f"unknown bugs: {set(bugs) - KNOWN_BUGS}"
        self._group_id = group_id
        self._node_id = node_id
        self._members = tuple(members)
        self._peers = tuple(m for m in members if m != node_id)
        self._quorum = len(members) // 2 + 1
        self._config = config
        self._rng = rng
        self._bugs = frozenset(bugs)

        # --- Acceptor and learner state. Every change is mirrored into the next Ready.
        self._promised = state.promised
        # Invariant: every key >= first_index; keys in [first_index, chosen_upto] all present,
        # holding the chosen value; at most one value per (slot, ballot) anywhere in the group.
        self._accepted: dict[int, tuple[Ballot, object]] = dict(state.accepted)
        # Invariant: 1 <= first_index <= chosen_upto + 1.
        self._first_index = state.first_index
        self._chosen_upto = state.chosen_upto
        # Slots above chosen_upto known chosen (their accepted entry holds the chosen value).
        # Invariant: every member > chosen_upto, and after _advance_chosen() chosen_upto + 1
        # is not a member (it is the gap that keeps chosen_upto from moving).
        self._known_chosen: set[int] = set()
        # Invariant: first_index - 1 <= applied_index <= emitted_upto <= chosen_upto
        # (the first bound is relaxed while an installed snapshot awaits advance()).
        self._applied_index = applied_index
        self._emitted_upto = applied_index
        # Invariant: >= every accepted slot and >= chosen_upto.
        self._last_slot = max(max(self._accepted, default=0), self._chosen_upto)
        # Highest round seen in any ballot: a campaign uses one above it, so a ballot is never
        # reused (our own past ballots are all <= the promise we persisted for each).
        entry_rounds = (ballot.round for ballot, _ in self._accepted.values())
        self._max_round_seen = max(self._promised.round, max(entry_rounds, default=0))

        # --- Role state (volatile).
        self._role = FOLLOWER
        self._ballot = Ballot.ZERO  # the ballot we lead, campaign at, or follow
        self._leader_hint: int | None = None
        self._quiesced = False
        self._tick_count = 0
        # peer -> (tick, commit index) of the last Accept sent to it
        self._accept_sent_tick: dict[int, tuple[int, int]] = {}
        self._election_elapsed = 0
        self._election_timeout = 0
        self._ticks_since_leader = 1 << 62  # "never heard from a leader"
        self._heartbeat_elapsed = 0
        self._check_quorum_elapsed = 0
        self._probe_ballot: Ballot | None = None
        self._probe_grants: set[int] = set()
        self._phase1_from = 0
        self._promises: dict[int, tuple[tuple[int, Ballot, object], ...]] = {}
        # Commit index last heard from the leader at `_commit_ballot` (learner rule b).
        self._commit_ballot = Ballot.ZERO
        self._commit_heard = 0

        # --- Leader state (volatile, reset on every role change).
        self._next_slot = 0
        self._inflight: dict[int, InflightSlot] = {}  # Invariant: len <= window + re-proposals.
        self._pending: deque[object] = deque()  # Invariant: len <= max_pending_proposals.
        self._progress: dict[int, FollowerProgress] = {}
        self._heartbeat_commit = 0  # chosen_upto as of the last heartbeat broadcast
        # Leadership transfer in progress (see transfer_leadership): its target, the ticks
        # since it started, and when TimeoutNow last went out (None: not yet).
        self._transfer_target: int | None = None
        self._transfer_elapsed = 0
        self._transfer_sent_tick: int | None = None

        # --- Outputs, drained by ready().
        self._out_promised: Ballot | None = None
        self._out_accepted: dict[int, tuple[Ballot, object]] = {}
        self._out_messages: list[tuple[int, object]] = []
        self._out_accepts: dict[int, dict[int, object]] = {}  # peer -> slot -> value, merged per Ready
        self._out_dropped: list[object] = []
        self._out_snapshot_requests: list[int] = []
        self._out_snapshot: tuple[int, object] | None = None
        self._out_truncate_upto: int | None = None
        self._out_truncate_slots: list[int] = []
        self._persisted_chosen_upto = self._chosen_upto
        # Truncation of installed snapshots, held back until the state machine has them.
        self._deferred_truncate_upto: int | None = None
        self._deferred_truncate_slots: list[int] = []
        self._outstanding: deque[Ready] = deque()
        self._outstanding_snapshots = 0

        self._check_loaded_state()
        self._complete_interrupted_snapshot_install()
        self._reset_election_timeout()

    def _check_loaded_state(self) -> None:
        lowest = min(self._accepted, default=self._first_index)
        assert lowest >= self._first_index, f"accepted slot {lowest} below first_index {self._first_index}"
        assert 1 <= self._first_index <= self._chosen_upto + 1, (
            f"first_index {self._first_index} beyond chosen_upto {self._chosen_upto} + 1"
        )
        missing = [s for s in range(self._first_index, self._chosen_upto + 1) if s not in self._accepted]
        assert not missing, f"chosen slots missing from the log: {missing[:10]}"
        assert self._applied_index >= self._first_index - 1, (
            f"the state machine (applied {self._applied_index}) lost slots the log already "
            f"truncated (first_index {self._first_index}): it must be durable before compact()"
        )

    def _complete_interrupted_snapshot_install(self) -> None:
        # Slots <= applied_index are chosen: the state machine applied them. If the log lags
        # (an installed snapshot's truncation was not yet persisted), finish the truncation.
        if self._applied_index <= self._chosen_upto:
            return
        self._truncate_log(self._applied_index)
        self._chosen_upto = self._applied_index
        self._last_slot = max(self._last_slot, self._chosen_upto)
        assert self._first_index == self._chosen_upto + 1

    # ------------------------------------------------------------------ properties

    @property
    def group_id(self) -> int:
        return self._group_id

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def members(self) -> tuple[int, ...]:
        return self._members

    @property
    def role(self) -> str:
        return self._role

    @property
    def is_leader(self) -> bool:
        return self._role == LEADER

    @property
    def leader_hint(self) -> int | None:
        return self._leader_hint

    @property
    def ballot(self) -> Ballot:
        return self._ballot

    @property
    def promised(self) -> Ballot:
        return self._promised

    @property
    def chosen_upto(self) -> int:
        return self._chosen_upto

    @property
    def applied_index(self) -> int:
        return self._applied_index

    @property
    def first_index(self) -> int:
        return self._first_index

    @property
    def last_slot(self) -> int:
        return self._last_slot

    @property
    def quiesced(self) -> bool:
        return self._quiesced

    @property
    def transfer_target(self) -> int | None:
        """The node a leadership transfer under way hands leadership to, else None."""
        return self._transfer_target

    @property
    def pending_proposals(self) -> int:
        return len(self._pending)

    @property
    def inflight_slots(self) -> int:
        return len(self._inflight)

    def accepted_entry(self, slot: int) -> tuple[Ballot, object] | None:
        """The (ballot, value) this replica holds for `slot` (for tests and debugging)."""
        return self._accepted.get(slot)

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        self._tick_count += 1
        if self._role == LEADER:
            self._tick_leader()
        else:
            self._tick_non_leader()

    def campaign(self) -> None:
        """Start phase 1 now, skipping the probe. A no-op on the leader."""
        if self._role != LEADER:
            self._start_campaign()

    def wake(self) -> None:
        """End quiescence: the leader resumes fast heartbeats; a follower returns to the
        normal election timeout (elects soon if the leader is in fact gone)."""
        if not self._quiesced:
            return
        self._quiesced = False
        if self._role == LEADER:
            self._heartbeat_elapsed = self._config.heartbeat_ticks  # heartbeat on the next tick
        else:
            self._reset_election_timeout()

    def propose(self, value: object) -> int:
        """Propose `value`; returns the slot it will occupy if this leadership lasts.

        Raises NotLeader off the leader (and on a leader transferring leadership, hinting
        the target) and ProposalQueueFull when the window and the queue are both full."""
        if self._role != LEADER:
            raise NotLeader(self._leader_hint)
        if self._transfer_target is not None:
            raise NotLeader(self._transfer_target)
        self._unquiesce_leader()
        if self._pending or len(self._inflight) >= self._config.max_inflight_slots:
            if len(self._pending) >= self._config.max_pending_proposals:
                raise ProposalQueueFull(
                    f"group {self._group_id}: {len(self._inflight)} slots in flight and "
                    f"{len(self._pending)} proposals queued"
                )
            self._pending.append(value)
            return self._next_slot + len(self._pending) - 1
        slot = self._next_slot
        self._next_slot += 1
        self._propose_at(slot, value)
        return slot

    def step(self, from_node: int, msg: object) -> None:
        """Handle one decoded message from a peer."""
        group_id = getattr(msg, "group_id", None)
        assert group_id == self._group_id, f"message for group {group_id} routed to group {self._group_id}"
        if from_node not in self._peers:
            return  # not a member (or a reflected message): ignore, never crash
        handler = _HANDLERS.get(type(msg))
        assert handler is not None, f"not a group message: {msg!r}"
        if not getattr(msg, "probe", False):
            self._observe_round(msg.ballot.round)  # a probe's round is hypothetical
        handler(self, from_node, msg)

    # ------------------------------------------------------------------ ticks and elections

    def _tick_non_leader(self) -> None:
        self._ticks_since_leader += 1
        self._election_elapsed += 1
        if self._election_elapsed < self._election_timeout:
            return
        if self._config.stickiness:
            self._start_probe()
        else:
            self._start_campaign()

    def _reset_election_timeout(self) -> None:
        scale = self._config.quiesced_scale if self._quiesced else 1
        low, high = self._config.election_ticks_min, self._config.election_ticks_max
        self._election_timeout = self._rng.randrange(low, high) * scale
        self._election_elapsed = 0

    def _start_probe(self) -> None:
        self._become(EVENT_PROBE)
        self._leader_hint = None  # we believe the leader is gone: stop being sticky to it
        self._reset_election_timeout()
        self._probe_ballot = Ballot(self._max_round_seen + 1, self._node_id)
        self._probe_grants = {self._node_id}
        from_slot = self._chosen_upto + 1
        for peer in self._peers:
            self._send(peer, Prepare(self._group_id, self._probe_ballot, from_slot, probe=True))
        self._maybe_probe_won()

    def _maybe_probe_won(self) -> None:
        if self._role == PRE_CANDIDATE and len(self._probe_grants) >= self._quorum:
            self._start_campaign()

    def _start_campaign(self, force: bool = False) -> None:
        self._become(EVENT_CAMPAIGN)
        self._leader_hint = None
        self._reset_election_timeout()
        ballot = Ballot(self._max_round_seen + 1, self._node_id)
        assert ballot > self._promised, f"campaign ballot {ballot} not above promise {self._promised}"
        self._max_round_seen = ballot.round
        self._ballot = ballot
        # The self-promise enters this Ready with the Prepares: persisted before they leave.
        self._set_promised(ballot)
        self._phase1_from = self._chosen_upto + 1
        self._promises = {self._node_id: self._entries_from(self._phase1_from)}
        for peer in self._peers:
            self._send(peer, Prepare(self._group_id, ballot, self._phase1_from, force=force))
        self._maybe_elected()

    def _maybe_elected(self) -> None:
        if self._role == CANDIDATE and len(self._promises) >= self._quorum:
            self._become_leader()

    def _become(self, event: str) -> None:
        old = self._role
        self._role = next_role(old, event)
        if old == LEADER:
            self._clear_leader_state()
        if old in (CANDIDATE, PRE_CANDIDATE):
            self._promises = {}
            self._probe_grants = set()
            self._probe_ballot = None
        self._out_accepts.clear()  # unsent Accepts of a previous ballot are pointless now
        self._quiesced = False

    def _clear_leader_state(self) -> None:
        # Queued proposals never got a slot: the caller must fail their clients. In-flight
        # slots stay in the log and may still be chosen by the next leader, or replaced.
        self._out_dropped.extend(self._pending)
        self._out_snapshot_requests.clear()  # a snapshot is only wanted from a leader
        self._pending.clear()
        self._inflight.clear()
        self._progress.clear()
        self._transfer_target = None

    def _step_down(self) -> None:
        self._become(EVENT_STEP_DOWN)
        self._reset_election_timeout()

    # ------------------------------------------------------------------ message handlers

    def _on_prepare(self, frm: int, m: Prepare) -> None:
        if m.ballot.node_id != frm:
            return  # only a proposer prepares its own ballot
        if not m.force and self._ignores_prepare_from(frm):
            return  # a live leader exists: do not let this candidate disrupt it
        if m.probe:
            self._answer_probe(frm, m)
            return
        if m.ballot < self._promised:
            self._send(frm, Nack(self._group_id, m.ballot, self._promised))
            return
        if self._first_index > m.from_slot:
            # We truncated slots the candidate asks about: we cannot report what we accepted
            # there, and a quorum without us might not either. The candidate is behind.
            self._send(frm, Nack(self._group_id, m.ballot, self._promised, behind=True))
            return
        if m.ballot > self._promised:
            if self._role != FOLLOWER:
                self._step_down()
            self._set_promised(m.ballot)
            self._election_elapsed = 0  # give the candidate time to win before competing
            self._leader_hint = None
        entries = self._entries_from(m.from_slot)
        self._send(frm, Promise(self._group_id, m.ballot, entries, self._chosen_upto, self._first_index))

    def _answer_probe(self, frm: int, m: Prepare) -> None:
        behind = self._first_index > m.from_slot
        if m.ballot < self._promised or behind:
            self._send(frm, Nack(self._group_id, m.ballot, self._promised, behind=behind))
            return
        self._send(frm, Promise(self._group_id, m.ballot, (), self._chosen_upto, self._first_index, probe=True))

    def _ignores_prepare_from(self, frm: int) -> bool:
        if not self._config.stickiness:
            return False
        if self._role == LEADER:
            return True
        if self._leader_hint is None or frm == self._leader_hint:
            return False  # a restarted leader may re-campaign without waiting
        scale = self._config.quiesced_scale if self._quiesced else 1
        return self._ticks_since_leader < self._config.election_ticks_min * scale

    def _on_promise(self, frm: int, m: Promise) -> None:
        if m.probe:
            if self._role == PRE_CANDIDATE and m.ballot == self._probe_ballot:
                self._probe_grants.add(frm)
                self._maybe_probe_won()
            return
        if self._role != CANDIDATE or m.ballot != self._ballot:
            return  # a late reply to an older campaign
        # Entries below from_slot are chosen and known to us; a correct acceptor sends none.
        self._promises[frm] = tuple(e for e in m.entries if e[0] >= self._phase1_from)
        self._maybe_elected()

    def _on_nack(self, frm: int, m: Nack) -> None:
        self._observe_round(m.promised.round)
        if self._role == PRE_CANDIDATE and m.ballot == self._probe_ballot:
            if m.behind:
                self._step_down()  # others truncated past our log: we must not lead
            # A higher promise only means our probe round was low; the campaign, if the probe
            # wins, uses a round above everything seen, this Nack's included.
            return
        if self._role not in (CANDIDATE, LEADER) or m.ballot != self._ballot:
            return  # about an older attempt of ours
        # A late "behind" from a truncated acceptor does not matter once a quorum promised.
        if m.promised > self._ballot or (m.behind and self._role == CANDIDATE):
            self._step_down()
            self._leader_hint = None

    def _on_timeout_now(self, frm: int, m: TimeoutNow) -> None:
        """Leadership transfer: our current leader asks us to campaign now, forced."""
        if m.ballot.node_id != frm:
            return
        if self._role == PRE_CANDIDATE and m.ballot >= self._promised:
            # We were probing for an election (e.g. its heartbeats were slow while it
            # quiesced) and the leader itself now asks us to take over: do.
            self._start_campaign(force=True)
            return
        if self._role != FOLLOWER or self._leader_hint != frm or m.ballot != self._ballot:
            return  # from a leader we no longer follow (or a duplicate after we campaigned)
        self._start_campaign(force=True)

    def _on_accept(self, frm: int, m: Accept) -> None:
        if m.ballot.node_id != frm:
            return
        lower = m.ballot < self._promised
        if lower and BUG_ACCEPT_LOWER_BALLOT not in self._bugs:
            self._send(frm, Nack(self._group_id, m.ballot, self._promised))
            return
        if not lower:
            self._follow(frm, m.ballot, quiesced=False)
            if m.ballot > self._promised:
                self._set_promised(m.ballot)  # persisted with the entries, before Accepted leaves
        slots = []
        for slot, value in m.entries:
            self._accept_entry(slot, m.ballot, value)
            slots.append(slot)
        self._learn_commit_index(m.ballot, m.commit_index, slots)
        self._send(frm, Accepted(self._group_id, m.ballot, tuple(slots), self._chosen_upto))

    def _accept_entry(self, slot: int, ballot: Ballot, value: object) -> None:
        if slot <= self._chosen_upto or slot in self._known_chosen:
            return  # chosen already: by Paxos the leader proposes that same value; keep ours
        self._store_accepted(slot, ballot, value)

    def _on_heartbeat(self, frm: int, m: Heartbeat) -> None:
        if m.ballot.node_id != frm:
            return
        if m.ballot < self._promised:
            self._send(frm, Nack(self._group_id, m.ballot, self._promised))
            return
        self._follow(frm, m.ballot, quiesced=m.quiesce)
        self._learn_commit_index(m.ballot, m.commit_index, ())
        self._send_heartbeat_ack(frm, m.ballot)

    def _on_chosen(self, frm: int, m: Chosen) -> None:
        if m.ballot.node_id != frm:
            return
        if m.ballot < self._promised:
            self._send(frm, Nack(self._group_id, m.ballot, self._promised))
            return
        self._follow(frm, m.ballot, quiesced=False)
        for slot, value in m.entries:
            self._learn_chosen_value(slot, value, m.ballot)
        self._advance_chosen()
        self._send_heartbeat_ack(frm, m.ballot)  # asks for the next chunk

    def _on_install_snapshot(self, frm: int, m: InstallSnapshot) -> None:
        if m.ballot.node_id != frm:
            return
        if m.ballot < self._promised:
            self._send(frm, Nack(self._group_id, m.ballot, self._promised))
            return
        self._follow(frm, m.ballot, quiesced=False)
        if m.index > self._chosen_upto:
            self._install_snapshot(m.index, m.data)
        self._send_heartbeat_ack(frm, m.ballot)

    def _send_heartbeat_ack(self, to: int, ballot: Ballot) -> None:
        self._send(to, HeartbeatAck(self._group_id, ballot, self._chosen_upto, self._last_slot))

    def _follow(self, leader: int, ballot: Ballot, quiesced: bool) -> None:
        """A leader at `ballot` (>= our promise) spoke to us."""
        if ballot < self._ballot:
            return  # an older leader: its accepts are fine, but we follow the newer one
        if self._role != FOLLOWER:
            assert ballot != self._ballot or self._role != LEADER, f"two leaders at ballot {ballot}"
            self._step_down()
        self._ballot = ballot
        self._leader_hint = leader
        self._ticks_since_leader = 0
        self._election_elapsed = 0
        if quiesced != self._quiesced:
            self._quiesced = quiesced
            self._reset_election_timeout()

    # ------------------------------------------------------------------ learning chosen slots

    def _learn_commit_index(self, ballot: Ballot, commit_index: int, new_slots) -> None:
        """Learner rule (b): the leader at `ballot` says slots <= commit_index are chosen, so
        every slot we accepted at that same ballot holds the chosen value."""
        if ballot != self._commit_ballot:
            self._commit_ballot, self._commit_heard = ballot, 0
        for slot in new_slots:
            if slot <= self._commit_heard:
                self._learn_if_accepted_at(slot, ballot)
        if commit_index > self._commit_heard:
            start = max(self._commit_heard, self._chosen_upto) + 1
            for slot in range(start, min(commit_index, self._last_slot) + 1):
                self._learn_if_accepted_at(slot, ballot)
            self._commit_heard = commit_index
        self._advance_chosen()

    def _learn_if_accepted_at(self, slot: int, ballot: Ballot) -> None:
        entry = self._accepted.get(slot)
        if entry is not None and entry[0] == ballot and slot > self._chosen_upto:
            self._known_chosen.add(slot)

    def _learn_chosen_value(self, slot: int, value: object, ballot: Ballot) -> None:
        """Learner rule (c): the leader sent the chosen value itself."""
        if slot < self._first_index:
            return
        if slot <= self._chosen_upto or slot in self._known_chosen:
            held = self._accepted[slot][1]
            assert held == value, f"slot {slot} chosen twice: {held!r} here, {value!r} at the leader"
            return
        entry = self._accepted.get(slot)
        if entry is None or entry[1] != value:
            self._store_accepted(slot, ballot, value)
        self._known_chosen.add(slot)

    def _advance_chosen(self) -> None:
        while self._chosen_upto + 1 in self._known_chosen:
            self._known_chosen.remove(self._chosen_upto + 1)
            self._chosen_upto += 1
            # A new leader re-proposes slots it already knew chosen (so followers can learn
            # them by rule b); they need no more acks once the gap below them fills.
            self._inflight.pop(self._chosen_upto, None)
        assert not self._inflight or next(iter(self._inflight)) > self._chosen_upto, "a chosen slot in flight"
        assert self._chosen_upto <= self._last_slot, f"chosen_upto {self._chosen_upto} > last slot {self._last_slot}"
        assert self._chosen_upto < self._first_index or self._chosen_upto in self._accepted

    # ------------------------------------------------------------------ log, truncation, snapshots

    def _store_accepted(self, slot: int, ballot: Ballot, value: object) -> None:
        assert slot >= self._first_index, f"accepting truncated slot {slot} (first_index {self._first_index})"
        held = self._accepted.get(slot)
        if held is not None and held[0] == ballot:
            assert held[1] == value, f"slot {slot} has two values at ballot {ballot}: {held[1]!r}, {value!r}"
            return  # a retransmission: nothing new to persist
        self._accepted[slot] = (ballot, value)
        self._out_accepted[slot] = (ballot, value)
        self._last_slot = max(self._last_slot, slot)

    def _entries_from(self, from_slot: int) -> tuple[tuple[int, Ballot, object], ...]:
        slots = sorted(s for s in self._accepted if s >= from_slot)
        return tuple((s, *self._accepted[s]) for s in slots)

    def compact(self, upto_slot: int) -> None:
        """The state machine's state through `upto_slot` is durable: drop the log up to it."""
        assert upto_slot <= self._applied_index, (
            f"compact({upto_slot}) beyond applied index {self._applied_index}"
        )
        if upto_slot < self._first_index:
            return
        self._truncate_log(upto_slot)

    def _truncate_log(self, upto: int) -> None:
        removed = [s for s in self._accepted if s <= upto]
        for slot in removed:
            del self._accepted[slot]
            self._out_accepted.pop(slot, None)
        self._first_index = upto + 1
        self._known_chosen = {s for s in self._known_chosen if s > upto}
        self._out_truncate_upto = max(self._out_truncate_upto or 0, upto)
        self._out_truncate_slots.extend(removed)

    def _install_snapshot(self, index: int, data: object) -> None:
        assert index > self._chosen_upto, "only a snapshot ahead of our log is installed"
        removed = [s for s in self._accepted if s <= index]
        for slot in removed:
            del self._accepted[slot]
            self._out_accepted.pop(slot, None)
        # Persisting this truncation waits until the state machine holds the snapshot.
        self._deferred_truncate_upto = max(self._deferred_truncate_upto or 0, index)
        self._deferred_truncate_slots.extend(removed)
        self._first_index = index + 1
        self._chosen_upto = index
        self._last_slot = max(self._last_slot, index)
        self._known_chosen = {s for s in self._known_chosen if s > index}
        self._emitted_upto = index
        self._out_snapshot = (index, data)
        self._advance_chosen()

    # ------------------------------------------------------------------ outputs

    def _send(self, to: int, msg: object) -> None:
        self._out_messages.append((to, msg))

    def _set_promised(self, ballot: Ballot) -> None:
        assert ballot > self._promised, f"promise regresses: {self._promised} -> {ballot}"
        self._promised = ballot
        self._out_promised = ballot

    def _observe_round(self, round_: int) -> None:
        if round_ > self._max_round_seen:
            self._max_round_seen = round_

    def _snapshot_in_flight(self) -> bool:
        return self._out_snapshot is not None or self._outstanding_snapshots > 0

    def _chosen_upto_to_persist(self) -> int | None:
        if self._snapshot_in_flight() or self._chosen_upto == self._persisted_chosen_upto:
            return None
        return self._chosen_upto

    def has_ready(self) -> bool:
        return bool(
            self._out_promised is not None
            or self._out_accepted
            or self._out_messages
            or any(self._out_accepts.values())
            or self._out_dropped
            or self._out_snapshot_requests
            or self._out_snapshot is not None
            or self._out_truncate_upto is not None
            or self._emitted_upto < self._chosen_upto
            or self._chosen_upto_to_persist() is not None
        )

    def ready(self) -> Ready:
        """Take the pending outputs. Handle per the durability rule, then advance()."""
        ready = Ready(
            promised=self._out_promised,
            accepted=[(s, b, v) for s, (b, v) in sorted(self._out_accepted.items())],
            chosen_upto=self._chosen_upto_to_persist(),
            truncate_upto=self._out_truncate_upto,
            truncate_slots=self._out_truncate_slots,
            snapshot=self._out_snapshot,
            committed=self._take_committed(),
            messages=self._out_messages + self._flush_accepts(),
            dropped_proposals=self._out_dropped,
            snapshot_requests=self._out_snapshot_requests,
        )
        if ready.chosen_upto is not None:
            self._persisted_chosen_upto = ready.chosen_upto
        if ready.snapshot is not None:
            self._outstanding_snapshots += 1
        self._out_promised = None
        self._out_accepted = {}
        self._out_truncate_upto, self._out_truncate_slots = None, []
        self._out_snapshot = None
        self._out_messages, self._out_dropped, self._out_snapshot_requests = [], [], []
        self._outstanding.append(ready)
        return ready

    def _take_committed(self) -> list[tuple[int, object]]:
        start, end = self._emitted_upto + 1, self._chosen_upto
        committed = [(slot, self._accepted[slot][1]) for slot in range(start, end + 1)]
        self._emitted_upto = max(self._emitted_upto, end)
        return committed

    def advance(self, ready: Ready) -> None:
        """The caller persisted, sent and applied `ready` (the oldest outstanding one)."""
        assert self._outstanding and self._outstanding[0] is ready, "advance() Readies in the order ready() gave them"
        self._outstanding.popleft()
        if ready.snapshot is not None:
            self._advance_snapshot(ready.snapshot[0])
        if ready.committed:
            first, last = ready.committed[0][0], ready.committed[-1][0]
            assert first == self._applied_index + 1, f"applying slot {first} after {self._applied_index}"
            self._applied_index = last
        assert self._applied_index <= self._emitted_upto <= self._chosen_upto

    def _advance_snapshot(self, index: int) -> None:
        assert index > self._applied_index, f"snapshot at {index} is not ahead of applied {self._applied_index}"
        self._applied_index = index
        self._outstanding_snapshots -= 1
        assert self._outstanding_snapshots >= 0
        if self._snapshot_in_flight() or self._deferred_truncate_upto is None:
            return
        # The state machine holds the snapshot now: the log may forget what it covers.
        self._out_truncate_upto = max(self._out_truncate_upto or 0, self._deferred_truncate_upto)
        self._out_truncate_slots.extend(self._deferred_truncate_slots)
        self._deferred_truncate_upto, self._deferred_truncate_slots = None, []


_HANDLERS = {
    Prepare: PaxosGroup._on_prepare,
    Promise: PaxosGroup._on_promise,
    Accept: PaxosGroup._on_accept,
    Accepted: PaxosGroup._on_accepted,
    Nack: PaxosGroup._on_nack,
    Heartbeat: PaxosGroup._on_heartbeat,
    HeartbeatAck: PaxosGroup._on_heartbeat_ack,
    Chosen: PaxosGroup._on_chosen,
    InstallSnapshot: PaxosGroup._on_install_snapshot,
    TimeoutNow: PaxosGroup._on_timeout_now,
}
