"""Finding the range that holds a key, for clients: a bounded cache of range descriptors,
filled from the meta range on a miss. Shared by the real client (cluster.client) and the
simulator's (cluster.sim.txn_workloads), through the transaction `Sender` interface.

HAZARD: a cached descriptor may be stale after a split; callers that get RangeKeyMismatch
must `forget` the key and look it up again.
"""

from __future__ import annotations

import bisect

from ranges import keys
from ranges.api import Scan, Unavailable
from ranges.descriptor import RangeDescriptor, decode_meta_value


class RangeCache:
    """Range descriptors the client has looked up, by start key (bounded)."""

    ENTRIES_MAX = 100_000

    def __init__(self) -> None:
        self._starts: list[bytes] = []
        self._descriptors: list[RangeDescriptor] = []

    def lookup(self, key: bytes) -> RangeDescriptor | None:
        i = bisect.bisect_right(self._starts, key) - 1
        if i >= 0 and self._descriptors[i].contains(key):
            return self._descriptors[i]
        return None

    def add(self, descriptor: RangeDescriptor) -> None:
        self._remove_overlapping(descriptor.start_key, descriptor.end_key)
        if len(self._starts) >= self.ENTRIES_MAX:
            self._starts.clear()
            self._descriptors.clear()
        i = bisect.bisect_left(self._starts, descriptor.start_key)
        self._starts.insert(i, descriptor.start_key)
        self._descriptors.insert(i, descriptor)

    def forget(self, key: bytes) -> None:
        i = bisect.bisect_right(self._starts, key) - 1
        if i >= 0 and self._descriptors[i].contains(key):
            del self._starts[i]
            del self._descriptors[i]

    def _remove_overlapping(self, start: bytes, end: bytes) -> None:
        keep = [(s, d) for s, d in zip(self._starts, self._descriptors) if d.end_key <= start or s >= end]
        self._starts = [s for s, _ in keep]
        self._descriptors = [d for _, d in keep]


async def lookup_descriptor(sender, cache: RangeCache, key: bytes) -> RangeDescriptor:
    """The descriptor of the range holding `key`: cached, or one meta scan through `sender`."""
    cached = cache.lookup(key)
    if cached is not None:
        return cached
    _, end = keys.meta_span()
    result = await sender.send(Scan(keys.meta_lookup_start(key), end, 1))
    if not result["rows"]:
        raise Unavailable(f"the meta range has no entry for key {key[:16]!r}")
    descriptor = decode_meta_value(result["rows"][0][1])
    cache.add(descriptor)
    return descriptor
