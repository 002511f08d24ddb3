"""Splits, Increment and MetaSplit in the range state machine (docs/SHARDING.md)."""

import cbor2
import pytest

from clock.timestamp import MAX, Timestamp
from paxos_groups.engine import MemoryEngine
from paxos_groups.lease import Lease
from ranges.commands import Increment, MetaSplit, Put, RequestLease, Split, encode_command
from ranges.descriptor import RangeDescriptor, decode_meta_value
from ranges.keys import (
    KEY_MAX,
    RANGE_ID_COUNTER_KEY,
    SYSTEM_KEY_MAX,
    meta_lookup_start,
    meta_span,
    range_state_key,
)
from ranges.state_machine import (
    BUG_SPLIT_DROPS_RHS_WRITE,
    RangeStateMachine,
    decode_counter_value,
    encode_counter_value,
    meta_bootstrap_batch,
)

S = 1_000_000_000
MAX_OFFSET = 10_000_000
REPLICAS = (1, 2, 3)
META = RangeDescriptor(1, b"", SYSTEM_KEY_MAX, REPLICAS)
USER = RangeDescriptor(2, SYSTEM_KEY_MAX, KEY_MAX, REPLICAS)
LEASE1 = Lease(1, Timestamp(1 * S), Timestamp(100 * S), 1)
LEFT = RangeDescriptor(2, SYSTEM_KEY_MAX, b"m", REPLICAS, 1)
RIGHT = RangeDescriptor(3, b"m", KEY_MAX, REPLICAS, 1)


def put(key, value, wall_s, op_id, seq=1):
    return encode_command(Put(key, value, Timestamp(wall_s * S), op_id, seq))


def split(key, right_range_id=3, generation=0, seq=1, wall_s=50):
    return encode_command(Split(key, right_range_id, generation, Timestamp(wall_s * S), seq))


def incr(key, delta, wall_s, op_id, seq=1):
    return encode_command(Increment(key, delta, Timestamp(wall_s * S), op_id, seq))


def meta_split(old, left, right, wall_s, op_id, seq=1):
    return encode_command(MetaSplit(old, left, right, Timestamp(wall_s * S), op_id, seq))


def leased(descriptor=USER, engine=None, bugs=frozenset()):
    """A state machine whose entry 1 installed LEASE1."""
    machine = RangeStateMachine(engine or MemoryEngine(), descriptor, MAX_OFFSET, bugs=bugs)
    assert machine.apply(1, encode_command(RequestLease(LEASE1, 0))).ok
    return machine


def load(engine, range_id):
    return RangeStateMachine(engine, None, MAX_OFFSET, range_id=range_id)


def live(machine):
    d = machine.descriptor
    return machine.mvcc.scan(d.start_key, d.end_key, MAX)


def with_data(machine):
    """Writes at indexes 2..5: one key left of b"m", three at or right of it."""
    log = [put(b"\x02a", b"1", 2, b"o1"), put(b"m", b"2", 3, b"o2"), put(b"n", b"3", 4, b"o3"),
           put(b"z", b"4", 5, b"o4")]
    for index, entry in enumerate(log, start=2):
        assert machine.apply(index, entry).ok
    return machine


# -- split -------------------------------------------------------------------------------


def test_split_shrinks_left_and_creates_right_in_one_batch():
    machine = with_data(leased())
    engine = machine._engine
    before = engine.pending_batches
    result = machine.apply(6, split(b"m"))
    assert (result.ok, result.kind, result.error) == (True, "split", None)
    assert engine.pending_batches == before + 1  # Left state, right state, dedup: one write.
    assert machine.descriptor == LEFT and machine.applied_index == 6
    assert result.new_range == RIGHT
    assert result.value == {"left": LEFT.encode(), "right": RIGHT.encode()}
    right = load(engine, 3)
    assert (right.applied_index, right.lease, right.descriptor) == (0, LEASE1, RIGHT)


def test_split_data_stays_readable_through_both_halves():
    machine = with_data(leased())
    machine.apply(6, split(b"m"))
    right = load(machine._engine, 3)
    assert live(machine) == [(b"\x02a", b"1")]
    assert live(right) == [(b"m", b"2"), (b"n", b"3"), (b"z", b"4")]
    assert right.mvcc.get(b"n", Timestamp(4 * S)) == b"3"


