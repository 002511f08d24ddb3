"""Commit-wait: the arithmetic of `physical_now - max_offset > ts.wall_ns`, and the async wait."""

import pytest
import trio

from clock.commit_wait import WAIT_ROUNDS_MAX, CommitWaitStalledError, commit_wait_remaining_ns, wait_until_after
from clock.physical import ManualClock, OffsetClock
from clock.timestamp import Timestamp

MAX_OFFSET_NS = 20_000_000
START_NS = 1_700_000_000_000_000_000


@pytest.mark.parametrize(
    ("wall_ns", "physical_now_ns", "max_offset_ns", "remaining_ns"),
    [
        (1_000, 1_000, 20, 21),  # now: wait out max offset, plus one ns for the strict >
        (1_000, 1_020, 20, 1),  # now - max_offset == wall: not yet strictly after
        (1_000, 1_021, 20, 0),  # the first instant the condition holds
        (1_000, 5_000, 20, 0),  # long past
        (1_000, 900, 20, 121),  # a timestamp ahead of our clock (forwarded by a remote)
        (1_000, 1_000, 0, 1),  # zero max offset: only strictly-after remains
        (0, 0, 0, 1),
    ],
)
def test_remaining_wait(wall_ns, physical_now_ns, max_offset_ns, remaining_ns):
    assert commit_wait_remaining_ns(Timestamp(wall_ns, 7), physical_now_ns, max_offset_ns) == remaining_ns


def test_remaining_wait_ignores_the_logical_part():
    assert commit_wait_remaining_ns(Timestamp(1_000, 0), 1_000, 20) == commit_wait_remaining_ns(
        Timestamp(1_000, 2**31 - 1), 1_000, 20
    )


def test_waiting_the_remaining_time_makes_the_condition_hold():
    for physical_now_ns in range(900, 1_100):
        remaining_ns = commit_wait_remaining_ns(Timestamp(1_000), physical_now_ns, 20)
        assert physical_now_ns + remaining_ns - 20 > 1_000
        if remaining_ns:
            assert physical_now_ns + remaining_ns - 1 - 20 <= 1_000, "the wait is the shortest that works"


class ManualSleeper:
    """An injected `sleep(seconds)` that advances a ManualClock instead of waiting."""

    def __init__(self, physical: ManualClock) -> None:
        self.physical = physical
        self.sleeps_ns: list[int] = []

    async def __call__(self, seconds: float) -> None:
        delta_ns = round(seconds * 1e9)
        self.sleeps_ns.append(delta_ns)
        self.physical.advance(delta_ns)
        await trio.lowlevel.checkpoint()


async def test_wait_with_a_manual_clock_and_injected_sleep():
    physical = ManualClock(START_NS)
    sleeper = ManualSleeper(physical)
    ts = Timestamp(START_NS, 3)
    waited_ns = await wait_until_after(ts, physical, MAX_OFFSET_NS, sleep=sleeper)
    assert waited_ns == MAX_OFFSET_NS + 1
    assert sleeper.sleeps_ns == [MAX_OFFSET_NS + 1]
    assert physical.now_ns() - MAX_OFFSET_NS > ts.wall_ns


async def test_no_wait_when_already_past():
    physical = ManualClock(START_NS + MAX_OFFSET_NS + 1)
    sleeper = ManualSleeper(physical)
    assert await wait_until_after(Timestamp(START_NS), physical, MAX_OFFSET_NS, sleep=sleeper) == 0
    assert sleeper.sleeps_ns == []


async def test_wait_rereads_a_clock_stepped_back_during_the_sleep():
    base = ManualClock(START_NS)
    physical = OffsetClock(base, offset_ns=0)
    steps_ns: list[int] = []

    async def sleep_then_skew(seconds: float) -> None:
        delta_ns = round(seconds * 1e9)
        steps_ns.append(delta_ns)
        base.advance(delta_ns)
        if len(steps_ns) == 1:
            physical.offset_ns = -5_000_000  # the chaos tool steps this clock back 5ms
        await trio.lowlevel.checkpoint()

    ts = Timestamp(START_NS)
    waited_ns = await wait_until_after(ts, physical, MAX_OFFSET_NS, sleep=sleep_then_skew)
    assert steps_ns == [MAX_OFFSET_NS + 1, 5_000_000]
    assert waited_ns == MAX_OFFSET_NS + 1 + 5_000_000
    assert physical.now_ns() - MAX_OFFSET_NS > ts.wall_ns


async def test_a_clock_that_never_moves_is_reported_not_waited_on_forever():
    physical = ManualClock(START_NS)

    async def sleep_without_time_passing(seconds: float) -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(CommitWaitStalledError, match="is it advancing"):
        await wait_until_after(Timestamp(START_NS), physical, MAX_OFFSET_NS, sleep=sleep_without_time_passing)


class TrioTimeClock:
    """Physical time read from trio's clock (here the autojump MockClock), offset to an epoch."""

    def __init__(self, epoch_ns: int) -> None:
        self.epoch_ns = epoch_ns

    def now_ns(self) -> int:
        return self.epoch_ns + int(trio.current_time() * 1e9)


async def test_wait_with_trio_sleep_under_the_autojump_clock(autojump_clock):
    physical = TrioTimeClock(START_NS)
    max_offset_ns = 5_000_000_000  # five virtual seconds: autojump makes this instant
    ts = Timestamp(physical.now_ns() + 1_000_000_000, 0)  # a timestamp 1s ahead, e.g. forwarded by a remote
    started_s = trio.current_time()
    waited_ns = await wait_until_after(ts, physical, max_offset_ns)
    elapsed_ns = (trio.current_time() - started_s) * 1e9
    assert physical.now_ns() - max_offset_ns > ts.wall_ns
    assert waited_ns >= 6_000_000_000
    assert elapsed_ns == pytest.approx(6_000_000_000, abs=2_000)


async def test_the_wait_is_cancellable(autojump_clock):
    physical = TrioTimeClock(START_NS)
    with trio.move_on_after(0.001) as scope:
        await wait_until_after(Timestamp(physical.now_ns()), physical, 5_000_000_000)
    assert scope.cancelled_caught


def test_wait_rounds_are_bounded():
    assert 1 < WAIT_ROUNDS_MAX <= 10_000
