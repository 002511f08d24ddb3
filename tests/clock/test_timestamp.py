"""Timestamp: total order, neighbours, and encodings whose order equals timestamp order."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clock.timestamp import ENCODED_BYTES, LOGICAL_MAX, MAX, WALL_NS_MAX, ZERO, Timestamp

walls = st.one_of(st.integers(0, WALL_NS_MAX), st.integers(0, 1000), st.sampled_from([0, 1, WALL_NS_MAX]))
logicals = st.one_of(st.integers(0, LOGICAL_MAX), st.integers(0, 5), st.sampled_from([0, LOGICAL_MAX]))
timestamps = st.builds(Timestamp, walls, logicals)


@given(timestamps, timestamps)
def test_to_bytes_order_equals_timestamp_order(a, b):
    assert (a < b) == (a.to_bytes() < b.to_bytes())
    assert (a == b) == (a.to_bytes() == b.to_bytes())


@given(timestamps, timestamps)
def test_order_is_wall_then_logical(a, b):
    assert (a < b) == ((a.wall_ns, a.logical) < (b.wall_ns, b.logical))


@given(timestamps)
def test_bytes_round_trip_and_width(ts):
    raw = ts.to_bytes()
    assert len(raw) == ENCODED_BYTES
    assert Timestamp.from_bytes(raw) == ts


@given(timestamps)
def test_cbor_form_round_trip(ts):
    assert Timestamp.decode(ts.encode()) == ts
    assert Timestamp.decode(tuple(ts.encode())) == ts


@given(timestamps.filter(lambda ts: ts != MAX))
def test_next_is_the_smallest_greater_timestamp(ts):
    nxt = ts.next()
    assert nxt > ts
    assert nxt.prev() == ts


@given(timestamps.filter(lambda ts: ts != ZERO))
def test_prev_is_the_largest_smaller_timestamp(ts):
    prv = ts.prev()
    assert prv < ts
    assert prv.next() == ts


def test_next_carries_logical_overflow_into_wall():
    assert Timestamp(5, LOGICAL_MAX).next() == Timestamp(6, 0)
    assert Timestamp(6, 0).prev() == Timestamp(5, LOGICAL_MAX)


def test_zero_and_max_bound_everything():
    assert ZERO == Timestamp(0, 0)
    assert ZERO < Timestamp(0, 1) < Timestamp(1, 0) < MAX


def test_add_ns_resets_logical():
    assert Timestamp(10, 7).add_ns(5) == Timestamp(15, 0)


@pytest.mark.parametrize(
    "raw",
    [None, [], [1], [1, 2, 3], "1,2", [1.0, 2], [1, "2"], [-1, 0], [0, -1], [WALL_NS_MAX + 1, 0], [0, LOGICAL_MAX + 1]],
)
def test_decode_rejects_malformed_input(raw):
    with pytest.raises(ValueError):
        Timestamp.decode(raw)


@pytest.mark.parametrize("fields", [(-1, 0), (0, -1), (WALL_NS_MAX + 1, 0), (0, LOGICAL_MAX + 1)])
def test_out_of_range_fields_are_impossible(fields):
    with pytest.raises(AssertionError):
        Timestamp(*fields)


def test_str_shows_seconds_and_logical():
    assert str(Timestamp(1_500_000_000, 3)) == "1.500000000,3"
