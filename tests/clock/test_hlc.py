"""HybridLogicalClock: the guarantees named in clock/hlc.py's docstring, one test group each."""

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clock.hlc import ClockOffsetError, HybridLogicalClock
from clock.physical import ManualClock, OffsetClock
from clock.timestamp import LOGICAL_MAX, Timestamp

MAX_OFFSET_NS = 20_000_000
WINDOW_NS = 500_000_000
START_NS = 1_700_000_000_000_000_000


@dataclass
class DurableMark:
    """Stands in for the engine's fsynced `\\x00hlc` key."""

    value_ns: int = 0
    writes: list[int] = field(default_factory=list)

    def persist(self, mark_ns: int) -> None:
        assert mark_ns > self.value_ns, "the persisted mark only grows"
        self.value_ns = mark_ns
        self.writes.append(mark_ns)


# --- Operations for the property tests -------------------------------------------------

# ("advance", ns): the physical clock moves forward.
# ("now", 0): a local event.
# ("update", skew_ns, logical): a message from a node whose clock reads physical + skew_ns,
#   with |skew| within max offset (the remote may also lag far behind: old messages).
# ("update_far", excess_ns, logical): a remote ahead by more than max offset.
advance_ops = st.tuples(st.just("advance"), st.one_of(st.integers(0, 5), st.integers(0, 3 * WINDOW_NS)))
now_ops = st.tuples(st.just("now"), st.just(0))
update_ops = st.tuples(
    st.just("update"),
    st.one_of(st.integers(-MAX_OFFSET_NS, MAX_OFFSET_NS), st.integers(-10 * WINDOW_NS, 0), st.sampled_from([MAX_OFFSET_NS, 0])),
    st.one_of(st.integers(0, 3), st.just(LOGICAL_MAX)),
)
update_far_ops = st.tuples(st.just("update_far"), st.integers(1, 10 * WINDOW_NS), st.integers(0, 3))
operations = st.lists(st.one_of(advance_ops, now_ops, update_ops, update_far_ops), max_size=60)


def run(hlc: HybridLogicalClock, physical: ManualClock, ops, mark: DurableMark | None = None) -> list[Timestamp]:
    """Apply `ops`; check per-step guarantees; return every timestamp handed out, in order."""
    handed_out: list[Timestamp] = []
    for op in ops:
        kind = op[0]
        if kind == "advance":
            physical.advance(op[1])
            continue
        before = hlc.last()
        if kind == "now":
            ts = hlc.now()
        elif kind == "update":
            remote = Timestamp(max(0, physical.now_ns() + op[1]), op[2])
            ts = hlc.update(remote)
            assert ts > remote, f"update({remote}) = {ts} is not above the remote"
        else:
            remote = Timestamp(physical.now_ns() + MAX_OFFSET_NS + op[1], op[2])
            with pytest.raises(ClockOffsetError):
                hlc.update(remote)
            assert hlc.last() == before, "a refused remote must not advance the clock"
            continue
        assert ts > before, f"{ts} is not above the previous {before}"
        assert hlc.last() == ts
        if mark is not None:
            assert ts.wall_ns < mark.value_ns, f"{ts} handed out at or above the persisted mark {mark.value_ns}"
        handed_out.append(ts)
    return handed_out


# --- Strict monotonicity -----------------------------------------------------------------


@given(operations)
def test_timestamps_strictly_increase_under_any_interleaving(ops):
    physical = ManualClock(START_NS)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS)
    handed_out = run(hlc, physical, ops)
    assert all(a < b for a, b in zip(handed_out, handed_out[1:]))


def test_now_strictly_increases_while_the_physical_clock_stalls():
    physical = ManualClock(START_NS)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS)
    assert [hlc.now() for _ in range(3)] == [Timestamp(START_NS, 0), Timestamp(START_NS, 1), Timestamp(START_NS, 2)]
    physical.advance(1)
    assert hlc.now() == Timestamp(START_NS + 1, 0), "a physical tick resets the logical counter"


def test_now_holds_its_wall_time_when_the_physical_clock_steps_back():
    base = ManualClock(START_NS)
    physical = OffsetClock(base, offset_ns=0)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS)
    first = hlc.now()
    physical.offset_ns = -1_000_000  # NTP step backwards
    assert hlc.now() == Timestamp(first.wall_ns, 1)
    base.advance(1_000_000)
    assert hlc.now() == Timestamp(first.wall_ns, 2), "still behind the HLC's wall time"
    base.advance(1)
    assert hlc.now() == Timestamp(START_NS + 1, 0)


def test_logical_overflow_carries_into_wall_time():
    physical = ManualClock(START_NS)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS)
    assert hlc.update(Timestamp(START_NS, LOGICAL_MAX)) == Timestamp(START_NS + 1, 0)


