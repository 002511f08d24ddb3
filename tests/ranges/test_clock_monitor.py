"""ranges.clock_monitor: offsets from ping echoes; stop serving when a majority is far."""

from ranges.clock_monitor import ClockMonitor

MS = 1_000_000


def test_offset_is_estimated_from_the_round_trip():
    monitor = ClockMonitor(1, 100 * MS, 3)
    monitor.echo_received(2, sent_ns=1_000 * MS, remote_ns=1_051 * MS, now_ns=1_002 * MS)
    sample = monitor.samples[2]
    assert sample.offset_ns == 50 * MS and sample.uncertainty_ns == 1 * MS + 1


def test_node_far_from_a_majority_stops_serving_and_resumes():
    monitor = ClockMonitor(1, 100 * MS, 3)
    now = 10_000 * MS
    monitor.echo_received(2, now - 2 * MS, now - 1 * MS - 90 * MS, now)
    assert monitor.check(now) is None and monitor.serving  # one far peer of two: not a majority
    monitor.echo_received(3, now - 2 * MS, now - 1 * MS - 95 * MS, now)
    line = monitor.check(now)
    assert not monitor.serving and "not serving" in line and "node 3" in line
    monitor.echo_received(2, now - 2 * MS, now - 1 * MS, now)
    monitor.echo_received(3, now - 2 * MS, now - 1 * MS, now)
    assert "serving again" in monitor.check(now) and monitor.serving


def test_uncertain_or_stale_samples_do_not_stop_a_node():
    monitor = ClockMonitor(1, 100 * MS, 3)
    now = 10_000 * MS
    # 90 ms apparent offset but a 40 ms round trip: not surely beyond 80 ms.
    monitor.echo_received(2, now - 40 * MS, now - 20 * MS - 90 * MS, now)
    monitor.echo_received(3, now - 40 * MS, now - 20 * MS - 90 * MS, now)
    assert monitor.check(now) is None and monitor.serving
    monitor.echo_received(2, now - 2 * MS, now - 95 * MS, now)
    monitor.echo_received(3, now - 2 * MS, now - 95 * MS, now)
    assert monitor.check(now + 6_000 * MS) is None and monitor.serving  # samples too old
