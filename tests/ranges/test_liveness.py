"""Node liveness records (ranges.liveness): heartbeats, epoch increments, a node's view."""

from clock.timestamp import ZERO, Timestamp
from ranges.liveness import LivenessRecord, NodeLiveness, apply_heartbeat, apply_increment

S = 1_000_000_000


def ts(seconds: float) -> Timestamp:
    return Timestamp(int(seconds * S), 0)


def test_first_heartbeat_creates_epoch_one():
    record, accepted = apply_heartbeat(None, 4, 1, ts(3))
    assert accepted and record == LivenessRecord(4, 1, ts(3))


def test_heartbeat_extends_only_at_the_current_epoch():
    current = LivenessRecord(4, 2, ts(3))
    assert apply_heartbeat(current, 4, 2, ts(5)) == (LivenessRecord(4, 2, ts(5)), True)
    assert apply_heartbeat(current, 4, 1, ts(5)) == (current, False)  # the node learns epoch 2
    assert apply_heartbeat(current, 4, 2, ts(2)) == (current, True)  # a late duplicate


def test_increment_only_after_expiration_and_only_once():
    current = LivenessRecord(4, 2, ts(3))
    assert apply_increment(current, 2, ts(2.9)) == (current, False)
    incremented, accepted = apply_increment(current, 2, ts(3))
    assert accepted and incremented == LivenessRecord(4, 3, ts(3))
    assert apply_increment(incremented, 2, ts(9)) == (incremented, True)  # already done
    assert apply_increment(None, 1, ts(9)) == (None, False)


def test_heartbeat_at_an_ended_epoch_is_refused():
    incremented, _ = apply_increment(LivenessRecord(4, 2, ts(3)), 2, ts(4))
    record, accepted = apply_heartbeat(incremented, 4, 2, ts(10))
    assert not accepted and record.epoch == 3


def test_view_keeps_the_newest_and_trusts_only_our_own_heartbeats_about_us():
    view = NodeLiveness(1)
    view.learn(LivenessRecord(2, 1, ts(5)), from_self=False)
    view.learn(LivenessRecord(2, 1, ts(4)), from_self=False)
    assert view.expiration_of(2, 1) == ts(5)
    view.learn(LivenessRecord(2, 2, ts(1)), from_self=False)
    assert view.epoch_dead(2, 1) and view.expiration_of(2, 1) == ZERO
    view.learn(LivenessRecord(1, 7, ts(99)), from_self=False)
    assert view.own() is None and not view.knows(1)


def test_live_epoch_ends_at_stasis():
    view = NodeLiveness(1)
    assert view.live_epoch(ts(0), 0) == 0
    view.learn(LivenessRecord(1, 3, ts(10)))
    assert view.live_epoch(ts(9.8), 100_000_000) == 3
    assert view.live_epoch(ts(9.95), 100_000_000) == 0
    assert view.next_heartbeat(ts(9)) == (3, ts(12))


def test_record_codec_round_trips_and_rejects_garbage():
    record = LivenessRecord(2, 5, ts(7))
    assert LivenessRecord.from_bytes(record.to_bytes()) == record
    for bad in ([2, 0, [1, 0]], [0, 1, [1, 0]], "x", [2, 1]):
        try:
            LivenessRecord.decode(bad)
        except ValueError:
            continue
        raise AssertionError(f"decoded garbage {bad!r}")
