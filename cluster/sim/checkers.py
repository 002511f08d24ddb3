"""The simulator's invariant checkers, kept apart from the world they judge.

- `ChosenValueChecker`: at most one value is chosen (applied) per slot of each group,
  across every node and every incarnation of it.
- `LeaseChecker`: at every instant of virtual time, at most one node of a range believes
  it holds a valid lease (by its own clock and its own rules, planted bugs included).
- `check_linearizable`: the client history, per key (Porcupine-style search).
- `check_final_reads`: after healing, every key could be read (the cluster recovered) —
  and those reads are in the history, so no acknowledged write may be missing from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clock.timestamp import MAX, Timestamp
from cluster.sim.linearizability import check_register_history
from paxos_groups.lease import LeaseStatus
from ranges import keys
from ranges.descriptor import RangeDescriptor, decode_meta_value

META_SAMPLE_EVERY = 200


class Violation(Exception):
    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


@dataclass
class ChosenValueChecker:
    chosen: dict[tuple[int, int], object] = field(default_factory=dict)
    violation: Violation | None = None

    def store_started(self, world, node_id: int, store) -> None:
        def observe(range_id: int, slot: int, value: object) -> None:
            known = self.chosen.setdefault((range_id, slot), value)
            if known != value and self.violation is None:
                self.violation = Violation(
                    "one value per slot",
                    f"node {node_id} applied {value!r} at range {range_id} slot {slot}, "
                    f"but {known!r} was applied there before (t={world.now_ns}ns)")

        store.apply_observer = observe

    def after_event(self, world) -> None:
        pass


@dataclass
class AcceptedValueChecker:
    """Paxos's P2: once a value is chosen in a slot at ballot b (a quorum of acceptors
    accepted it, durably, at b), every acceptance in that slot at a ballot above b carries
    the same value. Judged from the acceptances as each node persists them, so it fires when
    the divergence is accepted, before (and whether or not) a second value gets applied."""

    # (range, slot) -> ballot -> (value, nodes that accepted it at that ballot)
    votes: dict[tuple[int, int], dict[object, tuple[object, set[int]]]] = field(default_factory=dict)
    chosen: dict[tuple[int, int], tuple[object, object]] = field(default_factory=dict)  # (ballot, value)
    violation: Violation | None = None

    def store_started(self, world, node_id: int, store) -> None:
        def observe(range_id: int, quorum: int, slot: int, ballot, value) -> None:
            if self.violation is None:
                self._accepted(world, node_id, (range_id, slot), quorum, ballot, value)

        store.accept_observer = observe

    def _accepted(self, world, node_id: int, where: tuple[int, int], quorum: int, ballot, value) -> None:
        by_ballot = self.votes.setdefault(where, {})
        known_value, nodes = by_ballot.setdefault(ballot, (value, set()))
        if known_value != value:
            self._fail(world, where, f"two values accepted at one ballot {ballot}: {known_value!r} and {value!r}")
            return
        nodes.add(node_id)
        chosen = self.chosen.get(where)
        if chosen is not None and ballot > chosen[0] and value != chosen[1]:
            self._fail(world, where, f"node {node_id} accepted {value!r} at {ballot} after {chosen[1]!r} "
                                     f"was chosen at {chosen[0]}")
            return
        if len(nodes) >= quorum and (chosen is None or ballot < chosen[0]):
            self.chosen[where] = (ballot, value)
            higher = [(b, v) for b, (v, _) in by_ballot.items() if b > ballot and v != value]
            if higher:
                self._fail(world, where, f"{value!r} chosen at {ballot}, but {higher[0][1]!r} was accepted "
                                         f"at the higher ballot {higher[0][0]}")

    def _fail(self, world, where: tuple[int, int], detail: str) -> None:
        self.violation = Violation("chosen values are never contradicted (Paxos P2)",
                                   f"range {where[0]} slot {where[1]}: {detail} (t={world.now_ns}ns)")

    def after_event(self, world) -> None:
        pass


@dataclass
class LeaseChecker:
    violation: Violation | None = None
    samples: int = 0

    def store_started(self, world, node_id: int, store) -> None:
        pass

    def after_event(self, world) -> None:
        if self.violation is not None:
            return
        self.samples += 1
        holders: dict[int, list[int]] = {}
        for node_id in world.live_nodes():
            store = world.nodes[node_id].store
            physical = Timestamp(max(0, store.hlc.physical_now_ns()), 0)
            now = max(store.hlc.last(), physical)
            for range_id, replica in store.replicas.items():
                if replica.sm.lease.holder != node_id:
                    continue
                if replica._lease_status(replica.sm.lease, now) is LeaseStatus.VALID:
                    holders.setdefault(range_id, []).append(node_id)
        for range_id, nodes in holders.items():
            if len(nodes) > 1:
                self.violation = Violation(
                    "at most one valid lease",
                    f"nodes {nodes} all hold a valid lease of range {range_id} at t={world.now_ns}ns")


def check_linearizable(world) -> Violation | None:
    result = check_register_history(world.history.operations())
    if result.violation:
        return Violation("linearizability", result.explain())
    return None


def check_final_reads(world) -> Violation | None:
    reader = world.clients[-1]
    failed = [op for op in world.history.operations()
              if op.process == reader.index and op.status != "ok"]
    if reader.final_keys or reader.op is not None or failed:
        return Violation("recovery", f"after healing, reads of every key did not all succeed "
                                     f"({len(failed)} failed, {len(reader.final_keys or [])} not attempted)")
    return None


def meta_descriptors(store) -> list[RangeDescriptor] | None:
    """The meta entries a node's replica of the meta range has applied (None: not a replica)."""
    replica = store.replicas.get(1)
    if replica is None:
        return None
    start, end = keys.meta_span()
    return [decode_meta_value(v) for _, v in replica.sm.mvcc.scan(start, end, MAX)]


