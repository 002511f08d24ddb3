"""The range state machine: atomic apply, replay, lease checks, dedup, snapshots."""

import cbor2
import pytest

from clock.timestamp import MAX, Timestamp
from paxos_groups.engine import MemoryEngine, RocksEngine
from paxos_groups.lease import NO_LEASE, Lease, LeaseStatus
from ranges import state_machine as sm_module
from ranges.commands import Delete, Put, RequestLease, encode_command
from ranges.descriptor import RangeDescriptor
from ranges.keys import KEY_MAX, prefix_end, range_dedup_prefix, range_state_key
from ranges.state_machine import DEDUP_GC_EVERY, DEDUP_TTL_NS, RangeStateMachine

S = 1_000_000_000
MAX_OFFSET = 10_000_000
DESC = RangeDescriptor(1, b"", KEY_MAX, (1, 2, 3))
LEASE1 = Lease(1, Timestamp(1 * S), Timestamp(10 * S), 1)


def put(key, value, wall_s, op_id, seq=1):
    return encode_command(Put(key, value, Timestamp(wall_s * S), op_id, seq))


def delete(key, wall_s, op_id, seq=1):
    return encode_command(Delete(key, Timestamp(wall_s * S), op_id, seq))


def lease_cmd(lease, prev_sequence):
    return encode_command(RequestLease(lease, prev_sequence))


def leased(engine=None):
    """A state machine over `engine` whose entry 1 installed LEASE1."""
    machine = RangeStateMachine(engine or MemoryEngine(), DESC, MAX_OFFSET)
    assert machine.apply(1, lease_cmd(LEASE1, 0)).ok
    return machine


def data(machine):
    return machine.mvcc.export_span(b"", KEY_MAX)


def test_fresh_machine_has_no_lease_and_index_zero():
    machine = RangeStateMachine(MemoryEngine(), DESC, MAX_OFFSET)
    assert (machine.applied_index, machine.lease, machine.descriptor) == (0, NO_LEASE, DESC)
    assert machine.size_bytes() == 0


def test_put_and_delete_apply_through_mvcc():
    machine = leased()
    result = machine.apply(2, put(b"k", b"v", 2, b"op1"))
    assert (result.ok, result.kind, result.op_id, result.ts) == (True, "put", b"op1", Timestamp(2 * S))
    assert machine.apply(3, delete(b"k", 3, b"op2")).kind == "delete"
    assert machine.mvcc.get(b"k", Timestamp(2 * S)) == b"v"
    assert machine.mvcc.get(b"k", MAX) is None
    assert machine.applied_index == 3


def test_entry_effects_and_applied_state_are_one_write():
    engine = MemoryEngine()
    machine = leased(engine)
    before = engine.pending_batches
    machine.apply(2, put(b"k", b"v", 2, b"op1"))
    assert engine.pending_batches == before + 1
    assert engine.sync_count == 0  # The Paxos log is the durable record.


def test_replay_after_crash_is_idempotent():
    engine = MemoryEngine()
    log = {1: lease_cmd(LEASE1, 0), 2: put(b"a", b"1", 2, b"o1"), 3: None, 4: put(b"b", b"2", 3, b"o2"),
           5: delete(b"a", 4, b"o3"), 6: put(b"c", b"3", 5, b"o4")}
    machine = RangeStateMachine(engine, DESC, MAX_OFFSET)
    for index in range(1, 7):
        machine.apply(index, log[index])
    expected = data(machine)
    engine.crash(keep_pending_batches=3)  # Entries 4..6 lost with the unsynced suffix.
    reloaded = RangeStateMachine(engine, DESC, MAX_OFFSET)
    assert reloaded.applied_index == 3 and reloaded.lease == LEASE1
    for index in range(1, 7):  # The driver replays the whole log; applied entries are skipped.
        result = reloaded.apply(index, log[index])
        assert (result.kind == "stale") == (index <= 3)
    assert data(reloaded) == expected
    assert reloaded.applied_index == 6