def test_both_halves_keep_serving_under_the_same_lease():
    machine = with_data(leased())
    machine.apply(6, split(b"m"))
    right = load(machine._engine, 3)
    assert right.apply(1, put(b"q", b"5", 7, b"o5", seq=1)).ok
    assert machine.apply(7, put(b"b", b"6", 7, b"o6", seq=1)).ok
    rejected = machine.apply(8, put(b"q", b"7", 8, b"o7"))
    assert not rejected.ok and "outside" in rejected.error
    renewed = Lease(1, LEASE1.start, Timestamp(200 * S), 1)
    assert right.apply(2, encode_command(RequestLease(renewed, 1))).ok


def test_split_copies_dedup_records_to_the_right():
    machine = with_data(leased())
    machine.apply(6, split(b"m"))
    right = load(machine._engine, 3)
    retry = right.apply(1, put(b"n", b"other", 9, b"o3"))  # o3 wrote b"n" before the split.
    assert retry.ok and retry.deduplicated and retry.ts == Timestamp(4 * S)
    assert right.mvcc.get(b"n", MAX) == b"3"
    assert machine.apply(7, put(b"\x02a", b"x", 9, b"o1")).deduplicated  # The left keeps its own.


@pytest.mark.parametrize("size_known_before", [True, False])
def test_split_sizes_match_each_half(size_known_before):
    machine = with_data(leased())
    if size_known_before:
        assert machine.size_bytes() > 0
    machine.apply(6, split(b"n"))
    right = load(machine._engine, 3)
    assert machine.size_bytes() == machine.mvcc.span_bytes(SYSTEM_KEY_MAX, b"n") > 0
    assert right.size_bytes() == right.mvcc.span_bytes(b"n", KEY_MAX) > 0


MID = RangeDescriptor(2, b"c", b"p", REPLICAS, 0)


@pytest.mark.parametrize(
    ("descriptor", "entry", "error_part"),
    [
        (MID, split(b"c"), "strictly inside"),  # Already a boundary.
        (MID, split(b"b"), "strictly inside"),
        (MID, split(b"p"), "strictly inside"),
        (MID, split(b"q"), "strictly inside"),
        (MID, split(b"d", generation=1), "generation"),
        (MID, split(b"d", seq=2), "lease changed"),
        (MID, split(b"d", right_range_id=2), "own id"),
        (RangeDescriptor(1, b"", KEY_MAX, REPLICAS), split(b"\x01x"), "system keyspace"),
        (RangeDescriptor(1, b"", KEY_MAX, REPLICAS), split(b"\x00"), "system keyspace"),
        (META, split(b"\x01\x02"), "system keyspace"),
    ],
)
def test_split_is_rejected_without_changing_anything(descriptor, entry, error_part):
    machine = leased(descriptor)
    machine.apply(2, put(b"c", b"v", 2, b"o1") if descriptor is MID else None)
    result = machine.apply(3, entry)
    assert (result.ok, result.kind, result.new_range) == (False, "split", None)
    assert error_part in result.error
    assert machine.descriptor == descriptor and machine.applied_index == 3
    assert machine._engine.get(range_state_key(3)) is None


def test_duplicate_split_is_rejected_by_its_generation():
    machine = with_data(leased())
    assert machine.apply(6, split(b"m")).ok
    duplicate = machine.apply(7, split(b"m"))
    assert not duplicate.ok and "generation" in duplicate.error
    assert machine.descriptor == LEFT and load(machine._engine, 3).descriptor == RIGHT


def test_split_leaves_a_right_half_that_arrived_first_as_a_snapshot_alone():
    # A replica that lagged through the split may get the right half from the right
    # half's own group (a snapshot) before it applies the split itself.
    machine = with_data(leased())
    ahead = RangeStateMachine.initial_state(RIGHT)
    machine._engine.write([(range_state_key(3), ahead)], sync=False)
    assert machine.apply(6, split(b"m")).ok
    assert machine._engine.get(range_state_key(3)) == ahead