def tiling_error(descriptors: list[RangeDescriptor]) -> str | None:
    if not descriptors:
        return "meta is empty"
    spans = [(d.start_key, d.end_key, d.range_id) for d in descriptors]
    if spans[0][0] != keys.KEY_MIN:
        return f"meta does not start at the empty key: {spans[0]}"
    if spans[-1][1] != keys.KEY_MAX:
        return f"meta does not end at KEY_MAX: {spans[-1]}"
    for a, b in zip(spans, spans[1:]):
        if a[1] != b[0]:
            return f"meta has a {'gap' if a[1] < b[0] else 'overlap'} between {a} and {b}"
    return None


@dataclass
class MetaChecker:
    """The meta range tiles the keyspace on every node at every sampled instant, and at the
    end agrees with the descriptors the replicas hold."""

    violation: Violation | None = None
    events: int = 0

    def store_started(self, world, node_id: int, store) -> None:
        pass

    def after_event(self, world) -> None:
        self.events += 1
        if self.violation is not None or self.events % META_SAMPLE_EVERY:
            return
        for node_id in world.live_nodes():
            descriptors = meta_descriptors(world.nodes[node_id].store)
            error = None if descriptors is None else tiling_error(descriptors)
            if error is not None:
                self.violation = Violation("meta tiles the keyspace", f"node {node_id} at t={world.now_ns}ns: {error}")
                return

    def check_final(self, world) -> Violation | None:
        if self.violation is not None:
            return self.violation
        newest: dict[int, RangeDescriptor] = {}
        for node_id in world.live_nodes():
            for replica in world.nodes[node_id].store.replicas.values():
                d = replica.sm.descriptor
                if d.range_id not in newest or d.generation > newest[d.range_id].generation:
                    newest[d.range_id] = d
        for node_id in world.live_nodes():
            in_meta = meta_descriptors(world.nodes[node_id].store)
            if in_meta is None:
                continue
            error = tiling_error(in_meta)
            expected = sorted(newest.values(), key=lambda d: d.start_key)
            if error is None and in_meta != expected:
                error = (f"meta disagrees with the replicas: meta {[(d.range_id, d.start_key, d.generation) for d in in_meta]} "
                         f"vs replicas {[(d.range_id, d.start_key, d.generation) for d in expected]}")
            if error is not None:
                return Violation("meta agrees with the replicas", f"node {node_id} after healing: {error}")
        return None


def check_transactions(world) -> Violation | None:
    """The transactional workload's invariants: bank totals, or Elle's strict serializability
    over the list-append history; and the final snapshot read after healing succeeded."""
    from cluster.sim.elle import check_list_append

    workload = world.config.txn_workload
    if not workload:
        return None
    if world.bank.violation is not None:
        return Violation("bank total conserved", world.bank.violation)
    if workload == "append":
        result = check_list_append(world.txn_history)
        if not result.valid:
            return Violation("strict serializability (list-append)", result.summary())
    final = [c for c in world.txn_clients if c.final]
    if final and not final[0].finished:
        return Violation("recovery", f"after healing, the final {workload} snapshot read did not succeed")
    return None