def test_write_under_old_lease_is_rejected_after_new_lease():
    machine = leased()
    lease2 = Lease(2, Timestamp(10 * S), Timestamp(20 * S), 2)
    result = machine.apply(2, lease_cmd(lease2, 1))
    assert result.ok and result.lease_changed and machine.lease == lease2
    stale = machine.apply(3, put(b"k", b"v", 11, b"op", seq=1))
    assert (stale.ok, stale.error) == (False, "lease changed")
    assert machine.mvcc.get(b"k", MAX) is None
    assert machine.apply(4, put(b"k", b"v", 11, b"op", seq=2)).ok


def test_lease_request_with_stale_prev_sequence_is_rejected():
    machine = leased()
    competing = Lease(2, Timestamp(10 * S), Timestamp(20 * S), 1)  # Also based on NO_LEASE.
    result = machine.apply(2, lease_cmd(competing, 0))
    assert not result.ok and not result.lease_changed and machine.lease == LEASE1


def test_lease_for_non_replica_is_rejected():
    machine = leased()
    result = machine.apply(2, lease_cmd(Lease(9, Timestamp(10 * S), Timestamp(20 * S), 2), 1))
    assert not result.ok and "replica" in result.error


def test_lease_renewal_applies_and_keeps_writes_valid():
    machine = leased()
    renewed = Lease(1, LEASE1.start, Timestamp(15 * S), 1)
    result = machine.apply(2, lease_cmd(renewed, 1))
    assert result.ok and result.lease_changed and machine.lease == renewed
    assert machine.apply(3, put(b"k", b"v", 12, b"op")).ok
    assert machine.lease_status(1, Timestamp(12 * S)) is LeaseStatus.VALID


def test_duplicate_op_id_returns_recorded_result_without_reapplying():
    machine = leased()
    first = machine.apply(2, put(b"k", b"v1", 2, b"op"))
    retry = machine.apply(3, put(b"k", b"v2", 3, b"op"))
    assert retry.ok and retry.deduplicated and retry.ts == first.ts
    assert machine.mvcc.get(b"k", MAX) == b"v1"
    assert machine.applied_index == 3


def test_write_outside_range_is_rejected():
    machine = RangeStateMachine(MemoryEngine(), RangeDescriptor(1, b"m", KEY_MAX, (1,)), MAX_OFFSET)
    machine.apply(1, lease_cmd(LEASE1, 0))
    result = machine.apply(2, put(b"a", b"v", 2, b"op"))
    assert not result.ok and "outside" in result.error


@pytest.mark.parametrize("entry", [[], [99], ["put"], [1, b"k"], b"\xff\xfe", cbor2.dumps([1, 2, 3]), "text", 5])
def test_malformed_entry_is_rejected_and_consumes_its_index(entry):
    machine = leased()
    result = machine.apply(2, entry)
    assert (result.ok, result.kind) == (False, "malformed")
    assert machine.applied_index == 2


def test_cbor_bytes_entries_are_accepted():
    machine = leased()
    assert machine.apply(2, cbor2.dumps(put(b"k", b"v", 2, b"op"))).ok
    assert machine.mvcc.get(b"k", MAX) == b"v"


