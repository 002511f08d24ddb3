"""Engine key layout: order preservation, round trips, span bounds, limits."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clock.timestamp import LOGICAL_MAX, MAX, ZERO, Timestamp
from ranges.keys import (
    KEY_MAX,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    META_PREFIX,
    RANGE_ID_COUNTER_KEY,
    SYSTEM_KEY_MAX,
    BadRequest,
    InvalidKey,
    InvalidSplitKey,
    KeyTooLarge,
    ValueTooLarge,
    decode_meta_key,
    decode_mvcc_key,
    decode_range_state_key,
    hlc_key,
    ident_key,
    meta_key,
    meta_lookup_start,
    meta_span,
    mvcc_key,
    mvcc_prefix_for,
    mvcc_span,
    prefix_end,
    range_dedup_key,
    range_dedup_prefix,
    range_state_key,
    range_state_span,
    validate_key,
    validate_split_key,
    validate_user_key,
    validate_value,
)

# Small alphabets make prefixes, zero bytes and escape collisions likely.
user_keys = (
    st.binary(max_size=12) | st.lists(st.sampled_from([b"\x00", b"\x01", b"\xff", b"a"]), max_size=6).map(b"".join)
).filter(lambda k: k < KEY_MAX)
timestamps = st.builds(
    Timestamp, st.integers(0, 2**63 - 1) | st.integers(0, 5), st.integers(0, LOGICAL_MAX) | st.integers(0, 3)
)


def test_layout_matches_architecture_doc():
    assert ident_key() == b"\x00ident"
    assert hlc_key() == b"\x00hlc"
    assert range_state_key(7) == b"\x02" + (7).to_bytes(8, "big") + b"a"
    assert range_dedup_key(7, b"op") == b"\x02" + (7).to_bytes(8, "big") + b"uop"
    assert range_dedup_prefix(7) == b"\x02" + (7).to_bytes(8, "big") + b"u"
    wall_inv = (2**64 - 1 - 5).to_bytes(8, "big")
    logical_inv = (2**32 - 1 - 2).to_bytes(4, "big")
    assert mvcc_key(b"a\x00b", Timestamp(5, 2)) == b"\x03a\x00\xffb\x00\x01" + wall_inv + logical_inv


@given(user_keys, timestamps)
def test_mvcc_key_round_trips(key, ts):
    assert decode_mvcc_key(mvcc_key(key, ts)) == (key, ts)


@given(user_keys, timestamps, user_keys, timestamps)
def test_mvcc_key_order_is_key_ascending_then_ts_descending(k1, t1, k2, t2):
    expected = (k1, _neg(t1)) < (k2, _neg(t2))
    assert (mvcc_key(k1, t1) < mvcc_key(k2, t2)) == expected


def _neg(ts):
    return (-ts.wall_ns, -ts.logical)


@given(user_keys, timestamps, user_keys)
def test_prefix_covers_exactly_the_versions_of_one_key(key, ts, other):
    prefix = mvcc_prefix_for(key)
    assert mvcc_key(key, ts).startswith(prefix)
    assert mvcc_key(other, ts).startswith(prefix) == (other == key)
    assert prefix <= mvcc_key(key, ts) < prefix_end(prefix)


@given(user_keys, user_keys, user_keys, timestamps)
def test_mvcc_span_covers_exactly_keys_in_span(a, b, key, ts):
    start, end = min(a, b), max(a, b)
    lo, hi = mvcc_span(start, end)
    assert (lo <= mvcc_key(key, ts) < hi) == (start <= key < end)


def test_span_to_key_max_covers_largest_keys():
    lo, hi = mvcc_span(b"", KEY_MAX)
    for key in (b"", b"\x00", b"\xff", b"\xff\xfe\xff\xff", b"\xff" + b"\xfe" * 100):
        for ts in (ZERO, MAX):
            assert lo <= mvcc_key(key, ts) < hi


def test_prefix_end():
    assert prefix_end(b"ab") == b"ac"
    assert prefix_end(b"a\xff\xff") == b"b"


def test_validate_key_limits():
    validate_key(b"")
    validate_key(b"x" * MAX_KEY_BYTES)
    validate_key(b"\xff\xfe\xff")
    with pytest.raises(KeyTooLarge, match="MAX_KEY_BYTES"):
        validate_key(b"x" * (MAX_KEY_BYTES + 1))
    with pytest.raises(InvalidKey, match="KEY_MAX"):
        validate_key(KEY_MAX)
    with pytest.raises(InvalidKey):
        validate_key("text")
    assert issubclass(KeyTooLarge, BadRequest) and issubclass(BadRequest, ValueError)


def test_validate_value_limits():
    validate_value(b"")
    validate_value(b"v" * MAX_VALUE_BYTES)
    with pytest.raises(ValueTooLarge, match="MAX_VALUE_BYTES"):
        validate_value(b"v" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(BadRequest):
        validate_value(None)


def test_range_state_keys_can_be_found_among_dedup_records():
    lo, hi = range_state_span()
    keys = sorted([range_state_key(3), range_dedup_key(3, b"op"), range_state_key(70), range_dedup_key(2, b"a")])
    assert all(lo <= k < hi for k in keys)
    assert [decode_range_state_key(k) for k in keys] == [None, 3, None, 70]
    assert decode_range_state_key(hlc_key()) is None


# -- system keyspace and meta addressing (docs/SHARDING.md) ------------------------------

range_end_keys = st.binary(max_size=8).map(lambda k: SYSTEM_KEY_MAX + k).filter(lambda k: k <= KEY_MAX)


def test_system_keyspace_layout_matches_sharding_doc():
    assert (SYSTEM_KEY_MAX, META_PREFIX, RANGE_ID_COUNTER_KEY) == (b"\x02", b"\x01", b"\x01\x00range-id")
    assert meta_key(b"\x02") == b"\x01\x02" and meta_key(KEY_MAX) == b"\x01\xff\xff"
    assert meta_lookup_start(b"abc") == b"\x01abc\x00"
    lo, hi = meta_span()
    assert not lo <= RANGE_ID_COUNTER_KEY < hi and RANGE_ID_COUNTER_KEY < SYSTEM_KEY_MAX


@given(range_end_keys)
def test_meta_key_round_trips_and_sorts_in_the_system_keyspace(end_key):
    key = meta_key(end_key)
    assert decode_meta_key(key) == end_key
    lo, hi = meta_span()
    assert lo <= key < hi and key < SYSTEM_KEY_MAX
    validate_key(key)


@pytest.mark.parametrize("key", [b"", b"x", b"\x02", b"\x01\x00range-id", b"\x01\x01", b"\x01\xff\xff\x00", "\x01a"])
def test_decode_meta_key_rejects_non_meta_keys(key):
    with pytest.raises(ValueError):
        decode_meta_key(key)


@given(user_keys, range_end_keys)
def test_meta_lookup_finds_the_range_whose_end_is_the_first_above_the_key(key, end_key):
    # The first meta entry at or after the lookup start is the first range end above the key.
    assert (meta_lookup_start(key) <= meta_key(end_key)) == (key < end_key)


def test_validate_user_key_rejects_the_system_keyspace():
    validate_user_key(b"\x02")
    validate_user_key(b"user")
    for key in (b"", b"\x00", b"\x01", b"\x01\xff\xff", b"\x01\x00range-id"):
        with pytest.raises(InvalidKey, match="reserved for the system keyspace"):
            validate_user_key(key)
    with pytest.raises(InvalidKey, match="KEY_MAX"):
        validate_user_key(KEY_MAX)
    with pytest.raises(KeyTooLarge):
        validate_user_key(b"x" * (MAX_KEY_BYTES + 1))


def test_validate_split_key():
    validate_split_key(b"\x02")
    validate_split_key(b"m")
    for key in (b"", b"\x00", b"\x01\x05", None):
        with pytest.raises(InvalidSplitKey):
            validate_split_key(key)
    assert issubclass(InvalidSplitKey, BadRequest)
    with pytest.raises(BadRequest):
        validate_split_key(KEY_MAX)
