"""clock: HLC timestamps, physical clock sources, max offset, commit-wait arithmetic.

The bottom layer of spanlite; it imports nothing else from the project. Importing it does
not import trio (`wait_until_after` imports trio lazily when it needs `trio.sleep`).
"""

from clock.commit_wait import CommitWaitStalledError, commit_wait_remaining_ns, wait_until_after
from clock.hlc import ClockOffsetError, HybridLogicalClock
from clock.physical import ManualClock, OffsetClock, PhysicalClock, SystemClock
from clock.settings import (
    DEFAULT_HIGH_WATER_WINDOW_NS,
    DEFAULT_MAX_OFFSET_NS,
    format_duration,
    parse_duration,
    validate_max_offset_ns,
)
from clock.timestamp import MAX, ZERO, Timestamp

__all__ = [
    "MAX",
    "ZERO",
    "ClockOffsetError",
    "CommitWaitStalledError",
    "DEFAULT_HIGH_WATER_WINDOW_NS",
    "DEFAULT_MAX_OFFSET_NS",
    "HybridLogicalClock",
    "ManualClock",
    "OffsetClock",
    "PhysicalClock",
    "SystemClock",
    "Timestamp",
    "commit_wait_remaining_ns",
    "format_duration",
    "parse_duration",
    "validate_max_offset_ns",
    "wait_until_after",
]
