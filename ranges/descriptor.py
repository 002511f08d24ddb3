"""Range descriptors: which contiguous span of the keyspace a range owns, and its replicas.

A range owns user keys in `[start_key, end_key)`. Ranges tile the keyspace `[KEY_MIN, KEY_MAX)`
without gaps or overlaps. `generation` increases on every change of the span (splits, later
merges), so of two descriptors of the same range the higher generation is the newer one.

Many ranges: a node or client keeps descriptors sorted by `start_key` and finds the one for a
key with `find_descriptor` (bisect, O(log n)). The meta range maps `end_key -> descriptor`
(MVCC key `ranges.keys.meta_key(end_key)`, value `encode_meta_value(descriptor)`), which is why
`end_key` is exclusive and part of the encoding.

Guarantees: a constructed or decoded descriptor is always well-formed (`ValueError`
otherwise), so code holding one never re-checks it.
HAZARD: the encoding is persisted in every range's applied state and in snapshots; extend it
by adding optional dict fields, never by renaming one.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import cbor2

from ranges.keys import KEY_MAX, RANGE_ID_MAX

MAX_REPLICAS = 16  # A limit on everything: a replica set larger than this is a mistake.
_FIELDS = ("range_id", "start_key", "end_key", "replicas", "generation")


def _is_int(value: object) -> bool:
    # bool is an int subclass; a True where an int belongs is malformed input.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class RangeDescriptor:
    range_id: int
    start_key: bytes
    end_key: bytes
    replicas: tuple[int, ...]
    generation: int = 0

    def __post_init__(self) -> None:
        problem = _descriptor_problem(self)
        if problem is not None:
            raise ValueError(f"invalid range descriptor {self!r}: {problem}")

    def contains(self, key: bytes) -> bool:
        return self.start_key <= key < self.end_key

    def contains_span(self, start: bytes, end: bytes) -> bool:
        """Whether `[start, end)` (start <= end) lies inside this range."""
        assert start <= end, f"inverted span [{start!r}, {end!r})"
        return self.start_key <= start and end <= self.end_key

    def encode(self) -> dict:
        return {
            "range_id": self.range_id,
            "start_key": self.start_key,
            "end_key": self.end_key,
            "replicas": list(self.replicas),
            "generation": self.generation,
        }

    @staticmethod
    def decode(raw: object) -> "RangeDescriptor":
        if not isinstance(raw, dict) or set(raw) != set(_FIELDS):
            raise ValueError(f"a range descriptor is a dict with keys {_FIELDS}, got {raw!r}")
        replicas = raw["replicas"]
        if not isinstance(replicas, list):
            raise ValueError(f"descriptor replicas must be a list, got {replicas!r}")
        return RangeDescriptor(raw["range_id"], raw["start_key"], raw["end_key"], tuple(replicas), raw["generation"])


def _descriptor_problem(d: RangeDescriptor) -> str | None:
    if not _is_int(d.range_id) or not 0 < d.range_id <= RANGE_ID_MAX:
        return "range_id must be a positive 64-bit int"
    if not isinstance(d.start_key, bytes) or not isinstance(d.end_key, bytes):
        return "start_key and end_key must be bytes"
    if not d.start_key < d.end_key:
        return "start_key must be below end_key"
    if d.end_key > KEY_MAX:
        return "end_key must not exceed KEY_MAX"
    if not isinstance(d.replicas, tuple) or not 0 < len(d.replicas) <= MAX_REPLICAS:
        return f"replicas must be a tuple of 1..{MAX_REPLICAS} node ids"
    if not all(_is_int(r) and r > 0 for r in d.replicas) or len(set(d.replicas)) != len(d.replicas):
        return "replicas must be distinct positive node ids"
    if not _is_int(d.generation) or d.generation < 0:
        return "generation must be a non-negative int"
    return None


def find_descriptor(descriptors_sorted_by_start: Sequence[RangeDescriptor], key: bytes) -> RangeDescriptor | None:
    """The descriptor containing `key`, or None if no descriptor in the list covers it."""
    i = bisect.bisect_right(descriptors_sorted_by_start, key, key=lambda d: d.start_key) - 1
    if i < 0:
        return None
    found = descriptors_sorted_by_start[i]
    assert found.start_key <= key, "bisect must land on a descriptor starting at or before key"
    return found if found.contains(key) else None


def encode_meta_value(descriptor: RangeDescriptor) -> bytes:
    """The value of a meta entry: cbor of `descriptor.encode()`."""
    assert isinstance(descriptor, RangeDescriptor), f"not a descriptor: {descriptor!r:.80}"
    return cbor2.dumps(descriptor.encode())


def decode_meta_value(raw: bytes) -> RangeDescriptor:
    """The descriptor held by a meta entry; ValueError if `raw` is not one."""
    if not isinstance(raw, bytes):
        raise ValueError(f"a meta value is bytes, got {type(raw).__name__}")
    try:
        decoded = cbor2.loads(raw)
    except cbor2.CBORError as e:
        raise ValueError(f"a meta value is cbor, got {raw[:32]!r}: {e}") from None
    return RangeDescriptor.decode(decoded)