def test_next_split_of_the_left_half_uses_the_new_generation():
    machine = with_data(leased())
    machine.apply(6, split(b"m"))
    assert machine.apply(7, split(b"g", right_range_id=4, generation=1)).ok
    assert machine.descriptor == RangeDescriptor(2, SYSTEM_KEY_MAX, b"g", REPLICAS, 2)
    assert load(machine._engine, 4).descriptor == RangeDescriptor(4, b"g", b"m", REPLICAS, 2)


@pytest.mark.parametrize("kept_batches", [3, 5, 6])
def test_replay_after_crash_reapplies_the_split_once(kept_batches):
    engine = MemoryEngine()
    log = {1: encode_command(RequestLease(LEASE1, 0)), 2: put(b"\x02a", b"1", 2, b"o1"),
           3: put(b"m", b"2", 3, b"o2"), 4: put(b"n", b"3", 4, b"o3"), 5: split(b"m"),
           6: put(b"b", b"4", 6, b"o4")}
    machine = RangeStateMachine(engine, USER, MAX_OFFSET)
    for index in sorted(log):
        machine.apply(index, log[index])
    expected = (machine.snapshot(), load(engine, 3).snapshot())
    engine.crash(keep_pending_batches=kept_batches)  # Batch i is entry i's; the rest is lost.
    reloaded = RangeStateMachine(engine, USER, MAX_OFFSET)
    assert reloaded.applied_index == kept_batches
    assert (engine.get(range_state_key(3)) is not None) == (kept_batches >= 5)
    for index in sorted(log):  # The driver replays from the start; applied entries are stale.
        result = reloaded.apply(index, log[index])
        assert (result.kind == "stale") == (index <= kept_batches)
    assert (reloaded.snapshot(), load(engine, 3).snapshot()) == expected


# -- increment ---------------------------------------------------------------------------


def test_increment_starts_from_zero_and_stores_8_byte_big_endian():
    machine = leased()
    first = machine.apply(2, incr(b"c", 5, 2, b"i1"))
    assert (first.ok, first.kind, first.value, first.ts) == (True, "increment", 5, Timestamp(2 * S))
    second = machine.apply(3, incr(b"c", -7, 3, b"i2"))
    assert second.value == -2
    raw = machine.mvcc.get(b"c", MAX)
    assert raw == (-2).to_bytes(8, "big", signed=True) and decode_counter_value(raw) == -2
    assert machine.mvcc.get(b"c", Timestamp(2 * S)) == encode_counter_value(5)


def test_increment_retry_returns_the_recorded_value():
    machine = leased()
    machine.apply(2, incr(b"c", 5, 2, b"i1"))
    machine.apply(3, incr(b"c", 1, 3, b"i2"))
    retry = machine.apply(4, incr(b"c", 5, 4, b"i1"))
    assert (retry.ok, retry.deduplicated, retry.value, retry.ts) == (True, True, 5, Timestamp(2 * S))
    assert decode_counter_value(machine.mvcc.get(b"c", MAX)) == 6


def test_increment_dedup_records_survive_snapshots():
    source = leased()
    source.apply(2, incr(b"c", 5, 2, b"i1"))
    target = RangeStateMachine(MemoryEngine(), USER, MAX_OFFSET)
    target.apply(1, None)
    target.apply(2, None)
    target.restore(2, cbor2.loads(cbor2.dumps(source.snapshot())))
    assert target.apply(3, incr(b"c", 5, 3, b"i1")).value == 5


def test_increment_writes_above_a_newer_version():
    machine = leased()
    machine.apply(2, incr(b"c", 1, 10, b"i1"))
    late = machine.apply(3, incr(b"c", 1, 5, b"i2"))  # Proposed with an older timestamp.
    assert late.ok and late.value == 2 and late.ts == Timestamp(10 * S).next()
    assert decode_counter_value(machine.mvcc.get(b"c", MAX)) == 2


