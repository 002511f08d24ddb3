"""Rule-by-rule tests of the Multi-Paxos core, named after the rules they check.

Sections: acceptor rules, learner rules, proposer/leader rules, liveness machinery
(heartbeats, retransmission, catch-up, snapshots, quiescence, stickiness), restarts,
and the output contract (Ready/advance). Whole-group randomized runs: test_core_sim.py.
"""

from __future__ import annotations

import random
from collections import deque

import pytest

from paxos_groups.ballot import Ballot
from paxos_groups.core import (
    DurableState,
    GroupConfig,
    NotLeader,
    PaxosGroup,
    ProposalQueueFull,
    Ready,
)
from paxos_groups.core_types import (
    CANDIDATE,
    EVENTS,
    FOLLOWER,
    LEADER,
    PRE_CANDIDATE,
    ROLE_TRANSITIONS,
    ROLES,
    next_role,
)
from paxos_groups.durable import load_durable_state, needs_sync, ready_to_batch
from paxos_groups.engine import MemoryEngine
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

GID = 7
MEMBERS = (1, 2, 3)
NOT_STICKY = GroupConfig(stickiness=False)


def make_group(node_id=1, members=MEMBERS, config=None, state=None, applied_index=0, bugs=frozenset(), seed=0):
    return PaxosGroup(
        GID, node_id, members, state or DurableState(), config or GroupConfig(), random.Random(seed),
        bugs=bugs, applied_index=applied_index,
    )


def take(g: PaxosGroup) -> Ready:
    """Take a Ready and advance it (the caller persisted, sent and applied it)."""
    ready = g.ready()
    g.advance(ready)
    return ready


def sent(ready: Ready, kind, to=None) -> list:
    return [m for t, m in ready.messages if isinstance(m, kind) and (to is None or t == to)]


def b(round_, node):
    return Ballot(round_, node)


