"""Lease rules, one test per rule, and property tests of disjointness."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clock.timestamp import ZERO, Timestamp
from paxos_groups.lease import (
    NO_LEASE,
    Lease,
    LeaseNotExpired,
    LeaseStatus,
    apply_lease_request,
    lease_status,
    request_lease,
)

MAX_OFFSET = 10
DURATION = 100


def t(wall):
    return Timestamp(wall)


def test_no_lease_is_expired_for_everyone():
    assert lease_status(NO_LEASE, 1, ZERO, MAX_OFFSET) is LeaseStatus.EXPIRED


def test_holder_serves_between_start_and_stasis():
    lease = Lease(1, t(100), t(200), 1)
    assert lease_status(lease, 1, t(100), MAX_OFFSET) is LeaseStatus.VALID
    assert lease_status(lease, 1, Timestamp(189, 99), MAX_OFFSET) is LeaseStatus.VALID


def test_holder_stops_serving_in_stasis():
    lease = Lease(1, t(100), t(200), 1)
    assert lease_status(lease, 1, t(190), MAX_OFFSET) is LeaseStatus.STASIS
    assert lease_status(lease, 1, Timestamp(199, 5), MAX_OFFSET) is LeaseStatus.STASIS


def test_lease_expires_at_expiration_for_everyone():
    lease = Lease(1, t(100), t(200), 1)
    assert lease_status(lease, 1, t(200), MAX_OFFSET) is LeaseStatus.EXPIRED
    assert lease_status(lease, 2, t(200), MAX_OFFSET) is LeaseStatus.EXPIRED


def test_other_nodes_see_not_holder_before_expiration():
    lease = Lease(1, t(100), t(200), 1)
    assert lease_status(lease, 2, t(150), MAX_OFFSET) is LeaseStatus.NOT_HOLDER
    assert lease_status(lease, 2, t(199), MAX_OFFSET) is LeaseStatus.NOT_HOLDER


def test_holder_does_not_serve_before_start():
    lease = Lease(1, t(100), t(200), 1)
    assert lease_status(lease, 1, t(99), MAX_OFFSET) is LeaseStatus.NOT_STARTED


def test_first_lease_acquisition():
    lease = request_lease(NO_LEASE, 3, t(50), DURATION)
    assert lease == Lease(3, t(50), t(150), 1)
    assert apply_lease_request(NO_LEASE, lease) == (lease, True, None)


def test_renewal_keeps_start_and_sequence_and_extends_expiration():
    current = Lease(1, t(100), t(200), 4)
    renewed = request_lease(current, 1, t(150), DURATION)
    assert renewed == Lease(1, t(100), t(250), 4)
    assert apply_lease_request(current, renewed) == (renewed, True, None)


def test_renewal_that_does_not_extend_is_rejected():
    current = Lease(1, t(100), t(200), 4)
    new, accepted, reason = apply_lease_request(current, Lease(1, t(100), t(200), 4))
    assert (new, accepted) == (current, False) and "extend" in reason


def test_renewal_must_keep_start():
    current = Lease(1, t(100), t(200), 4)
    new, accepted, reason = apply_lease_request(current, Lease(1, t(50), t(300), 4))
    assert (new, accepted) == (current, False) and "start" in reason


def test_renewal_by_another_node_is_rejected():
    current = Lease(1, t(100), t(200), 4)
    new, accepted, _ = apply_lease_request(current, Lease(2, t(100), t(300), 4))
    assert (new, accepted) == (current, False)


def test_acquisition_requires_expired_lease_by_requesters_clock():
    current = Lease(1, t(100), t(200), 4)
    with pytest.raises(LeaseNotExpired, match="expires"):
        request_lease(current, 2, t(199), DURATION)
    assert request_lease(current, 2, t(230), DURATION) == Lease(2, t(230), t(330), 5)


def test_new_lease_cannot_start_before_previous_expiration():
    current = Lease(1, t(100), t(200), 4)
    new, accepted, reason = apply_lease_request(current, Lease(2, t(199), t(300), 5))
    assert (new, accepted) == (current, False) and "before the previous expiration" in reason
    starts_at_expiration = Lease(2, t(200), t(300), 5)
    assert apply_lease_request(current, starts_at_expiration) == (starts_at_expiration, True, None)


def test_new_lease_must_take_the_next_sequence():
    current = Lease(1, t(100), t(200), 4)
    for sequence in (3, 6, 7):
        new, accepted, reason = apply_lease_request(current, Lease(2, t(300), t(400), sequence))
        assert (new, accepted) == (current, False) and "sequence" in reason


def test_renewal_of_superseded_lease_is_rejected():
    old = Lease(1, t(100), t(200), 4)
    current = Lease(2, t(200), t(300), 5)
    new, accepted, _ = apply_lease_request(current, Lease(1, t(100), t(400), 4))
    assert (new, accepted) == (current, False)
    assert old.expiration <= current.start


def test_codec_round_trip_and_rejection():
    lease = Lease(2, Timestamp(10, 3), t(20), 9)
    assert Lease.decode(lease.encode()) == lease
    assert Lease.decode(NO_LEASE.encode()) == NO_LEASE
    for bad in (None, [], [1, [1, 0], [2, 0]], [1, [2, 0], [1, 0], 1], [0, [1, 0], [2, 0], 1], [1, [0, 0], [0, 0], 0]):
        with pytest.raises(ValueError):
            Lease.decode(bad)


# -- properties ------------------------------------------------------------------------

nodes = st.integers(1, 3)
request = st.one_of(
    # An honest request computed from the current lease and the requester's clock.
    st.tuples(st.just("honest"), nodes, st.integers(0, 1000), st.integers(1, 200)),
    # An arbitrary forged lease (stale, reordered or buggy proposers).
    st.tuples(st.just("forged"), nodes, st.integers(0, 1000), st.integers(1, 200), st.integers(0, 8)),
)


@settings(max_examples=300)
@given(st.lists(request, max_size=30))
def test_accepted_leases_are_pairwise_disjoint(requests):
    current = NO_LEASE
    intervals = {}  # sequence -> (holder, start, expiration), final after renewals
    for req in requests:
        requested = _requested_lease(current, req)
        if requested is None:
            continue
        current, accepted, _ = apply_lease_request(current, requested)
        if accepted:
            intervals[current.sequence] = (current.holder, current.start, current.expiration)
    leases = sorted(intervals.items())
    assert [seq for seq, _ in leases] == list(range(1, len(leases) + 1))
    for i, (_, (h1, s1, e1)) in enumerate(leases):
        for _, (h2, s2, e2) in leases[i + 1 :]:
            assert e1 <= s2 or e2 <= s1, f"overlap: {h1}:[{s1},{e1}) and {h2}:[{s2},{e2})"


def _requested_lease(current, req):
    if req[0] == "honest":
        _, holder, now, duration = req
        try:
            return request_lease(current, holder, t(now), duration)
        except LeaseNotExpired:
            return None
    _, holder, start, duration, sequence = req
    if sequence == 0:
        return NO_LEASE
    return Lease(holder, t(start), t(start + duration), sequence)


@given(
    st.integers(0, 500),  # old lease start
    st.integers(MAX_OFFSET + 1, 300),  # old lease duration
    st.integers(0, 100),  # gap before the next lease starts
    st.integers(1, 300),  # new lease duration
    st.integers(-MAX_OFFSET // 2, MAX_OFFSET // 2),  # old holder's clock offset
    st.integers(-MAX_OFFSET // 2, MAX_OFFSET // 2),  # new holder's clock offset
    st.integers(0, 1200),  # real time
)
def test_consecutive_leases_never_both_serve_at_one_real_instant(start, dur1, gap, dur2, off_a, off_b, real):
    # Clock offsets from real time within +-max_offset/2 keep any two clocks within max_offset.
    old = Lease(1, t(start), t(start + dur1), 1)
    new = Lease(2, t(start + dur1 + gap), t(start + dur1 + gap + dur2), 2)
    clock_a, clock_b = t(max(0, real + off_a)), t(max(0, real + off_b))
    a_serves = lease_status(old, 1, clock_a, MAX_OFFSET) is LeaseStatus.VALID
    b_serves = lease_status(new, 2, clock_b, MAX_OFFSET) is LeaseStatus.VALID
    assert not (a_serves and b_serves)
