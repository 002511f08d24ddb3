"""Hybrid logical clock timestamps.

A `Timestamp` is `(wall_ns, logical)`: nanoseconds of (hybrid) wall time and a logical
counter that orders events within the same wall tick. Timestamps are totally ordered,
first by `wall_ns`, then by `logical`.

Encoding: a compact two-element list `[wall_ns, logical]` for cbor, and a fixed 12-byte
big-endian form (`to_bytes`) whose byte order equals timestamp order, for storage keys.
"""

from __future__ import annotations

from dataclasses import dataclass

WALL_BYTES = 8
LOGICAL_BYTES = 4
ENCODED_BYTES = WALL_BYTES + LOGICAL_BYTES
WALL_NS_MAX = (1 << 63) - 1
LOGICAL_MAX = (1 << 31) - 1


@dataclass(frozen=True, order=True, slots=True)
class Timestamp:
    wall_ns: int
    logical: int = 0

    def __post_init__(self) -> None:
        assert 0 <= self.wall_ns <= WALL_NS_MAX, f"wall_ns out of range: {self.wall_ns}"
        assert 0 <= self.logical <= LOGICAL_MAX, f"logical out of range: {self.logical}"

    def next(self) -> "Timestamp":
        """The smallest timestamp strictly greater than this one."""
        if self.logical == LOGICAL_MAX:
            return Timestamp(self.wall_ns + 1, 0)
        return Timestamp(self.wall_ns, self.logical + 1)

    def prev(self) -> "Timestamp":
        """The largest timestamp strictly smaller than this one."""
        assert self != ZERO, "ZERO has no predecessor"
        if self.logical == 0:
            return Timestamp(self.wall_ns - 1, LOGICAL_MAX)
        return Timestamp(self.wall_ns, self.logical - 1)

    def add_ns(self, delta_ns: int) -> "Timestamp":
        """Shift the wall time; the logical part resets (used for lease expirations)."""
        return Timestamp(self.wall_ns + delta_ns, 0)

    def encode(self) -> list[int]:
        return [self.wall_ns, self.logical]

    @staticmethod
    def decode(raw: object) -> "Timestamp":
        if not (isinstance(raw, (list, tuple)) and len(raw) == 2):
            raise ValueError(f"a timestamp is [wall_ns, logical], got {raw!r}")
        wall_ns, logical = raw
        if not (isinstance(wall_ns, int) and isinstance(logical, int)):
            raise ValueError(f"timestamp fields must be integers, got {raw!r}")
        if not (0 <= wall_ns <= WALL_NS_MAX and 0 <= logical <= LOGICAL_MAX):
            raise ValueError(f"timestamp out of range: {raw!r}")
        return Timestamp(wall_ns, logical)

    def to_bytes(self) -> bytes:
        """Fixed-width big-endian bytes: byte order equals timestamp order."""
        return self.wall_ns.to_bytes(WALL_BYTES, "big") + self.logical.to_bytes(LOGICAL_BYTES, "big")

    @staticmethod
    def from_bytes(raw: bytes) -> "Timestamp":
        assert len(raw) == ENCODED_BYTES, f"a timestamp is {ENCODED_BYTES} bytes, got {len(raw)}"
        return Timestamp(int.from_bytes(raw[:WALL_BYTES], "big"), int.from_bytes(raw[WALL_BYTES:], "big"))

    def __str__(self) -> str:
        return f"{self.wall_ns / 1e9:.9f},{self.logical}"


ZERO = Timestamp(0, 0)
MAX = Timestamp(WALL_NS_MAX, LOGICAL_MAX)