@pytest.mark.parametrize(
    ("prepare", "entry", "error_part"),
    [
        (None, incr(b"c", 1, 3, b"i", seq=2), "lease changed"),
        (None, incr(b"\x01c", 1, 3, b"i"), "outside"),
        (put(b"c", b"short", 2, b"p"), incr(b"c", 1, 3, b"i"), "8-byte"),
        (incr(b"c", 2**63 - 1, 2, b"p"), incr(b"c", 1, 3, b"i"), "overflows"),
    ],
)
def test_increment_rejections(prepare, entry, error_part):
    machine = leased()
    machine.apply(2, prepare)
    before = live(machine)
    result = machine.apply(3, entry)
    assert (result.ok, result.kind) == (False, "increment") and error_part in result.error
    assert live(machine) == before


# -- meta --------------------------------------------------------------------------------


def meta_machine():
    engine = MemoryEngine()
    engine.write(meta_bootstrap_batch([USER, META], Timestamp(1)), sync=True)
    return leased(META, engine)


def lookup(machine, key):
    start = meta_lookup_start(key)
    rows = machine.mvcc.scan(start, meta_span()[1], MAX, limit=1)
    return decode_meta_value(rows[0][1])


def test_bootstrap_writes_meta_entries_and_counter():
    machine = meta_machine()
    assert lookup(machine, b"") == META and lookup(machine, b"\x01\x00range-id") == META
    assert lookup(machine, b"\x02") == USER and lookup(machine, b"\xff\xfe") == USER
    assert decode_counter_value(machine.mvcc.get(RANGE_ID_COUNTER_KEY, MAX)) == 2
    allocated = machine.apply(2, incr(RANGE_ID_COUNTER_KEY, 1, 2, b"alloc"))
    assert allocated.ok and allocated.value == 3


def test_meta_split_replaces_one_entry_by_two():
    machine = meta_machine()
    result = machine.apply(2, meta_split(USER, LEFT, RIGHT, 2, b"ms"))
    assert (result.ok, result.kind, result.deduplicated) == (True, "meta_split", False)
    assert lookup(machine, b"\x02") == LEFT and lookup(machine, b"l\xff") == LEFT
    assert lookup(machine, b"m") == RIGHT and lookup(machine, b"\xff\xfe") == RIGHT
    assert lookup(machine, b"\x01") == META
    # The old tiling stays readable below the command's timestamp.
    rows = machine.mvcc.scan(meta_lookup_start(b"c"), meta_span()[1], Timestamp(1 * S), limit=1)
    assert decode_meta_value(rows[0][1]) == USER


def test_meta_split_duplicate_succeeds_without_change():
    machine = meta_machine()
    machine.apply(2, meta_split(USER, LEFT, RIGHT, 2, b"ms"))
    before = machine.mvcc.export_span(b"", SYSTEM_KEY_MAX)
    retry = machine.apply(3, meta_split(USER, LEFT, RIGHT, 3, b"ms"))
    repair = machine.apply(4, meta_split(USER, LEFT, RIGHT, 4, b"repair"))  # A new op_id.
    assert retry.ok and retry.deduplicated
    assert repair.ok and repair.deduplicated and repair.ts == Timestamp(2 * S)
    assert machine.mvcc.export_span(b"", SYSTEM_KEY_MAX) == before


def test_meta_split_of_a_changed_entry_is_rejected():
    machine = meta_machine()
    machine.apply(2, meta_split(USER, LEFT, RIGHT, 2, b"ms"))
    before = machine.mvcc.export_span(b"", SYSTEM_KEY_MAX)
    other_left = RangeDescriptor(2, SYSTEM_KEY_MAX, b"k", REPLICAS, 1)
    other_right = RangeDescriptor(4, b"k", KEY_MAX, REPLICAS, 1)
    result = machine.apply(3, meta_split(USER, other_left, other_right, 3, b"ms2"))
    assert (result.ok, result.error, result.value) == (False, "meta entry changed", RIGHT.encode())
    assert machine.mvcc.export_span(b"", SYSTEM_KEY_MAX) == before


def test_meta_split_checks_lease_and_range():
    machine = meta_machine()
    wrong_lease = machine.apply(2, meta_split(USER, LEFT, RIGHT, 2, b"ms", seq=2))
    assert (wrong_lease.ok, wrong_lease.error) == (False, "lease changed")
    user_range = leased(USER)
    outside = user_range.apply(2, meta_split(USER, LEFT, RIGHT, 2, b"ms"))
    assert not outside.ok and "outside" in outside.error


