"""Range descriptors: validation, containment, codec, lookup among many ranges."""

import pytest

from ranges.descriptor import RangeDescriptor, find_descriptor
from ranges.keys import KEY_MAX


def test_contains_is_half_open():
    d = RangeDescriptor(1, b"b", b"d", (1, 2, 3))
    assert d.contains(b"b") and d.contains(b"c\xff")
    assert not d.contains(b"d") and not d.contains(b"a")
    assert d.contains_span(b"b", b"d") and d.contains_span(b"c", b"c")
    assert not d.contains_span(b"a", b"c") and not d.contains_span(b"c", b"e")


def test_codec_round_trip():
    d = RangeDescriptor(9, b"", KEY_MAX, (3, 1), generation=4)
    assert RangeDescriptor.decode(d.encode()) == d


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {"range_id": 1},
        {"range_id": 0, "start_key": b"", "end_key": b"a", "replicas": [1], "generation": 0},
        {"range_id": 1, "start_key": b"b", "end_key": b"a", "replicas": [1], "generation": 0},
        {"range_id": 1, "start_key": b"", "end_key": KEY_MAX + b"\x00", "replicas": [1], "generation": 0},
        {"range_id": 1, "start_key": b"", "end_key": b"a", "replicas": [], "generation": 0},
        {"range_id": 1, "start_key": b"", "end_key": b"a", "replicas": [1, 1], "generation": 0},
        {"range_id": 1, "start_key": b"", "end_key": b"a", "replicas": [True], "generation": 0},
        {"range_id": 1, "start_key": "", "end_key": b"a", "replicas": [1], "generation": 0},
        {"range_id": 1, "start_key": b"", "end_key": b"a", "replicas": [1], "generation": -1},
        {"range_id": 1, "start_key": b"", "end_key": b"a", "replicas": [1], "generation": 0, "x": 1},
    ],
)
def test_decode_rejects_malformed(raw):
    with pytest.raises(ValueError):
        RangeDescriptor.decode(raw)


def test_find_descriptor_among_many_ranges():
    bounds = [b"", b"c", b"f", b"m", KEY_MAX]
    descs = [RangeDescriptor(i + 1, bounds[i], bounds[i + 1], (1,)) for i in range(4)]
    assert find_descriptor(descs, b"").range_id == 1
    assert find_descriptor(descs, b"c").range_id == 2
    assert find_descriptor(descs, b"e\xff").range_id == 2
    assert find_descriptor(descs, b"\xff\xfe").range_id == 4
    assert find_descriptor(descs[1:], b"a") is None  # Before the first known range.
    assert find_descriptor(descs[:2], b"g") is None  # A gap in the caller's cache.
    assert find_descriptor([], b"a") is None