def test_dedup_records_expire_after_ttl(monkeypatch):
    monkeypatch.setattr(sm_module, "DEDUP_GC_SLICES", 1)  # One slice: every GC sweeps all records.
    machine = leased()
    lease = Lease(1, Timestamp(1 * S), Timestamp(10_000 * S), 1)
    machine.apply(2, lease_cmd(lease, 1))
    op_ids = [b"\x00old", b"\x00new"]
    machine.apply(3, put(b"a", b"1", 1, op_ids[0]))
    machine.apply(4, put(b"b", b"2", 100, op_ids[1]))
    for index in range(5, DEDUP_GC_EVERY + 1):  # The GC index carries ts 100s + TTL/2.
        machine.apply(index, put(b"c", b"x", 100 + DEDUP_TTL_NS // S // 2, b"filler%d" % index))
    prefix = range_dedup_prefix(1)
    remaining = {k[len(prefix):] for k, _ in machine._engine.scan(prefix, prefix_end(prefix))}
    assert op_ids[0] not in remaining and op_ids[1] in remaining


def test_snapshot_restore_round_trip_between_engines():
    source = leased()
    source.apply(2, put(b"a", b"1", 2, b"o1"))
    source.apply(3, delete(b"a", 3, b"o2"))
    source.apply(4, put(b"b", b"2", 4, b"o3"))
    snapshot = cbor2.loads(cbor2.dumps(source.snapshot()))
    target = RangeStateMachine(MemoryEngine(), DESC, MAX_OFFSET)
    target.apply(1, None)
    target.restore(4, snapshot)
    assert (target.applied_index, target.lease, target.descriptor) == (4, LEASE1, DESC)
    assert data(target) == data(source)
    assert target.size_bytes() == source.size_bytes() > 0
    assert target.apply(5, put(b"c", b"3", 5, b"o3")).deduplicated  # Dedup records came along.
    assert target.snapshot()["applied_index"] == 5


def test_restore_replaces_existing_data():
    source = leased()
    source.apply(2, put(b"a", b"1", 2, b"o1"))
    target = leased()
    target.apply(2, put(b"stale", b"x", 2, b"ox"))
    target.restore(2, source.snapshot())
    assert data(target) == data(source)
    assert not target.apply(3, put(b"z", b"1", 3, b"ox")).deduplicated


@pytest.mark.parametrize("mutate", [
    lambda s: s.pop("mvcc"),
    lambda s: s.update(applied_index=7),
    lambda s: s.update(mvcc=[["bad"]]),
    lambda s: s.update(dedup=[[b"", 1, ["put", [1, 0]]]]),
    lambda s: s.update(descriptor={**s["descriptor"], "range_id": 2}),
])
def test_restore_rejects_malformed_snapshot_without_touching_state(mutate):
    source = leased()
    snapshot = source.snapshot()
    mutate(snapshot)
    target = RangeStateMachine(MemoryEngine(), DESC, MAX_OFFSET)
    with pytest.raises(ValueError):
        target.restore(1, snapshot)
    assert target.applied_index == 0 and data(target) == []


def test_size_bytes_tracks_writes():
    machine = leased()
    assert machine.size_bytes() == 0
    machine.apply(2, put(b"k", b"v" * 100, 2, b"op"))
    assert machine.size_bytes() == machine.mvcc.span_bytes(b"", KEY_MAX) > 100


def test_rocks_engine_smoke(tmp_path):
    engine = RocksEngine(str(tmp_path / "db"))
    machine = leased(engine)
    machine.apply(2, put(b"k", b"v", 2, b"op"))
    machine.apply(3, put(b"k2", b"v2", 3, b"op2"))
    assert machine.mvcc.scan(b"", KEY_MAX, MAX) == [(b"k", b"v"), (b"k2", b"v2")]
    del machine
    engine.close()
    engine = RocksEngine(str(tmp_path / "db"))
    reopened = RangeStateMachine(engine, DESC, MAX_OFFSET)
    assert reopened.applied_index == 3 and reopened.lease == LEASE1
    assert reopened.mvcc.get(b"k2", MAX) == b"v2"
    engine.close()


def test_bootstrap_state_then_load_by_range_id():
    engine = MemoryEngine()
    engine.write([(range_state_key(1), RangeStateMachine.initial_state(DESC))], sync=True)
    machine = RangeStateMachine(engine, None, MAX_OFFSET, range_id=1)
    assert (machine.applied_index, machine.lease, machine.descriptor) == (0, NO_LEASE, DESC)
    assert machine.apply(1, lease_cmd(LEASE1, 0)).ok


def test_persisted_descriptor_wins_over_given_one():
    engine = MemoryEngine()
    leased(engine)
    narrower = RangeDescriptor(1, b"", b"m", (1, 2, 3), generation=1)
    machine = RangeStateMachine(engine, narrower, MAX_OFFSET)
    assert machine.descriptor == DESC and machine.applied_index == 1
