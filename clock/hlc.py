"""Hybrid logical clock: `HybridLogicalClock`.

The HLC of "Logical Physical Clocks and Consistent Snapshots in Globally Distributed
Databases" (Kulkarni, Demirbas et al., 2014), shaped like CockroachDB's `pkg/util/hlc`.
Each node owns one HLC. Its timestamps (`clock.timestamp.Timestamp`) combine the node's
coarsely synchronized physical clock (`wall_ns`) with a Lamport counter (`logical`) that
breaks ties. The physical clock is injected (`clock.physical.PhysicalClock`), so tests and
the simulator drive it with a `ManualClock` or skew it with an `OffsetClock`.

The HLC is a plain synchronous object: it does no I/O of its own. Its only side effect is
the `persist_high_water` callback, which the caller implements (an fsynced engine write of
`\\x00hlc`, see docs/ARCHITECTURE.md).

The HLC provides these guarantees:

Causality tracking

  Nodes attach `hlc.now()` to every message they send and call `hlc.update(ts)` on every
  timestamp they receive (requests, responses, chosen Paxos entries). `update` returns a
  timestamp strictly greater than the remote one and than every timestamp this HLC handed
  out before, so an event caused by a message is always ordered after the message's send.
  Transactions, leases and MVCC rely on this: a leaseholder's clock is forwarded past every
  timestamp it learns, so it never assigns a write a timestamp at or below one it has seen.

Strict monotonicity

  `now()` and `update()` return strictly increasing timestamps, even when the physical
  clock stalls or jumps backwards (the logical counter takes over, and the wall time stays
  where it was until the physical clock catches up).

Strict monotonicity across restarts (the high-water mark)

  Every timestamp handed out has `wall_ns` strictly below the persisted high-water mark.
  Before handing out a timestamp whose `wall_ns` reaches the mark, the HLC calls
  `persist_high_water(wall_ns + high_water_window_ns)` synchronously and only then returns
  the timestamp: persistence happens about once per window, not once per call. A restarted
  HLC built with `high_water_ns=<the persisted mark>` hands out only timestamps with
  `wall_ns >= high_water_ns`, hence strictly above everything handed out before the crash,
  even if the physical clock went backwards across the restart.

Bounded skew

  `max_offset_ns` is the bound on the offset between any two nodes' physical clocks; it
  must be configured identically on every node. `update` refuses (raises
  `ClockOffsetError`, without touching the clock) a remote timestamp whose wall time is
  ahead of the local physical clock by more than `max_offset_ns`, like CockroachDB's
  `UpdateAndCheckMaxOffset`: such a remote is untrustworthy, and forwarding to it would drag
  this node's timestamps ahead of real time by an unbounded amount. Commit-wait
  (`clock.commit_wait`) and lease stasis periods (`paxos_groups.lease`) assume the bound.

HAZARD: if the real offset between two clocks exceeds `max_offset_ns`, commit-wait ends too
early and a transaction can be acknowledged while another node could still assign a smaller
timestamp to a later transaction: external consistency (strict serializability) is lost, and
two leases may overlap in real time. Serializability itself does not depend on clocks.

HAZARD: `update` raising `ClockOffsetError` means the caller must drop the message (or
reply with an error) without acting on it. Acting on a message whose timestamp the clock
refused breaks causality tracking for that message.

HAZARD: `check_remote_offset=False` (per HLC or per `update` call) trusts the remote
blindly. Use it only for timestamps already vetted by the cluster (e.g. a timestamp inside a
chosen Paxos entry, which must be applied, not rejected). A faulty clock upstream can then
push this HLC arbitrarily far ahead, and the high-water mark persists that lead across
restarts.

HAZARD: without `persist_high_water` (None) nothing is persisted, and a restarted node may
hand out timestamps below ones it handed out before the crash, unless it waits out the
clock first (CockroachDB's `ensureClockMonotonicity`). Only tests should run that way.

HAZARD: a restarted HLC's floor `high_water_ns` may lie up to `high_water_window_ns` ahead of
its physical clock. Until the physical clock catches up, its timestamps run ahead of real
time by more than `max_offset_ns` (default window 500ms vs max offset 20ms): peers refuse
them with `ClockOffsetError` and commit-waits get longer. The node driver should sleep
`restart_floor_lead_ns()` before serving, as CockroachDB sleeps on start-up.

HAZARD: `persist_high_water` runs synchronously on the caller's thread, i.e. an fsync
blocks the trio event loop about once per window. If it raises, the HLC hands nothing out
and its state is unchanged; the exception propagates to the caller.

HAZARD: not thread-safe. One HLC belongs to one trio event loop (single-threaded).
"""

from __future__ import annotations

from typing import Callable

from clock.physical import PhysicalClock
from clock.settings import DEFAULT_HIGH_WATER_WINDOW_NS, format_duration, validate_max_offset_ns
from clock.timestamp import WALL_NS_MAX, Timestamp

PersistHighWater = Callable[[int], None]


class ClockOffsetError(Exception):
    """A remote timestamp is further ahead of the local physical clock than max offset allows."""

    def __init__(self, remote: Timestamp, physical_now_ns: int, max_offset_ns: int) -> None:
        super().__init__(remote, physical_now_ns, max_offset_ns)
        self.remote = remote
        self.physical_now_ns = physical_now_ns
        self.max_offset_ns = max_offset_ns
        self.offset_ns = remote.wall_ns - physical_now_ns

    def __str__(self) -> str:
        return (
            f"remote wall time is {format_duration(self.offset_ns)} ahead of the local physical clock, more than "
            f"the max offset {format_duration(self.max_offset_ns)} (remote timestamp {self.remote}, local physical "
            f"clock {self.physical_now_ns}ns): the remote clock is untrustworthy; the HLC was not advanced"
        )


