"""Physical clock sources, injected into the HLC (as CockroachDB injects `hlc.WallClock`).

Every reading is integer nanoseconds since the Unix epoch. Nothing above this module reads
the time itself: the HLC, commit-wait and the simulator receive a `PhysicalClock`.

- `SystemClock`: the machine's wall clock (`time.time_ns()`); the only real time source.
- `ManualClock`: moved by hand, never backwards; for tests and the simulator.
- `OffsetClock`: another clock plus an offset that may be changed at runtime, to inject
  skew (tests, the simulator, the chaos tool).

HAZARD: a physical clock may jump backwards (NTP step, VM migration, an `OffsetClock`
whose offset is lowered). Users of these clocks must not assume two readings are ordered;
the HLC absorbs backward jumps, commit-wait re-reads the clock after every sleep.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from clock.timestamp import WALL_NS_MAX


@runtime_checkable
class PhysicalClock(Protocol):
    def now_ns(self) -> int:
        """Nanoseconds since the Unix epoch. Not guaranteed monotonic."""
        ...


class SystemClock:
    """The machine's wall clock."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.time_ns()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to, and only forwards."""

    __slots__ = ("_now_ns",)

    def __init__(self, start_ns: int) -> None:
        assert isinstance(start_ns, int), f"start_ns must be an int, got {start_ns!r}"
        assert 0 <= start_ns <= WALL_NS_MAX, f"start_ns out of range: {start_ns}"
        # Invariant: _now_ns never decreases.
        self._now_ns = start_ns

    def now_ns(self) -> int:
        return self._now_ns

    def advance(self, delta_ns: int) -> None:
        assert isinstance(delta_ns, int), f"delta_ns must be an int, got {delta_ns!r}"
        assert delta_ns >= 0, f"a ManualClock never goes backwards: advance({delta_ns})"
        self.set(self._now_ns + delta_ns)

    def set(self, ns: int) -> None:
        assert isinstance(ns, int), f"ns must be an int, got {ns!r}"
        assert ns >= self._now_ns, f"a ManualClock never goes backwards: set({ns}) < now {self._now_ns}"
        assert ns <= WALL_NS_MAX, f"ns out of range: {ns}"
        self._now_ns = ns

    def __repr__(self) -> str:
        return f"ManualClock(now_ns={self._now_ns})"


class OffsetClock:
    """`base.now_ns() + offset_ns`; assign `offset_ns` at any time to skew this clock.

    Lowering `offset_ns` makes the clock jump backwards, exactly like an NTP step would.
    """

    __slots__ = ("base", "offset_ns")

    def __init__(self, base: PhysicalClock, offset_ns: int = 0) -> None:
        assert isinstance(base, PhysicalClock), f"base must be a PhysicalClock, got {base!r}"
        assert isinstance(offset_ns, int), f"offset_ns must be an int, got {offset_ns!r}"
        self.base = base
        self.offset_ns = offset_ns

    def now_ns(self) -> int:
        reading_ns = self.base.now_ns() + self.offset_ns
        assert 0 <= reading_ns <= WALL_NS_MAX, f"skewed clock out of range: {reading_ns} (offset {self.offset_ns})"
        return reading_ns

    def __repr__(self) -> str:
        return f"OffsetClock({self.base!r}, offset_ns={self.offset_ns})"