def test_last_does_not_advance_the_clock():
    physical = ManualClock(START_NS)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS)
    assert hlc.last() == Timestamp(0, 0)
    ts = hlc.now()
    assert hlc.last() == ts
    assert hlc.last() == ts
    assert hlc.now() > ts


# --- Causality tracking ------------------------------------------------------------------


def test_update_follows_kulkarni_rules():
    physical = ManualClock(START_NS)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS)
    assert hlc.update(Timestamp(START_NS - 5, 9)) == Timestamp(START_NS, 0), "physical time wins"
    assert hlc.update(Timestamp(START_NS + 10, 4)) == Timestamp(START_NS + 10, 5), "remote wins: remote.logical + 1"
    assert hlc.update(Timestamp(START_NS + 10, 2)) == Timestamp(START_NS + 10, 6), "local wins: local.logical + 1"
    assert hlc.update(Timestamp(START_NS + 10, 8)) == Timestamp(START_NS + 10, 9), "tie: max(logical) + 1"
    assert hlc.now() == Timestamp(START_NS + 10, 10)


@given(operations)
def test_two_nodes_exchanging_messages_preserve_causality(ops):
    """A message's receive is ordered after its send, both ways between two skewed nodes."""
    base = ManualClock(START_NS)
    a = HybridLogicalClock(OffsetClock(base, 0), MAX_OFFSET_NS)
    b = HybridLogicalClock(OffsetClock(base, MAX_OFFSET_NS), MAX_OFFSET_NS)
    for i, op in enumerate(ops):
        if op[0] == "advance":
            base.advance(op[1])
            continue
        sender, receiver = (a, b) if i % 2 else (b, a)
        sent = sender.now()
        received = receiver.update(sent)
        assert received > sent


# --- Bounded skew ------------------------------------------------------------------------


def test_update_refuses_a_remote_ahead_by_more_than_max_offset():
    physical = ManualClock(START_NS)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS)
    before = hlc.now()
    remote = Timestamp(START_NS + MAX_OFFSET_NS + 1, 0)
    with pytest.raises(ClockOffsetError) as excinfo:
        hlc.update(remote)
    error = excinfo.value
    assert (error.offset_ns, error.max_offset_ns, error.remote) == (MAX_OFFSET_NS + 1, MAX_OFFSET_NS, remote)
    assert "20.000001ms ahead" in str(error) and "max offset 20ms" in str(error)
    assert hlc.last() == before, "the clock did not move"
    assert hlc.now() == before.next()


def test_update_accepts_a_remote_exactly_max_offset_ahead():
    physical = ManualClock(START_NS)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS)
    assert hlc.update(Timestamp(START_NS + MAX_OFFSET_NS, 3)) == Timestamp(START_NS + MAX_OFFSET_NS, 4)


def test_offset_check_compares_with_the_physical_clock_not_the_hlc():
    """A clock forwarded by one remote does not make a second, equally far remote acceptable."""
    physical = ManualClock(START_NS)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS)
    hlc.update(Timestamp(START_NS + MAX_OFFSET_NS, 0))
    with pytest.raises(ClockOffsetError):
        hlc.update(Timestamp(START_NS + MAX_OFFSET_NS + 1, 0))


@pytest.mark.parametrize("per_hlc", [True, False])
def test_offset_check_can_be_switched_off(per_hlc):
    physical = ManualClock(START_NS)
    far = Timestamp(START_NS + 10 * MAX_OFFSET_NS, 0)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS, check_remote_offset=not per_hlc)
    ts = hlc.update(far) if per_hlc else hlc.update(far, check_remote_offset=False)
    assert ts == far.next()


def test_per_call_check_overrides_a_disabled_hlc_setting():
    hlc = HybridLogicalClock(ManualClock(START_NS), MAX_OFFSET_NS, check_remote_offset=False)
    with pytest.raises(ClockOffsetError):
        hlc.update(Timestamp(START_NS + MAX_OFFSET_NS + 1, 0), check_remote_offset=True)


def test_max_offset_is_exposed_and_validated():
    assert HybridLogicalClock(ManualClock(0), MAX_OFFSET_NS).max_offset_ns == MAX_OFFSET_NS
    with pytest.raises(ValueError, match="max offset"):
        HybridLogicalClock(ManualClock(0), -1)


def test_physical_now_reads_the_physical_clock_without_ticking():
    physical = ManualClock(START_NS)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS)
    physical.advance(7)
    assert hlc.physical_now_ns() == START_NS + 7
    assert hlc.last() == Timestamp(0, 0)


# --- Strict monotonicity across restarts (high-water mark) -------------------------------


