"""Commit-wait: wait until every node's clock is surely past a timestamp.

Spanner acknowledges a commit at `ts` only once `TT.after(ts)` holds, i.e. once the earliest
possible true time is past `ts`. With a physical clock whose offset from every other node's
clock is at most `max_offset_ns`, that is

    physical_now_ns - max_offset_ns > ts.wall_ns

After it holds, every node's physical clock reads more than `ts.wall_ns`, so every timestamp
any node assigns from now on (to a transaction that starts after the acknowledgement) is
above `ts`: external consistency.

HAZARD: the guarantee is only as good as `max_offset_ns` (see `clock.hlc`).

HAZARD: the physical clock may be stepped (or skewed by the chaos tool) while waiting, so
`wait_until_after` re-reads it after every sleep instead of trusting one computed duration.

`commit_wait_remaining_ns` is pure arithmetic. `wait_until_after` is async and sleeps with
`trio.sleep` (imported lazily, so importing `clock` never imports trio) or an injected
`sleep`, which lets tests and the simulator drive it with a `ManualClock`.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from clock.physical import PhysicalClock
from clock.settings import NS_PER_S, format_duration
from clock.timestamp import Timestamp

SleepSeconds = Callable[[float], Awaitable[object]]

# Each round sleeps the whole remaining wait, so a healthy clock needs one or two rounds
# (trio.sleep may wake a hair early relative to the wall clock). Hitting the limit means
# the physical clock is not moving while we sleep: a mis-wired clock, not a slow one.
WAIT_ROUNDS_MAX = 1_000


class CommitWaitStalledError(Exception):
    """The physical clock did not advance past the commit-wait target within `WAIT_ROUNDS_MAX` sleeps."""


def commit_wait_remaining_ns(ts: Timestamp, physical_now_ns: int, max_offset_ns: int) -> int:
    """Nanoseconds until `physical_now - max_offset > ts.wall_ns` holds; 0 if it already does."""
    assert isinstance(ts, Timestamp), f"ts must be a Timestamp, got {ts!r}"
    assert max_offset_ns >= 0, f"max_offset_ns must be non-negative, got {max_offset_ns}"
    # The first physical reading that satisfies the strict inequality.
    target_ns = ts.wall_ns + max_offset_ns + 1
    return max(0, target_ns - physical_now_ns)


async def wait_until_after(
    ts: Timestamp,
    physical: PhysicalClock,
    max_offset_ns: int,
    *,
    sleep: SleepSeconds | None = None,
) -> int:
    """Sleep until `physical.now_ns() - max_offset_ns > ts.wall_ns`. Returns the ns slept.

    `sleep` is an async callable taking seconds, like `trio.sleep` (the default). The clock
    is re-read after every sleep; the return value is the sum of the sleeps requested (0 if
    no wait was needed). Raises `CommitWaitStalledError` if the clock does not get there
    within `WAIT_ROUNDS_MAX` sleeps.
    """
    if sleep is None:
        import trio  # The injected I/O edge: only the real driver path needs trio.

        sleep = trio.sleep
    slept_ns = 0
    for _ in range(WAIT_ROUNDS_MAX):
        remaining_ns = commit_wait_remaining_ns(ts, physical.now_ns(), max_offset_ns)
        if remaining_ns == 0:
            return slept_ns
        assert remaining_ns > 0, f"negative remaining wait: {remaining_ns}"
        await sleep(remaining_ns / NS_PER_S)
        slept_ns += remaining_ns
    raise CommitWaitStalledError(
        f"commit-wait for {ts} (max offset {format_duration(max_offset_ns)}) did not finish after "
        f"{WAIT_ROUNDS_MAX} sleeps totalling {format_duration(slept_ns)}; physical clock {physical!r} "
        f"reads {physical.now_ns()}ns: is it advancing while we sleep?"
    )