def test_meta_split_writes_above_a_newer_meta_version():
    machine = meta_machine()
    machine.apply(2, meta_split(USER, LEFT, RIGHT, 20, b"ms"))
    right_2 = RangeDescriptor(3, b"m", b"t", REPLICAS, 2)
    right_3 = RangeDescriptor(5, b"t", KEY_MAX, REPLICAS, 2)
    result = machine.apply(3, meta_split(RIGHT, right_2, right_3, 10, b"ms2"))
    assert result.ok and result.ts == Timestamp(20 * S).next()
    assert lookup(machine, b"s") == right_2 and lookup(machine, b"u") == right_3


def test_meta_split_command_requires_matching_halves():
    with pytest.raises(ValueError):
        MetaSplit(USER, LEFT, RangeDescriptor(3, b"n", KEY_MAX, REPLICAS, 1), Timestamp(1), b"o", 1)
    with pytest.raises(ValueError):
        MetaSplit(USER, LEFT, RangeDescriptor(3, b"m", KEY_MAX, REPLICAS, 2), Timestamp(1), b"o", 1)
    with pytest.raises(ValueError):
        MetaSplit(USER, RangeDescriptor(7, SYSTEM_KEY_MAX, b"m", REPLICAS, 1), RIGHT, Timestamp(1), b"o", 1)


# -- split key choice --------------------------------------------------------------------


def test_split_key_near_middle_halves_equal_keys():
    machine = leased()
    for i, key in enumerate(b"abcdefghij"):
        machine.apply(2 + i, put(bytes([key]), b"v" * 100, 2, b"o%d" % i))
    key = machine.split_key_near_middle()
    assert key in (b"e", b"f")
    left_bytes = machine.mvcc.span_bytes(SYSTEM_KEY_MAX, key)
    assert abs(2 * left_bytes - machine.size_bytes()) <= machine.size_bytes() // 5


def test_split_key_near_middle_never_returns_the_first_key():
    machine = leased()
    machine.apply(2, put(b"a", b"v" * 5000, 2, b"o1"))  # Passes half on its own.
    machine.apply(3, put(b"b", b"v", 2, b"o2"))
    machine.apply(4, put(b"c", b"v", 2, b"o3"))
    assert machine.split_key_near_middle() == b"b"


def test_split_key_near_middle_needs_two_keys():
    machine = leased()
    assert machine.split_key_near_middle() is None
    for i in range(5):
        machine.apply(2 + i, put(b"k", b"v%d" % i, 2 + i, b"o%d" % i))  # Many versions, one key.
    assert machine.split_key_near_middle() is None


def test_split_key_near_middle_is_none_in_the_system_keyspace():
    machine = meta_machine()
    machine.apply(2, meta_split(USER, LEFT, RIGHT, 2, b"ms"))
    assert machine.split_key_near_middle() is None


def test_split_at_the_chosen_key_applies():
    machine = with_data(leased())
    key = machine.split_key_near_middle()
    assert key is not None
    assert machine.apply(6, split(key)).ok


# -- planted bug -------------------------------------------------------------------------


@pytest.mark.parametrize("bugs", [frozenset(), frozenset({BUG_SPLIT_DROPS_RHS_WRITE})])
def test_planted_bug_loses_the_newest_write_of_the_first_right_key(bugs):
    machine = leased(bugs=bugs)
    machine.apply(2, put(b"m", b"old", 2, b"o1"))
    machine.apply(3, put(b"m", b"acknowledged", 3, b"o2"))
    machine.apply(4, put(b"n", b"other", 3, b"o3"))
    assert machine.apply(5, split(b"m")).ok
    right = load(machine._engine, 3)
    expected = b"old" if bugs else b"acknowledged"
    assert right.mvcc.get(b"m", MAX) == expected
    assert right.mvcc.get(b"n", MAX) == b"other"


def test_unknown_bug_is_refused():
    with pytest.raises(AssertionError, match="unknown"):
        RangeStateMachine(MemoryEngine(), USER, MAX_OFFSET, bugs=frozenset({"no-such-bug"}))
