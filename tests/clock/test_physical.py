"""Physical clock sources."""

import time

import pytest

from clock.physical import ManualClock, OffsetClock, PhysicalClock, SystemClock


def test_system_clock_reads_wall_time_in_ns():
    before_ns = time.time_ns()
    reading_ns = SystemClock().now_ns()
    after_ns = time.time_ns()
    assert before_ns <= reading_ns <= after_ns


def test_all_clocks_satisfy_the_protocol():
    for clk in (SystemClock(), ManualClock(0), OffsetClock(ManualClock(0))):
        assert isinstance(clk, PhysicalClock)


def test_manual_clock_moves_only_when_told():
    clk = ManualClock(1_000)
    assert clk.now_ns() == 1_000
    clk.advance(500)
    assert clk.now_ns() == 1_500
    clk.set(2_000)
    assert clk.now_ns() == 2_000
    clk.set(2_000)
    assert clk.now_ns() == 2_000


def test_manual_clock_never_goes_backwards():
    clk = ManualClock(1_000)
    with pytest.raises(AssertionError, match="backwards"):
        clk.set(999)
    with pytest.raises(AssertionError, match="backwards"):
        clk.advance(-1)
    assert clk.now_ns() == 1_000


def test_offset_clock_applies_a_runtime_mutable_offset():
    base = ManualClock(10_000)
    skewed = OffsetClock(base, offset_ns=250)
    assert skewed.now_ns() == 10_250
    skewed.offset_ns = -300
    assert skewed.now_ns() == 9_700, "lowering the offset steps the clock backwards, like NTP would"
    base.advance(1_000)
    assert skewed.now_ns() == 10_700


def test_offset_clock_defaults_to_no_offset():
    assert OffsetClock(ManualClock(42)).now_ns() == 42


def test_offset_clock_reading_below_epoch_is_impossible():
    with pytest.raises(AssertionError, match="out of range"):
        OffsetClock(ManualClock(10), offset_ns=-11).now_ns()