def make_leader(g: PaxosGroup, promises=None) -> Ready:
    """Campaign and win with empty promises from enough peers."""
    g.campaign()
    take(g)
    peers = [m for m in g.members if m != g.node_id]
    for peer in peers[: len(g.members) // 2]:
        entries = (promises or {}).get(peer, ())
        g.step(peer, Promise(GID, g.ballot, entries, 0, 1))
    assert g.is_leader
    return take(g)


def ack_all(g: PaxosGroup, ready: Ready, peers=None) -> None:
    for to, m in ready.messages:
        if isinstance(m, Accept) and (peers is None or to in peers):
            g.step(to, Accepted(GID, m.ballot, tuple(s for s, _ in m.entries), 0))


class Cluster:
    """A fault-free in-order network of groups, with isolation, for small scenarios."""

    def __init__(self, n=3, config=None, seed=0):
        self.members = tuple(range(1, n + 1))
        self.groups = {i: make_group(i, self.members, config, seed=seed + i) for i in self.members}
        self.applied = {i: [] for i in self.members}
        self.queue = deque()
        self.isolated: set[int] = set()
        self.snapshots = {i: None for i in self.members}
        self.sent_counts = {}
        self.delivered = []  # (frm, to, message), in delivery order

    def drain(self, node):
        g = self.groups[node]
        while g.has_ready():
            r = g.ready()
            if r.snapshot is not None:
                self.snapshots[node] = r.snapshot
                self.applied[node] = list(r.snapshot[1])
            self.applied[node].extend(v for _, v in r.committed)
            for to, m in r.messages:
                self.sent_counts[type(m).__name__] = self.sent_counts.get(type(m).__name__, 0) + 1
                self.queue.append((node, to, m))
            g.advance(r)
            for peer in r.snapshot_requests:
                g.send_snapshot(peer, len(self.applied[node]), list(self.applied[node]))

    def deliver(self):
        while self.queue:
            frm, to, m = self.queue.popleft()
            if frm in self.isolated or to in self.isolated:
                continue
            self.delivered.append((frm, to, m))
            self.groups[to].step(frm, m)
            self.drain(to)

    def tick(self, n=1):
        for _ in range(n):
            for i, g in self.groups.items():
                g.tick()
                self.drain(i)
            self.deliver()

    def leader(self):
        leaders = [g for g in self.groups.values() if g.is_leader]
        assert len(leaders) <= 1 or len({g.ballot for g in leaders}) == len(leaders)
        return max(leaders, key=lambda g: g.ballot) if leaders else None

    def elect(self, node=1):
        self.groups[node].campaign()
        self.drain(node)
        self.deliver()
        assert self.groups[node].is_leader
        return self.groups[node]

    def propose(self, node, value):
        slot = self.groups[node].propose(value)
        self.drain(node)
        self.deliver()
        return slot


# ============================================================================ acceptor rules


def test_acceptor_promises_higher_ballot_and_persists_promise_with_the_reply():
    g = make_group(2)
    g.step(1, Prepare(GID, b(1, 1), 1))
    r = take(g)
    assert r.promised == b(1, 1)  # persisted by the same Ready that carries the reply
    assert sent(r, Promise, to=1) == [Promise(GID, b(1, 1), (), 0, 1)]
    assert needs_sync(r)


def test_acceptor_rejects_lower_ballot():
    g = make_group(2)
    g.step(3, Prepare(GID, b(5, 3), 1))
    take(g)
    g.step(1, Prepare(GID, b(4, 1), 1))
    r = take(g)
    assert sent(r, Nack, to=1) == [Nack(GID, b(4, 1), b(5, 3))]
    assert r.promised is None
    g.step(1, Accept(GID, b(4, 1), ((1, b"x"),), 0))
    r = take(g)
    assert sent(r, Nack, to=1) == [Nack(GID, b(4, 1), b(5, 3))]
    assert r.accepted == [] and g.accepted_entry(1) is None


def test_acceptor_accepts_equal_ballot_retransmission_from_the_same_proposer():
    g = make_group(2)
    g.step(1, Prepare(GID, b(1, 1), 1))
    take(g)
    g.step(1, Prepare(GID, b(1, 1), 1))
    r = take(g)
    assert len(sent(r, Promise, to=1)) == 1
    assert r.promised is None  # nothing new to persist


def test_acceptor_promise_reports_accepted_values():
    g = make_group(2, config=NOT_STICKY)  # node 1 spoke as leader; let node 3 prepare anyway
    g.step(1, Accept(GID, b(1, 1), ((1, b"a"), (2, b"b"), (3, b"c")), 0))
    take(g)
    g.step(3, Prepare(GID, b(2, 3), 2))
    (promise,) = sent(take(g), Promise, to=3)
    assert promise.entries == ((2, b(1, 1), b"b"), (3, b(1, 1), b"c"))
    assert promise.chosen_upto == 0 and promise.first_index == 1


def test_acceptor_nacks_prepare_below_its_first_index_as_behind():
    state = DurableState(accepted={s: (b(1, 1), s) for s in range(1, 11)}, chosen_upto=10)
    g = make_group(2, state=state, applied_index=10)
    g.compact(8)
    take(g)
    assert g.first_index == 9
    g.step(3, Prepare(GID, b(2, 3), 5))
    r = take(g)
    assert sent(r, Nack, to=3) == [Nack(GID, b(2, 3), Ballot.ZERO, behind=True)]
    assert r.promised is None, "a refusal changes no acceptor state"
    g.step(3, Prepare(GID, b(2, 3), 9))
    assert sent(take(g), Promise, to=3)


def test_acceptor_accept_raises_promise_and_persists_entries_before_reply():
    g = make_group(2)
    g.step(1, Accept(GID, b(3, 1), ((1, b"a"), (2, None)), 0))
    r = take(g)
    assert r.promised == b(3, 1)
    assert r.accepted == [(1, b(3, 1), b"a"), (2, b(3, 1), None)]
    assert sent(r, Accepted, to=1) == [Accepted(GID, b(3, 1), (1, 2), 0)]
    assert needs_sync(r)


def test_acceptor_retransmitted_accept_needs_no_write():
    g = make_group(2)
    accept = Accept(GID, b(1, 1), ((1, b"a"),), 0)
    g.step(1, accept)
    take(g)
    g.step(1, accept)
    r = take(g)
    assert r.accepted == [] and not needs_sync(r)
    assert sent(r, Accepted, to=1) == [Accepted(GID, b(1, 1), (1,), 0)]


def test_acceptor_skips_chosen_slots_but_acknowledges_them():
    g = make_group(2)
    g.step(1, Accept(GID, b(1, 1), ((1, b"a"),), 1))
    take(g)
    assert g.chosen_upto == 1
    g.step(3, Accept(GID, b(2, 3), ((1, b"a"), (2, b"z")), 1))
    r = take(g)
    assert r.accepted == [(2, b(2, 3), b"z")]
    assert g.accepted_entry(1) == (b(1, 1), b"a")
    assert sent(r, Accepted, to=3) == [Accepted(GID, b(2, 3), (1, 2), 1)]


def test_acceptor_with_planted_bug_accepts_lower_ballot():
    g = make_group(2, bugs=frozenset({"accept-lower-ballot"}))
    g.step(3, Prepare(GID, b(5, 3), 1))
    take(g)
    g.step(1, Accept(GID, b(4, 1), ((1, b"x"),), 0))
    r = take(g)
    assert sent(r, Accepted, to=1) and g.accepted_entry(1) == (b(4, 1), b"x")


def test_acceptor_ignores_prepare_while_leader_is_live():
    c = Cluster(config=GroupConfig(quiesce=False))  # quiesced, the window is 10x longer
    c.elect(1)
    c.tick(3)
    follower = c.groups[2]
    follower.step(3, Prepare(GID, b(9, 3), 1))
    r = take(follower)
    assert r.messages == [] and r.promised is None
    # Once the leader is silent for election_ticks_min ticks, the same Prepare is granted.
    c.isolated.add(1)
    for _ in range(GroupConfig().election_ticks_min):
        follower.tick()
        take(follower)
    follower.step(3, Prepare(GID, b(9, 3), 1))
    r = take(follower)
    assert r.promised == b(9, 3)


def test_acceptor_without_stickiness_grants_prepare_despite_live_leader():
    c = Cluster(config=GroupConfig(stickiness=False))
    c.elect(1)
    c.tick(3)
    follower = c.groups[2]
    follower.step(3, Prepare(GID, b(9, 3), 1))
    assert take(follower).promised == b(9, 3)


def test_acceptor_answers_probe_without_changing_state():
    g = make_group(2)
    g.step(3, Prepare(GID, b(4, 3), 1, probe=True))
    r = take(g)
    assert r.promised is None and g.promised == Ballot.ZERO
    assert sent(r, Promise, to=3) == [Promise(GID, b(4, 3), (), 0, 1, probe=True)]


def test_acceptor_ignores_messages_not_from_the_ballot_owner_or_non_members():
    g = make_group(2)
    g.step(3, Prepare(GID, b(1, 1), 1))  # node 3 cannot prepare node 1's ballot
    g.step(3, Accept(GID, b(1, 1), ((1, b"x"),), 0))
    g.step(9, Prepare(GID, b(1, 9), 1))  # not a member
    assert not g.has_ready()
    with pytest.raises(AssertionError):
        g.step(1, Prepare(GID + 1, b(1, 1), 1))  # the caller routed a message to the wrong group


# ============================================================================ learner rules


def test_learner_leader_learns_chosen_from_majority_at_its_ballot():
    g = make_group(1)
    make_leader(g)
    g.propose(b"a")
    r = take(g)
    assert g.chosen_upto == 0 and r.committed == []
    g.step(2, Accepted(GID, g.ballot, (1,), 0))
    r = take(g)
    assert g.chosen_upto == 1 and r.committed == [(1, b"a")]
    assert r.chosen_upto == 1


def test_learner_leader_ignores_accepted_of_another_ballot():
    g = make_group(1)
    make_leader(g)
    g.propose(b"a")
    take(g)
    g.step(2, Accepted(GID, b(g.ballot.round - 1, 2), (1,), 0))
    assert g.chosen_upto == 0


def test_learner_follower_learns_from_commit_index_at_matching_ballot():
    g = make_group(2)
    g.step(1, Accept(GID, b(1, 1), ((1, b"a"), (2, b"b")), 0))
    take(g)
    g.step(1, Heartbeat(GID, b(1, 1), 1))
    r = take(g)
    assert g.chosen_upto == 1 and r.committed == [(1, b"a")]
    (ack,) = sent(r, HeartbeatAck, to=1)
    assert ack.chosen_upto == 1 and ack.max_accepted_slot == 2


def test_learner_follower_ignores_commit_index_for_entries_of_other_ballots():
    g = make_group(2)
    g.step(1, Accept(GID, b(1, 1), ((1, b"a"),), 0))
    take(g)
    # Leader 3 at ballot 2 committed slot 1, perhaps with another value: ours is of ballot 1.
    g.step(3, Heartbeat(GID, b(2, 3), 1))
    r = take(g)
    assert g.chosen_upto == 0 and r.committed == []


def test_learner_accept_arriving_after_its_commit_index_is_learned():
    g = make_group(2)
    g.step(1, Heartbeat(GID, b(1, 1), 2))  # commit index 2 heard before the entries
    take(g)
    g.step(1, Accept(GID, b(1, 1), ((1, b"a"), (2, b"b")), 0))
    assert [v for _, v in take(g).committed] == [b"a", b"b"]


def test_learner_chosen_message_teaches_values():
    g = make_group(3)
    g.step(2, Accept(GID, b(1, 2), ((2, b"stale"),), 0))
    take(g)
    g.step(1, Chosen(GID, b(2, 1), ((1, b"a"), (2, b"b"))))
    r = take(g)
    assert r.committed == [(1, b"a"), (2, b"b")]
    # Stored at the sender's ballot: safe, the value is chosen (see core.py, "Decisions").
    assert r.accepted == [(1, b(2, 1), b"a"), (2, b(2, 1), b"b")]
    assert sent(r, HeartbeatAck, to=1)[0].chosen_upto == 2


def test_learner_keeps_its_entry_when_it_already_holds_the_chosen_value():
    g = make_group(3)
    g.step(1, Accept(GID, b(1, 1), ((1, b"a"),), 0))
    take(g)
    g.step(2, Chosen(GID, b(4, 2), ((1, b"a"),)))
    r = take(g)
    assert r.accepted == [] and g.accepted_entry(1) == (b(1, 1), b"a")


def test_learner_two_chosen_values_for_a_slot_is_an_assertion():
    g = make_group(3)
    g.step(1, Chosen(GID, b(1, 1), ((1, b"a"),)))
    take(g)
    with pytest.raises(AssertionError, match="chosen twice"):
        g.step(1, Chosen(GID, b(1, 1), ((1, b"other"),)))


def test_learner_emits_chosen_entries_in_order_exactly_once():
    g = make_group(2)
    g.step(1, Accept(GID, b(1, 1), ((1, b"a"), (2, b"b"), (3, b"c")), 0))
    g.step(1, Chosen(GID, b(1, 1), ((3, b"c"),)))  # slot 3 known chosen before 1 and 2
    r = take(g)
    assert r.committed == [] and g.chosen_upto == 0
    g.step(1, Heartbeat(GID, b(1, 1), 2))
    r = take(g)
    assert r.committed == [(1, b"a"), (2, b"b"), (3, b"c")]
    g.step(1, Heartbeat(GID, b(1, 1), 3))
    assert take(g).committed == []
    assert g.applied_index == 3


# ============================================================================ proposer rules


def test_proposer_election_timeout_probes_then_campaigns():
    g = make_group(1)
    for _ in range(GroupConfig().election_ticks_max):
        g.tick()
    assert g.role == PRE_CANDIDATE
    r = take(g)
    probes = sent(r, Prepare)
    assert {m.probe for m in probes} == {True} and r.promised is None
    g.step(2, Promise(GID, probes[0].ballot, (), 0, 1, probe=True))
    assert g.role == CANDIDATE
    r = take(g)
    assert r.promised == g.ballot == probes[0].ballot
    assert all(not m.probe for m in sent(r, Prepare))


def test_proposer_without_stickiness_campaigns_directly_on_timeout():
    g = make_group(1, config=GroupConfig(stickiness=False))
    for _ in range(GroupConfig().election_ticks_max):
        g.tick()
    assert g.role == CANDIDATE
    r = take(g)
    assert r.promised == g.ballot and len(sent(r, Prepare)) == 2


def test_proposer_campaigns_above_every_round_seen():
    g = make_group(1)
    g.step(2, Nack(GID, b(1, 1), b(41, 3)))
    g.step(3, Heartbeat(GID, b(17, 3), 0))
    take(g)
    g.campaign()
    assert g.ballot == b(42, 1)


def test_proposer_self_promise_and_prepares_leave_in_one_ready():
    g = make_group(1)
    g.campaign()
    r = take(g)
    assert r.promised == g.ballot
    assert sorted(t for t, _ in r.messages) == [2, 3]
    assert all(m.from_slot == 1 for m in sent(r, Prepare))


def test_proposer_reproposes_highest_ballot_value():
    g = make_group(1)
    g.step(2, Accept(GID, b(1, 2), ((1, b"old"), (2, b"x")), 0))
    take(g)
    g.campaign()
    take(g)
    entries = ((1, b(3, 3), b"newer"), (3, b(1, 2), b"y"))
    g.step(3, Promise(GID, g.ballot, entries, 0, 1))
    assert g.is_leader
    r = take(g)
    (accept,) = sent(r, Accept, to=2)
    assert accept.entries == ((1, b"newer"), (2, b"x"), (3, b"y"))
    assert r.accepted == [(1, g.ballot, b"newer"), (2, g.ballot, b"x"), (3, g.ballot, b"y")]


def test_proposer_fills_holes_with_noop():
    g = make_group(1)
    g.campaign()
    take(g)
    g.step(2, Promise(GID, g.ballot, ((3, b(1, 3), b"c"),), 0, 1))
    (accept,) = sent(take(g), Accept, to=3)
    assert accept.entries == ((1, None), (2, None), (3, b"c"))
    assert g.propose(b"next") == 4


def test_proposer_with_planted_bug_skips_reproposal():
    g = make_group(1, bugs=frozenset({"skip-reproposal"}))
    g.campaign()
    take(g)
    g.step(2, Promise(GID, g.ballot, ((1, b(1, 3), b"c"),), 0, 1))
    (accept,) = sent(take(g), Accept, to=2)
    assert accept.entries == ((1, None),)


def test_proposer_does_not_repropose_slots_it_already_knows_chosen():
    g = make_group(1)
    g.step(2, Accept(GID, b(1, 2), ((1, b"a"), (2, b"b")), 1))
    take(g)
    assert g.chosen_upto == 1
    g.campaign()
    r = take(g)
    assert {m.from_slot for m in sent(r, Prepare)} == {2}
    g.step(3, Promise(GID, g.ballot, (), 0, 1))
    (accept,) = sent(take(g), Accept, to=2)
    assert accept.entries == ((2, b"b"),)


def test_proposer_needs_a_majority_of_promises():
    g = make_group(1, members=(1, 2, 3, 4, 5))
    g.campaign()
    take(g)
    g.step(2, Promise(GID, g.ballot, (), 0, 1))
    assert g.role == CANDIDATE
    g.step(2, Promise(GID, g.ballot, (), 0, 1))  # a duplicate does not count twice
    assert g.role == CANDIDATE
    g.step(3, Promise(GID, g.ballot, (), 0, 1))
    assert g.is_leader


def test_proposer_steps_down_on_higher_nack_and_drops_queued_proposals():
    g = make_group(1, config=GroupConfig(max_inflight_slots=1))
    make_leader(g)
    g.propose(b"in-flight")
    g.propose(b"queued-1")
    g.propose(b"queued-2")
    take(g)
    g.step(2, Nack(GID, g.ballot, b(9, 3)))
    assert g.role == FOLLOWER and g.leader_hint is None
    r = take(g)
    assert r.dropped_proposals == [b"queued-1", b"queued-2"]
    with pytest.raises(NotLeader):
        g.propose(b"late")
    g.campaign()
    assert g.ballot == b(10, 1)


def test_proposer_ignores_nack_for_an_older_ballot():
    g = make_group(1)
    make_leader(g)
    g.step(2, Nack(GID, b(0, 1), b(0, 2)))
    assert g.is_leader


def test_proposer_candidate_steps_down_when_behind():
    g = make_group(1)
    g.campaign()
    take(g)
    g.step(2, Nack(GID, g.ballot, Ballot.ZERO, behind=True))
    assert g.role == FOLLOWER


def test_propose_on_follower_raises_not_leader_with_hint():
    g = make_group(2)
    with pytest.raises(NotLeader) as e:
        g.propose(b"x")
    assert e.value.leader_hint is None
    g.step(1, Heartbeat(GID, b(1, 1), 0))
    with pytest.raises(NotLeader) as e:
        g.propose(b"x")
    assert e.value.leader_hint == 1


def test_proposer_pipeline_window_then_queue_then_full():
    g = make_group(1, config=GroupConfig(max_inflight_slots=2, max_pending_proposals=2))
    make_leader(g)
    assert [g.propose(v) for v in (b"a", b"b", b"c", b"d")] == [1, 2, 3, 4]
    assert g.inflight_slots == 2 and g.pending_proposals == 2
    with pytest.raises(ProposalQueueFull):
        g.propose(b"e")
    r = take(g)
    assert [s for s, _ in sent(r, Accept, to=2)[0].entries] == [1, 2]
    g.step(2, Accepted(GID, g.ballot, (1,), 0))
    r = take(g)
    assert r.committed == [(1, b"a")]
    assert sent(r, Accept, to=2)[0].entries == ((3, b"c"),)  # the queue drains in order


def test_proposer_batches_accepts_per_peer_bounded_by_max_entries():
    g = make_group(1, config=GroupConfig(max_entries_per_message=3))
    make_leader(g)
    for i in range(7):
        g.propose(i)
    r = take(g)
    to_2 = sent(r, Accept, to=2)
    assert [len(m.entries) for m in to_2] == [3, 3, 1]
    assert [s for m in to_2 for s, _ in m.entries] == list(range(1, 8))
    assert r.accepted == [(s, g.ballot, s - 1) for s in range(1, 8)]


def test_single_node_group_chooses_alone():
    g = make_group(1, members=(1,))
    g.campaign()
    assert g.is_leader
    g.propose(b"a")
    r = take(g)
    assert r.committed == [(1, b"a")] and r.messages == []


# ============================================================================ leader liveness machinery


def test_leader_heartbeats_every_heartbeat_ticks():
    g = make_group(1, config=GroupConfig(quiesce=False))
    make_leader(g)
    counts = []
    for _ in range(6):
        g.tick()
        counts.append(len(sent(take(g), Heartbeat)))
    assert counts == [0, 2, 0, 2, 0, 2]


def test_leader_retransmits_unacked_accepts():
    g = make_group(1, config=GroupConfig(quiesce=False))
    make_leader(g)
    g.propose(b"a")
    take(g)
    g.step(2, Accepted(GID, g.ballot, (1,), 0))  # chosen with 2, but 3 never acked
    g.propose(b"b")
    take(g)
    g.step(2, Accepted(GID, g.ballot, (2,), 1))
    take(g)
    g.propose(b"c")  # in flight, acked by nobody
    take(g)
    g.tick()
    g.tick()
    r = take(g)
    assert [m.entries for m in sent(r, Accept, to=2)] == [((3, b"c"),)]
    assert [m.entries for m in sent(r, Accept, to=3)] == [((3, b"c"),)]


def test_leader_catches_up_lagging_follower_with_chosen_entries():
    c = Cluster(config=GroupConfig(max_entries_per_message=4))
    c.elect(1)
    c.isolated.add(3)
    for i in range(10):
        c.propose(1, i)
    c.tick(4)
    c.isolated.clear()
    c.tick(6)
    assert c.applied[3] == list(range(10))
    assert c.sent_counts["Chosen"] >= 3  # 10 entries, 4 per message


def test_leader_requests_snapshot_for_truncated_slots_and_follower_installs_it():
    c = Cluster()
    leader = c.elect(1)
    c.isolated.add(3)
    for i in range(10):
        c.propose(1, i)
    c.tick(4)
    leader.compact(8)
    c.groups[2].compact(8)
    c.drain(1)
    c.drain(2)
    c.isolated.clear()
    c.tick(6)
    follower = c.groups[3]
    assert c.snapshots[3][0] == 10  # the leader's applied index when it served the request
    assert c.applied[3] == list(range(10))
    assert follower.first_index == 11 and follower.chosen_upto == 10 and follower.applied_index == 10
    c.propose(1, "after")
    c.tick(2)
    assert c.applied[3][-1] == "after"


def test_send_snapshot_after_losing_leadership_sends_nothing():
    g = make_group(1)
    make_leader(g)
    g.step(2, Nack(GID, g.ballot, b(9, 2)))
    assert g.send_snapshot(2, 0, "state") is False
    assert sent(take(g), InstallSnapshot) == []


def test_step_down_discards_unsent_snapshot_requests():
    state = DurableState(accepted={s: (b(1, 1), s) for s in range(1, 6)}, chosen_upto=5)
    g = make_group(1, state=state, applied_index=5)
    g.compact(5)
    make_leader(g)
    g.step(2, HeartbeatAck(GID, g.ballot, 0, 0))  # node 2 needs slots 1..5, truncated here
    assert g.has_ready()
    g.step(3, Nack(GID, g.ballot, b(9, 3)))
    assert take(g).snapshot_requests == []


def test_leader_asks_again_for_a_snapshot_only_after_an_election_timeout():
    state = DurableState(accepted={s: (b(1, 1), s) for s in range(1, 6)}, chosen_upto=5)
    g = make_group(1, state=state, applied_index=5, config=GroupConfig(quiesce=False))
    g.compact(5)
    make_leader(g)
    g.step(2, HeartbeatAck(GID, g.ballot, 0, 0))
    assert take(g).snapshot_requests == [2]
    g.step(2, HeartbeatAck(GID, g.ballot, 0, 0))
    assert take(g).snapshot_requests == []
    for _ in range(GroupConfig().election_ticks_max):
        g.tick()
        g.step(3, HeartbeatAck(GID, g.ballot, 5, 5))  # keep the quorum
    g.step(2, HeartbeatAck(GID, g.ballot, 0, 0))
    assert take(g).snapshot_requests == [2]


def test_follower_install_snapshot_persists_truncation_only_after_advance():
    g = make_group(2)
    g.step(1, Accept(GID, b(1, 1), tuple((s, s) for s in range(1, 6)), 0))
    take(g)
    g.step(1, InstallSnapshot(GID, b(1, 1), 3, "state@3"))
    r = g.ready()
    assert r.snapshot == (3, "state@3")
    assert r.truncate_upto is None and r.chosen_upto is None, "nothing of the install is durable yet"
    assert sent(r, HeartbeatAck, to=1)[0].chosen_upto == 3
    g.advance(r)
    r = take(g)
    assert r.truncate_upto == 3 and sorted(r.truncate_slots) == [1, 2, 3]
    assert r.chosen_upto == 3
    assert g.applied_index == 3 and g.first_index == 4


def test_leader_quiesces_when_idle_and_wakes_on_proposal():
    c = Cluster()
    leader = c.elect(1)
    c.propose(1, b"a")
    c.tick(6)
    assert leader.quiesced and all(g.quiesced for g in c.groups.values())
    before = c.sent_counts.get("Heartbeat", 0)
    c.tick(40)
    assert c.sent_counts["Heartbeat"] - before == 2 * 2  # two quiesced rounds of two heartbeats
    c.propose(1, b"b")
    assert not leader.quiesced
    c.tick(1)
    assert c.applied[2] == [b"a", b"b"]
    # Every follower acked slot 2, so the next heartbeat both carries the commit index
    # and quiesces again: one round of heartbeats per write, not two.
    c.tick(2)
    assert all(g.quiesced for g in c.groups.values())
    assert all(c.applied[n] == [b"a", b"b"] for n in c.groups)


def test_quiesced_follower_waits_longer_and_wake_restores_normal_timeout():
    c = Cluster()
    c.elect(1)
    c.propose(1, b"a")
    c.tick(6)
    follower = c.groups[2]
    assert follower.quiesced
    c.isolated.add(1)
    c.tick(GroupConfig().election_ticks_max)
    assert follower.role == FOLLOWER, "a quiesced follower tolerates a long silence"
    # The caller suspects the leader (say node liveness says node 1 is dead): it wakes the
    # group's other replicas, which then elect at the normal pace.
    c.groups[2].wake()
    c.groups[3].wake()
    c.tick(GroupConfig().election_ticks_max + 10)
    assert c.leader() is not None and c.leader().node_id in (2, 3)


def test_quiesce_off_keeps_heartbeating():
    c = Cluster(config=GroupConfig(quiesce=False))
    leader = c.elect(1)
    c.tick(20)
    assert not leader.quiesced and c.sent_counts["Heartbeat"] >= 2 * 9


def test_leader_without_quorum_steps_down():
    c = Cluster(config=GroupConfig(quiesce=False))
    leader = c.elect(1)
    c.isolated.update({2, 3})
    c.tick(GroupConfig().election_ticks_max)
    assert leader.is_leader, "acks from before the partition still count in the first window"
    c.tick(GroupConfig().election_ticks_max)
    assert not leader.is_leader


def test_partitioned_node_rejoining_does_not_disrupt_the_leader():
    c = Cluster()
    leader = c.elect(1)
    ballot = leader.ballot
    c.isolated.add(3)
    c.tick(200)  # node 3 times out again and again
    assert c.groups[3].promised <= ballot, "probes do not raise any ballot"
    c.isolated.clear()
    c.tick(20)
    assert leader.is_leader and leader.ballot == ballot
    assert c.groups[3].leader_hint == 1


def test_new_leader_elected_after_leader_dies():
    c = Cluster()
    c.elect(1)
    c.propose(1, b"a")
    c.isolated.add(1)
    c.tick(60)
    new = c.leader()
    assert new is not None and new.node_id != 1
    c.propose(new.node_id, b"b")
    c.tick(2)
    assert c.applied[2] == c.applied[3] == [b"a", b"b"]


# ============================================================================ leadership transfer


def test_transfer_moves_leadership_to_the_target_within_a_few_ticks():
    c = Cluster()  # stickiness on: node 2 hears a live leader throughout
    old = c.elect(1)
    for v in (b"a", b"b"):
        c.propose(1, v)
    assert old.transfer_leadership(3) is True
    assert old.transfer_target == 3
    c.drain(1)
    c.deliver()
    c.tick(3)
    new = c.groups[3]
    assert new.is_leader and c.leader() is new
    assert not old.is_leader and old.transfer_target is None
    assert old.leader_hint == 3 and c.groups[2].leader_hint == 3
    forced = [m for frm, _, m in c.delivered if frm == 3 and isinstance(m, Prepare)]
    assert forced and all(m.force and not m.probe for m in forced), "no probe: a forced campaign"
    c.propose(3, b"c")
    c.tick(2)
    assert c.applied[1] == c.applied[2] == c.applied[3] == [b"a", b"b", b"c"]


def test_transfer_target_must_catch_up_before_timeout_now():
    g = make_group(1)
    make_leader(g)
    g.propose(b"a")
    g.propose(b"b")
    take(g)
    g.step(2, Accepted(GID, g.ballot, (1, 2), 0))  # chosen without node 3
    take(g)
    assert g.transfer_leadership(3) is True
    r = take(g)
    assert sent(r, TimeoutNow) == [], "node 3 has acked nothing"
    assert sent(r, Heartbeat, to=3), "asks where the target stands"
    g.step(3, HeartbeatAck(GID, g.ballot, 0, 0))
    r = take(g)
    assert sent(r, Chosen, to=3) == [Chosen(GID, g.ballot, ((1, b"a"), (2, b"b")))]
    assert sent(r, TimeoutNow) == []
    g.step(3, HeartbeatAck(GID, g.ballot, 2, 2))  # caught up
    assert sent(take(g), TimeoutNow, to=3) == [TimeoutNow(GID, g.ballot)]


def test_transfer_resends_unacked_in_flight_slots_to_the_target_and_waits_for_its_ack():
    g = make_group(1)
    make_leader(g)
    g.propose(b"a")
    take(g)
    g.step(2, HeartbeatAck(GID, g.ballot, 0, 0))
    g.step(3, HeartbeatAck(GID, g.ballot, 0, 0))
    take(g)
    assert g.transfer_leadership(3)
    r = take(g)
    assert [m.entries for m in sent(r, Accept, to=3)] == [((1, b"a"),)]
    assert sent(r, TimeoutNow) == []
    g.step(3, Accepted(GID, g.ballot, (1,), 0))  # holds the in-flight slot (now chosen)
    assert sent(take(g), TimeoutNow) == [], "it must also learn that slot 1 is chosen"
    g.step(3, HeartbeatAck(GID, g.ballot, 1, 1))
    assert sent(take(g), TimeoutNow, to=3) == [TimeoutNow(GID, g.ballot)]


def test_lagging_target_in_a_cluster_gets_catch_up_before_timeout_now():
    c = Cluster(config=GroupConfig(max_entries_per_message=4))
    old = c.elect(1)
    c.isolated.add(3)
    for i in range(10):
        c.propose(1, i)
    c.tick(4)
    c.isolated.clear()
    assert old.transfer_leadership(3)
    c.drain(1)
    c.deliver()
    c.tick(4)
    assert c.groups[3].is_leader
    to_3 = [m for _, to, m in c.delivered if to == 3]
    first_timeout_now = next(i for i, m in enumerate(to_3) if isinstance(m, TimeoutNow))
    caught_up = {slot for m in to_3[:first_timeout_now] if isinstance(m, Chosen) for slot, _ in m.entries}
    assert caught_up == set(range(1, 11))
    assert c.applied[3] == list(range(10))


def test_proposals_during_transfer_raise_not_leader_hinting_the_target():
    g = make_group(1, config=GroupConfig(max_inflight_slots=1))
    make_leader(g)
    g.propose(b"in-flight")
    g.propose(b"queued-1")
    g.propose(b"queued-2")
    take(g)
    assert g.transfer_leadership(2)
    assert g.is_leader and g.transfer_target == 2
    r = take(g)
    assert r.dropped_proposals == [b"queued-1", b"queued-2"]
    with pytest.raises(NotLeader) as e:
        g.propose(b"late")
    assert e.value.leader_hint == 2
    g.step(2, Accepted(GID, g.ballot, (1,), 0))  # the in-flight slot still completes
    assert g.chosen_upto == 1 and g.inflight_slots == 0


def test_abandoned_transfer_resumes_the_old_leaders_proposals():
    c = Cluster(config=GroupConfig(quiesce=False))
    leader = c.elect(1)
    c.isolated.add(3)  # the target is partitioned: it never catches up nor campaigns
    assert leader.transfer_leadership(3)
    c.drain(1)
    c.deliver()
    max_ticks = GroupConfig().election_ticks_max
    c.tick(max_ticks - 1)
    with pytest.raises(NotLeader):
        leader.propose(b"too early")
    c.tick(1)
    assert leader.is_leader and leader.transfer_target is None
    c.propose(1, b"resumed")
    c.tick(2)
    assert c.applied[1] == c.applied[2] == [b"resumed"]


def test_transfer_leadership_is_refused_off_the_leader_to_itself_or_to_a_non_member():
    g = make_group(1)
    assert g.transfer_leadership(2) is False  # not the leader
    make_leader(g)
    assert g.transfer_leadership(1) is False
    assert g.transfer_leadership(9) is False
    assert g.transfer_target is None
    solo = make_group(1, members=(1,))
    solo.campaign()
    assert solo.is_leader and solo.transfer_leadership(2) is False


def test_acceptor_honours_forced_prepare_despite_stickiness_but_not_an_unforced_one():
    c = Cluster(config=GroupConfig(quiesce=False))
    c.elect(1)
    c.tick(3)
    follower = c.groups[2]
    follower.step(3, Prepare(GID, b(9, 3), 1))
    r = take(follower)
    assert r.messages == [] and r.promised is None, "sticky: a live leader exists"
    follower.step(3, Prepare(GID, b(9, 3), 1, force=True))
    r = take(follower)
    assert r.promised == b(9, 3) and sent(r, Promise, to=3)
    follower.step(3, Prepare(GID, b(8, 3), 1, force=True))  # forced, but still phase 1
    assert sent(take(follower), Nack, to=3) == [Nack(GID, b(8, 3), b(9, 3))]


def test_leader_honours_forced_prepare_and_steps_down():
    g = make_group(1)
    make_leader(g)
    g.step(3, Prepare(GID, b(5, 3), 1))
    assert g.is_leader and not g.has_ready()
    g.step(3, Prepare(GID, b(5, 3), 1, force=True))
    assert g.role == FOLLOWER and g.promised == b(5, 3)
    assert sent(take(g), Promise, to=3)


def test_timeout_now_from_the_current_leader_starts_a_forced_campaign_without_probe():
    g = make_group(2)
    g.step(1, Heartbeat(GID, b(2, 1), 0))
    take(g)
    g.step(3, TimeoutNow(GID, b(2, 3)))  # not our leader
    g.step(1, TimeoutNow(GID, b(1, 1)))  # an older leadership of node 1
    g.step(3, TimeoutNow(GID, b(2, 1)))  # not the ballot owner
    assert g.role == FOLLOWER and g.leader_hint == 1
    assert sent(take(g), Prepare) == []
    g.step(1, TimeoutNow(GID, b(2, 1)))
    assert g.role == CANDIDATE and g.ballot == b(3, 2)
    r = take(g)
    prepares = sent(r, Prepare)
    assert len(prepares) == 2 and all(m.force and not m.probe for m in prepares)
    g.step(1, TimeoutNow(GID, b(2, 1)))  # a duplicate: ignored once campaigning
    assert g.role == CANDIDATE and g.ballot == b(3, 2)


# ============================================================================ restart, compaction, outputs


def _persist(engine: MemoryEngine, g: PaxosGroup) -> list:
    committed = []
    while g.has_ready():
        r = g.ready()
        engine.write(ready_to_batch(GID, r), sync=needs_sync(r))
        committed.extend(r.committed)
        g.advance(r)
    return committed


def test_restart_replays_committed_from_applied_index():
    engine = MemoryEngine()
    g = make_group(2)
    g.step(1, Accept(GID, b(1, 1), ((1, b"a"), (2, b"b"), (3, b"c")), 3))
    assert [v for _, v in _persist(engine, g)] == [b"a", b"b", b"c"]
    engine.crash()
    g = make_group(2, state=load_durable_state(engine, GID), applied_index=1)
    assert g.promised == b(1, 1) and g.chosen_upto == 3
    assert take(g).committed == [(2, b"b"), (3, b"c")]


def test_restart_forgets_unpersisted_promises_only_if_no_reply_left():
    engine = MemoryEngine()
    g = make_group(2)
    g.step(1, Prepare(GID, b(1, 1), 1))
    r = g.ready()  # the node dies before persisting: the Promise never left
    engine.crash()
    g = make_group(2, state=load_durable_state(engine, GID))
    assert g.promised == Ballot.ZERO
    del r


def test_restart_completes_an_interrupted_snapshot_install():
    engine = MemoryEngine()
    g = make_group(2)
    g.step(1, Accept(GID, b(1, 1), ((1, b"a"), (2, b"junk")), 0))
    _persist(engine, g)
    g.step(1, InstallSnapshot(GID, b(1, 1), 5, "state@5"))
    r = g.ready()
    engine.write(ready_to_batch(GID, r), sync=needs_sync(r))
    # The state machine restored the snapshot durably, then the node died before the
    # deferred truncation was persisted.
    engine.crash()
    state = load_durable_state(engine, GID)
    assert state.first_index == 1 and 2 in state.accepted
    g = make_group(2, state=state, applied_index=5)
    assert g.chosen_upto == 5 and g.first_index == 6 and g.accepted_entry(2) is None
    r = take(g)
    assert r.committed == [] and r.truncate_upto == 5 and r.chosen_upto == 5


def test_restart_with_state_machine_behind_the_truncated_log_is_an_assertion():
    state = DurableState(accepted={5: (b(1, 1), b"e")}, chosen_upto=5, first_index=5)
    with pytest.raises(AssertionError, match="lost slots the log already truncated"):
        make_group(2, state=state, applied_index=2)


def test_compact_truncates_applied_slots_and_lists_them():
    g = make_group(2)
    g.step(1, Accept(GID, b(1, 1), tuple((s, s) for s in range(1, 6)), 5))
    take(g)
    with pytest.raises(AssertionError):
        g.compact(6)
    g.compact(3)
    r = take(g)
    assert r.truncate_upto == 3 and sorted(r.truncate_slots) == [1, 2, 3]
    assert g.first_index == 4 and g.accepted_entry(3) is None and g.accepted_entry(4) == (b(1, 1), 4)
    g.compact(2)  # already truncated: nothing to do
    assert not g.has_ready()


def test_readies_must_be_advanced_in_order():
    g = make_group(2)
    g.step(1, Accept(GID, b(1, 1), ((1, b"a"),), 1))
    first = g.ready()
    g.step(1, Accept(GID, b(1, 1), ((2, b"b"),), 2))
    second = g.ready()
    assert first.committed == [(1, b"a")] and second.committed == [(2, b"b")]
    with pytest.raises(AssertionError):
        g.advance(second)
    g.advance(first)
    g.advance(second)
    assert g.applied_index == 2


def test_no_ready_when_idle():
    g = make_group(2)
    assert not g.has_ready()
    r = g.ready()
    assert r == Ready()


# ============================================================================ role table (h11 style)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("event", EVENTS)
def test_role_transition_table_covers_every_pair(role, event):
    if (role, event) in ROLE_TRANSITIONS:
        assert next_role(role, event) in ROLES
    else:
        with pytest.raises(AssertionError, match="impossible role change"):
            next_role(role, event)


def test_only_candidates_become_leaders():
    assert [k for k, v in ROLE_TRANSITIONS.items() if v == LEADER] == [(CANDIDATE, "elected")]


# ============================================================================ module hygiene


@pytest.mark.parametrize("module", ["ballot", "messages", "core", "core_leader", "core_types", "durable"])
def test_core_modules_do_no_io_and_no_hidden_randomness(module):
    import ast
    import pathlib

    import paxos_groups

    source = (pathlib.Path(paxos_groups.__file__).parent / f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"trio", "socket", "time", "random"}