class HybridLogicalClock:
    """A node's hybrid logical clock. See the module docstring for guarantees and hazards."""

    def __init__(
        self,
        physical: PhysicalClock,
        max_offset_ns: int,
        *,
        high_water_ns: int = 0,
        persist_high_water: PersistHighWater | None = None,
        high_water_window_ns: int = DEFAULT_HIGH_WATER_WINDOW_NS,
        check_remote_offset: bool = True,
    ) -> None:
        assert isinstance(physical, PhysicalClock), f"physical must be a PhysicalClock, got {physical!r}"
        assert isinstance(high_water_ns, int), f"high_water_ns must be an int, got {high_water_ns!r}"
        assert 0 <= high_water_ns <= WALL_NS_MAX, f"high_water_ns out of range: {high_water_ns}"
        assert isinstance(high_water_window_ns, int), f"high_water_window_ns must be an int: {high_water_window_ns!r}"
        assert high_water_window_ns > 0, f"high_water_window_ns must be positive: {high_water_window_ns}"
        self._physical = physical
        self._max_offset_ns = validate_max_offset_ns(max_offset_ns)
        self._persist_high_water = persist_high_water
        self._high_water_window_ns = high_water_window_ns
        self.check_remote_offset = check_remote_offset
        # The floor from the previous incarnation: every timestamp handed out has wall_ns >= it.
        self._restart_floor_ns = high_water_ns
        # Invariant: _last >= every timestamp handed out, and _last >= Timestamp(_restart_floor_ns, 0).
        # Invariant: _last is the latest timestamp handed out, or the floor before the first one.
        self._last = Timestamp(high_water_ns, 0)
        # Invariant (persistence on): every timestamp handed out has wall_ns < _high_water_ns,
        # and _high_water_ns is durable (persist_high_water returned) once anything is handed out.
        self._high_water_ns = high_water_ns

    @property
    def max_offset_ns(self) -> int:
        return self._max_offset_ns

    @property
    def high_water_ns(self) -> int:
        """The latest persisted high-water mark (or the restart floor before the first persist)."""
        return self._high_water_ns

    def physical_now_ns(self) -> int:
        """A reading of the physical clock, without touching the HLC."""
        return self._physical.now_ns()

    def last(self) -> Timestamp:
        """The latest timestamp handed out, without advancing the clock.

        Before the first `now`/`update` it is `Timestamp(high_water_ns, 0)`, a lower bound for
        everything this HLC will hand out.
        """
        return self._last

    def restart_floor_lead_ns(self) -> int:
        """How far the restart floor (`high_water_ns` at construction) is ahead of the physical
        clock now; 0 once the physical clock has caught up. Sleep this long before serving."""
        lead_ns = self._restart_floor_ns - self._physical.now_ns()
        return max(0, lead_ns)

    def now(self) -> Timestamp:
        """A timestamp strictly greater than every timestamp handed out before."""
        physical_ns = self._physical.now_ns()
        candidate = _tick(self._last, physical_ns)
        return self._hand_out(candidate)

    def update(self, remote: Timestamp, *, check_remote_offset: bool | None = None) -> Timestamp:
        """Forward the clock past `remote` (a timestamp received in a message).

        Returns a timestamp strictly greater than `remote` and than every timestamp handed out
        before. Raises `ClockOffsetError`, leaving the clock untouched, if the check is on
        (`check_remote_offset`, defaulting to the HLC's setting) and `remote.wall_ns` is ahead
        of the local physical clock by more than `max_offset_ns`.
        """
        assert isinstance(remote, Timestamp), f"update takes a Timestamp, got {remote!r}"
        physical_ns = self._physical.now_ns()
        check = self.check_remote_offset if check_remote_offset is None else check_remote_offset
        if check and remote.wall_ns - physical_ns > self._max_offset_ns:
            raise ClockOffsetError(remote, physical_ns, self._max_offset_ns)
        candidate = _tick(max(self._last, remote), physical_ns)
        handed_out = self._hand_out(candidate)
        assert handed_out > remote, f"update({remote}) returned {handed_out}, not above the remote"
        return handed_out

    def _hand_out(self, candidate: Timestamp) -> Timestamp:
        assert candidate > self._last, f"HLC would go backwards: {candidate} after {self._last}"
        assert candidate.wall_ns >= self._restart_floor_ns, f"{candidate} below restart floor {self._restart_floor_ns}"
        if self._persist_high_water is not None and candidate.wall_ns >= self._high_water_ns:
            new_mark_ns = candidate.wall_ns + self._high_water_window_ns
            assert new_mark_ns > self._high_water_ns, f"high-water mark would not grow: {new_mark_ns}"
            # Durable before the timestamp leaves: if this raises, nothing is handed out.
            self._persist_high_water(new_mark_ns)
            self._high_water_ns = new_mark_ns
        self._last = candidate
        return candidate

    def __repr__(self) -> str:
        return (
            f"HybridLogicalClock(last={self._last}, physical={self._physical!r}, "
            f"max_offset={format_duration(self._max_offset_ns)}, high_water_ns={self._high_water_ns})"
        )


def _tick(floor: Timestamp, physical_ns: int) -> Timestamp:
    """The smallest HLC step above `floor` given a physical reading (Kulkarni et al., Fig. 5)."""
    if physical_ns > floor.wall_ns:
        return Timestamp(physical_ns, 0)
    return floor.next()
