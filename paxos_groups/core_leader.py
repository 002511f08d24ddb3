"""The leader half of `PaxosGroup`: phase-1 completion, proposing, pipelining, heartbeats,
retransmission, check-quorum, catch-up, snapshot requests and leadership transfer.

A mixin, split out of `core.py` only to keep files short: it shares all of PaxosGroup's
state (declared, with its invariants, in `PaxosGroup.__init__`) and is never used alone.
Everything here runs only while `self._role == LEADER` (asserted where it matters).
See `core.py` for the guarantees and the durability contract.
"""

from __future__ import annotations

from paxos_groups.ballot import Ballot
from paxos_groups.core_types import (
    BUG_SKIP_REPROPOSAL,
    EVENT_ELECTED,
    LEADER,
    NOOP,
    FollowerProgress,
    InflightSlot,
)
from paxos_groups.messages import Accept, Accepted, Chosen, Heartbeat, HeartbeatAck, InstallSnapshot, TimeoutNow


class LeaderRole:
    """Leader-only methods of PaxosGroup (see the module docstring)."""

    def _become_leader(self) -> None:
        from_slot = self._phase1_from
        highest = self._highest_accepted_per_slot()
        self._become(EVENT_ELECTED)
        self._leader_hint = self._node_id
        self._progress = {peer: FollowerProgress() for peer in self._peers}
        self._heartbeat_elapsed = 0
        self._check_quorum_elapsed = 0
        top = max(highest, default=from_slot - 1)
        self._next_slot = max(top, self._chosen_upto) + 1
        for slot in range(max(from_slot, self._chosen_upto + 1), top + 1):
            if slot > self._chosen_upto:  # a one-node group chooses as it goes
                self._propose_at(slot, self._reproposal_value(slot, highest))
        self._broadcast_heartbeat()

    def _highest_accepted_per_slot(self) -> dict[int, tuple[Ballot, object]]:
        highest: dict[int, tuple[Ballot, object]] = {}
        for entries in self._promises.values():
            for slot, ballot, value in entries:
                best = highest.get(slot)
                if best is not None and best[0] == ballot:
                    assert best[1] == value, f"slot {slot} has two values at ballot {ballot}"
                if best is None or ballot > best[0]:
                    highest[slot] = (ballot, value)
        return highest

    def _reproposal_value(self, slot: int, highest: dict[int, tuple[Ballot, object]]) -> object:
        if slot in self._known_chosen:
            return self._accepted[slot][1]  # we know the chosen value: Paxos would pick it too
        if BUG_SKIP_REPROPOSAL in self._bugs:
            return NOOP  # BUG: ignores what a quorum reported accepted
        best = highest.get(slot)
        return best[1] if best is not None else NOOP

    def _propose_at(self, slot: int, value: object) -> None:
        assert self._role == LEADER, "only the leader proposes"
        assert slot > self._chosen_upto and slot not in self._inflight, f"slot {slot} proposed twice"
        self._store_accepted(slot, self._ballot, value)
        self._inflight[slot] = InflightSlot(value, {self._node_id}, self._tick_count)
        for peer in self._peers:
            self._out_accepts.setdefault(peer, {})[slot] = value
        if self._quorum == 1:
            self._learn_chosen_slot(slot)
            self._advance_chosen()

    def _fill_window(self) -> None:
        while self._pending and len(self._inflight) < self._config.max_inflight_slots:
            slot = self._next_slot
            self._next_slot += 1
            self._propose_at(slot, self._pending.popleft())

    def _tick_leader(self) -> None:
        if self._transfer_target is not None:
            self._tick_transfer()
        self._heartbeat_elapsed += 1
        self._check_quorum_elapsed += 1
        interval = self._config.quiesced_heartbeat_ticks if self._quiesced else self._config.heartbeat_ticks
        if self._heartbeat_elapsed >= interval:
            self._broadcast_heartbeat()
            self._retransmit_unacked_accepts()
        scale = self._config.quiesced_scale if self._quiesced else 1
        if self._config.stickiness and self._check_quorum_elapsed >= self._config.election_ticks_max * scale:
            self._check_quorum()

    def _broadcast_heartbeat(self) -> None:
        self._heartbeat_elapsed = 0
        self._quiesced = self._config.quiesce and self._can_quiesce()
        self._heartbeat_commit = self._chosen_upto
        interval = self._config.heartbeat_ticks
        for peer in self._peers:
            # An Accept sent this interval with the current commit index already did a
            # heartbeat's work (it resets the follower's election timer, carries the commit
            # index, and its Accepted reports progress): with 1,000 busy groups, skipping
            # these halves the message count.
            sent_tick, sent_commit = self._accept_sent_tick.get(peer, (-interval, -1))
            if not self._quiesced and self._tick_count - sent_tick < interval and sent_commit == self._chosen_upto:
                continue
            self._send(peer, Heartbeat(self._group_id, self._ballot, self._chosen_upto, self._quiesced))

    def _can_quiesce(self) -> bool:
        """Idle, and every follower holds every chosen slot (it knows them chosen, or acked
        them, so the quiescing heartbeat's commit index completes it): one round of
        heartbeats after a write, not two."""
        if self._inflight or self._pending or self._transfer_target is not None:
            return False
        return all(_holds_through(p, self._chosen_upto) for p in self._progress.values())

    def _unquiesce_leader(self) -> None:
        self._quiesced = False  # the next Accept or Heartbeat (flag off) wakes the followers

    def _retransmit_unacked_accepts(self) -> None:
        # Accepts or their replies get dropped: resend slots a follower has not acked yet.
        for slot, inflight in self._inflight.items():
            if self._tick_count - inflight.sent_tick < self._config.heartbeat_ticks:
                continue
            inflight.sent_tick = self._tick_count
            for peer in self._peers:
                if peer not in inflight.acks:
                    self._out_accepts.setdefault(peer, {})[slot] = inflight.value

    def _check_quorum(self) -> None:
        self._check_quorum_elapsed = 0
        active = 1 + sum(1 for p in self._progress.values() if p.recent_active)
        for progress in self._progress.values():
            progress.recent_active = False
        if active < self._quorum:
            self._step_down()
            self._leader_hint = None

    def _maybe_catch_up(self, peer: int) -> None:
        progress = self._progress[peer]
        target = min(self._chosen_upto, self._heartbeat_commit)
        if progress.chosen_upto >= target:
            return
        start = progress.chosen_upto + 1
        if start < self._first_index:
            self._request_snapshot(peer, progress)
            return
        recently_sent = self._tick_count - progress.catchup_sent_tick < self._config.heartbeat_ticks
        if progress.catchup_sent_upto > progress.chosen_upto and recently_sent:
            return  # that chunk is on its way; resending on every duplicate ack would amplify
        upto = min(target, start + self._config.max_entries_per_message - 1)
        entries = tuple((slot, self._accepted[slot][1]) for slot in range(start, upto + 1))
        self._send(peer, Chosen(self._group_id, self._ballot, entries))
        progress.catchup_sent_upto = upto
        progress.catchup_sent_tick = self._tick_count

    def _request_snapshot(self, peer: int, progress: FollowerProgress) -> None:
        # Wait an election timeout before asking again: the caller may be streaming one.
        if self._tick_count - progress.snapshot_requested_tick < self._config.election_ticks_max:
            return
        progress.snapshot_requested_tick = self._tick_count
        self._out_snapshot_requests.append(peer)

    def send_snapshot(self, to_node: int, index: int, data: object) -> bool:
        """Send the state machine's state after slot `index` to a follower that asked for
        one (`Ready.snapshot_requests`). Returns False, sending nothing, if this replica lost
        leadership meanwhile: only a leader's snapshot is wanted, and the new leader will ask
        its own caller for one."""
        if self._role != LEADER:
            return False
        assert to_node in self._peers, f"node {to_node} is not a peer in group {self._group_id}"
        assert self._first_index - 1 <= index <= self._chosen_upto, (
            f"snapshot at {index} does not cover the truncated log (first_index "
            f"{self._first_index}) or covers unchosen slots (chosen_upto {self._chosen_upto})"
        )
        self._send(to_node, InstallSnapshot(self._group_id, self._ballot, index, data))
        return True

    def _on_accepted(self, frm: int, m: Accepted) -> None:
        if self._role != LEADER or m.ballot != self._ballot:
            return
        progress = self._progress[frm]
        progress.recent_active = True
        progress.chosen_upto = m.chosen_upto
        _note_acked(progress, m.slots)
        for slot in m.slots:
            inflight = self._inflight.get(slot)
            if inflight is None:
                continue
            inflight.acks.add(frm)
            if len(inflight.acks) >= self._quorum:
                self._learn_chosen_slot(slot)
        self._advance_chosen()
        self._fill_window()
        if frm == self._transfer_target:
            self._maybe_send_timeout_now()

    def _on_heartbeat_ack(self, frm: int, m: HeartbeatAck) -> None:
        if self._role != LEADER or m.ballot != self._ballot:
            return
        progress = self._progress[frm]
        progress.recent_active = True
        progress.chosen_upto = m.chosen_upto
        progress.max_accepted_slot = m.max_accepted_slot
        _note_acked(progress, ())
        self._maybe_catch_up(frm)
        if frm == self._transfer_target:
            self._maybe_send_timeout_now()

    def _learn_chosen_slot(self, slot: int) -> None:
        """Learner rule (a): a quorum accepted `slot` at our ballot."""
        inflight = self._inflight.pop(slot)
        assert self._accepted[slot] == (self._ballot, inflight.value), f"leader lost its own accept of slot {slot}"
        self._known_chosen.add(slot)

    def _flush_accepts(self) -> list[tuple[int, object]]:
        if self._role != LEADER:
            self._out_accepts.clear()
            return []
        messages = []
        chunk = self._config.max_entries_per_message
        for peer, by_slot in self._out_accepts.items():
            self._accept_sent_tick[peer] = (self._tick_count, self._chosen_upto)
            entries = sorted(by_slot.items())
            for i in range(0, len(entries), chunk):
                batch = tuple(entries[i : i + chunk])
                messages.append((peer, Accept(self._group_id, self._ballot, batch, self._chosen_upto)))
        self._out_accepts.clear()
        return messages

    # ------------------------------------------------------------------ leadership transfer

    def transfer_leadership(self, to_node: int) -> bool:
        """Hand leadership to `to_node` (etcd's MsgTransferLeader). Returns False, doing
        nothing, off the leader or when `to_node` is not another member of the group.

        From now on `propose` raises NotLeader(leader_hint=to_node) and queued proposals are
        dropped (`Ready.dropped_proposals`); slots already in flight keep going. Once
        `to_node` reports it holds every chosen and in-flight slot (it is sent catch-up if
        not), it gets `TimeoutNow` and campaigns at once with a forced Prepare; this leader
        steps down when it sees the higher ballot. A transfer not done within
        `election_ticks_max` ticks is abandoned and proposals are accepted again. Calling
        again with the same target keeps the running transfer (and its deadline); with
        another target, restarts it towards that one."""
        if self._role != LEADER or to_node not in self._peers:
            return False
        if self._transfer_target == to_node:
            return True
        self._transfer_target = to_node
        self._transfer_elapsed = 0
        self._transfer_sent_tick = None
        self._out_dropped.extend(self._pending)  # they never got a slot: fail them now
        self._pending.clear()
        if not self._maybe_send_timeout_now():
            # Resend what the target has not acked, and ask where it stands: the ack of the
            # heartbeat reports its chosen_upto and triggers Chosen catch-up if it lags.
            for slot, inflight in self._inflight.items():
                if to_node not in inflight.acks:
                    self._out_accepts.setdefault(to_node, {})[slot] = inflight.value
            self._broadcast_heartbeat()
        return True

    def _tick_transfer(self) -> None:
        self._transfer_elapsed += 1
        if self._transfer_elapsed >= self._config.election_ticks_max:
            self._transfer_target = None  # abandoned: the target did not take over in time
            return
        self._maybe_send_timeout_now()  # resends a TimeoutNow that may have been lost

    def _maybe_send_timeout_now(self) -> bool:
        """Send TimeoutNow if the transfer target caught up (at most once per heartbeat
        interval); returns whether it is caught up."""
        peer = self._transfer_target
        if peer is None or not self._transfer_target_caught_up(peer):
            return False
        last = self._transfer_sent_tick
        if last is None or self._tick_count - last >= self._config.heartbeat_ticks:
            self._transfer_sent_tick = self._tick_count
            self._send(peer, TimeoutNow(self._group_id, self._ballot))
        return True

    def _transfer_target_caught_up(self, peer: int) -> bool:
        # It knows every slot we know chosen and accepted every slot still in flight, so its
        # own promise carries every value this leadership may have gotten chosen. (With a
        # gap in our chosen prefix, `_known_chosen` slots may be missing there: wait.)
        if self._known_chosen or self._progress[peer].chosen_upto < self._chosen_upto:
            return False
        return all(peer in inflight.acks for inflight in self._inflight.values())


# A follower further behind than this is caught up by the usual means, not by quiescing.
QUIESCE_ACKED_GAP_MAX = 256


def _note_acked(progress, slots) -> None:
    progress.acked_slots.update(slots)
    if progress.acked_slots:
        progress.acked_slots = {s for s in progress.acked_slots if s > progress.chosen_upto}


def _holds_through(progress, chosen_upto: int) -> bool:
    if progress.chosen_upto >= chosen_upto:
        return True
    if chosen_upto - progress.chosen_upto > QUIESCE_ACKED_GAP_MAX:
        return False
    return all(s in progress.acked_slots for s in range(progress.chosen_upto + 1, chosen_upto + 1))