@settings(max_examples=200)
@given(
    before=operations,
    after=operations,
    restart_clock_delta_ns=st.one_of(
        st.integers(-5 * WINDOW_NS, 5 * WINDOW_NS), st.integers(-WINDOW_NS, 0), st.just(0)
    ),
    window_ns=st.sampled_from([1, 1_000, WINDOW_NS]),
)
def test_restart_never_hands_out_a_timestamp_at_or_below_an_earlier_one(before, after, restart_clock_delta_ns, window_ns):
    """Even when the physical clock goes backwards across the restart."""
    mark = DurableMark()
    physical = ManualClock(START_NS)
    old = HybridLogicalClock(physical, MAX_OFFSET_NS, persist_high_water=mark.persist, high_water_window_ns=window_ns)
    old_handed_out = run(old, physical, before, mark)
    # Crash: only the durable mark survives.
    floor_ns = mark.value_ns
    new_physical = ManualClock(physical.now_ns() + restart_clock_delta_ns)
    new = HybridLogicalClock(
        new_physical, MAX_OFFSET_NS, high_water_ns=mark.value_ns, persist_high_water=mark.persist,
        high_water_window_ns=window_ns,
    )
    new_handed_out = run(new, new_physical, [("now", 0)] + after, mark)
    assert all(ts.wall_ns >= floor_ns for ts in new_handed_out)
    if old_handed_out:
        assert min(new_handed_out) > max(old_handed_out)
    assert all(a < b for a, b in zip(new_handed_out, new_handed_out[1:]))


def test_restarted_clock_starts_at_the_floor_when_the_physical_clock_is_behind():
    hlc = HybridLogicalClock(ManualClock(START_NS), MAX_OFFSET_NS, high_water_ns=START_NS + 1_000)
    assert hlc.last() == Timestamp(START_NS + 1_000, 0)
    assert hlc.restart_floor_lead_ns() == 1_000
    assert hlc.now() == Timestamp(START_NS + 1_000, 1)


def test_restart_floor_lead_is_zero_once_the_physical_clock_passes_it():
    physical = ManualClock(START_NS)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS, high_water_ns=START_NS - 1)
    assert hlc.restart_floor_lead_ns() == 0
    assert hlc.now() == Timestamp(START_NS, 0)


def test_mark_is_persisted_before_the_timestamp_is_handed_out():
    physical = ManualClock(START_NS)
    seen: list[tuple[int, Timestamp]] = []
    hlc: HybridLogicalClock

    def persist(mark_ns: int) -> None:
        seen.append((mark_ns, hlc.last()))

    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS, persist_high_water=persist, high_water_window_ns=WINDOW_NS)
    ts = hlc.now()
    assert seen == [(START_NS + WINDOW_NS, Timestamp(0, 0))], "persisted while the clock still showed the old state"
    assert hlc.high_water_ns == START_NS + WINDOW_NS
    assert ts.wall_ns < hlc.high_water_ns


def test_mark_is_persisted_about_once_per_window():
    physical = ManualClock(START_NS)
    mark = DurableMark()
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS, persist_high_water=mark.persist, high_water_window_ns=WINDOW_NS)
    step_ns = 1_000_000
    steps = 10 * WINDOW_NS // step_ns
    for _ in range(steps):
        hlc.now()
        hlc.now()
        physical.advance(step_ns)
    assert len(mark.writes) == 10
    assert mark.writes == [START_NS + (i + 1) * WINDOW_NS for i in range(10)]


def test_an_update_beyond_the_mark_persists_a_mark_past_the_remote():
    physical = ManualClock(START_NS)
    mark = DurableMark()
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS, persist_high_water=mark.persist, high_water_window_ns=1_000)
    hlc.now()
    ts = hlc.update(Timestamp(START_NS + MAX_OFFSET_NS, 0))
    assert mark.value_ns == ts.wall_ns + 1_000


def test_a_failed_persist_hands_nothing_out_and_changes_nothing():
    physical = ManualClock(START_NS)
    fail = True

    def persist(mark_ns: int) -> None:
        if fail:
            raise OSError("disk full")

    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS, persist_high_water=persist)
    with pytest.raises(OSError, match="disk full"):
        hlc.now()
    assert (hlc.last(), hlc.high_water_ns) == (Timestamp(0, 0), 0)
    fail = False
    assert hlc.now() == Timestamp(START_NS, 0)


def test_without_persistence_nothing_is_written_and_time_still_flows():
    physical = ManualClock(START_NS)
    hlc = HybridLogicalClock(physical, MAX_OFFSET_NS)
    assert hlc.now() == Timestamp(START_NS, 0)
    assert hlc.high_water_ns == 0


def test_nonsense_configuration_is_impossible():
    with pytest.raises(AssertionError):
        HybridLogicalClock(ManualClock(0), MAX_OFFSET_NS, high_water_window_ns=0)
    with pytest.raises(AssertionError):
        HybridLogicalClock(ManualClock(0), MAX_OFFSET_NS, high_water_ns=-1)
    with pytest.raises(AssertionError):
        HybridLogicalClock(object(), MAX_OFFSET_NS)  # type: ignore[arg-type]
