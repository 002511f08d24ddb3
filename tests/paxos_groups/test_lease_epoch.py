"""Epoch leases (paxos_groups.lease): valid while the holder's liveness keeps their epoch."""

from clock.timestamp import ZERO, Timestamp
from paxos_groups.lease import (
    Lease,
    LeaseStatus,
    apply_lease_request,
    effective_expiration,
    lease_status,
    request_lease,
)

S = 1_000_000_000
MAX_OFFSET = 100_000_000


def ts(seconds: float) -> Timestamp:
    return Timestamp(int(seconds * S), 0)


def liveness(records: dict[int, tuple[int, float]]):
    """holder -> (epoch, expiration seconds), as a LivenessLookup."""
    def lookup(holder: int, epoch: int) -> Timestamp:
        known = records.get(holder)
        return ts(known[1]) if known and known[0] == epoch else ZERO
    return lookup


EPOCH_LEASE = Lease(1, ts(10), ZERO, 3, epoch=2)


def test_epoch_lease_lasts_as_long_as_its_holders_liveness():
    alive = liveness({1: (2, 20)})
    assert effective_expiration(EPOCH_LEASE, alive) == ts(20)
    assert lease_status(EPOCH_LEASE, 1, ts(15), MAX_OFFSET, alive) is LeaseStatus.VALID
    assert lease_status(EPOCH_LEASE, 1, ts(19.95), MAX_OFFSET, alive) is LeaseStatus.STASIS
    assert lease_status(EPOCH_LEASE, 2, ts(15), MAX_OFFSET, alive) is LeaseStatus.NOT_HOLDER
    assert lease_status(EPOCH_LEASE, 2, ts(20), MAX_OFFSET, alive) is LeaseStatus.EXPIRED


def test_epoch_lease_dies_with_its_epoch_and_without_liveness_information():
    incremented = liveness({1: (3, 40)})
    assert lease_status(EPOCH_LEASE, 1, ts(15), MAX_OFFSET, incremented) is LeaseStatus.EXPIRED
    assert lease_status(EPOCH_LEASE, 1, ts(15), MAX_OFFSET, None) is LeaseStatus.EXPIRED


def test_epoch_lease_round_trips_and_old_encoding_decodes():
    assert Lease.decode(EPOCH_LEASE.encode()) == EPOCH_LEASE
    expiration_lease = Lease(1, ts(1), ts(3), 1)
    assert len(expiration_lease.encode()) == 4  # Unchanged on disk for expiration leases.
    assert Lease.decode(expiration_lease.encode()) == expiration_lease


def test_holder_upgrades_its_expiration_lease_keeping_the_sequence():
    current = Lease(1, ts(10), ts(12), 3)
    upgraded = request_lease(current, 1, ts(11), 2 * S, epoch=2)
    assert upgraded == Lease(1, ts(10), ZERO, 3, epoch=2)
    assert apply_lease_request(current, upgraded) == (upgraded, True, None)


def test_renewal_never_changes_an_epoch_leases_epoch():
    sneaky = Lease(1, ts(10), ZERO, 3, epoch=3)
    lease, accepted, reason = apply_lease_request(EPOCH_LEASE, sneaky, prev=EPOCH_LEASE)
    assert (lease, accepted) == (EPOCH_LEASE, False) and "new lease" in reason
    assert apply_lease_request(EPOCH_LEASE, EPOCH_LEASE) == (EPOCH_LEASE, True, None)  # re-assert


def test_holder_with_a_new_epoch_takes_a_new_lease():
    wanted = request_lease(EPOCH_LEASE, 1, ts(30), 2 * S, epoch=3, current_expiration=ZERO)
    assert (wanted.sequence, wanted.epoch, wanted.start) == (4, 3, ts(30))


def test_replacing_an_epoch_lease_needs_exactly_that_lease_as_prev():
    takeover = request_lease(EPOCH_LEASE, 2, ts(30), 2 * S, epoch=5, current_expiration=ZERO)
    assert apply_lease_request(EPOCH_LEASE, takeover, prev=EPOCH_LEASE) == (takeover, True, None)
    stale_view = Lease(1, ts(10), ts(12), 3)  # built before the holder upgraded its lease
    lease, accepted, _ = apply_lease_request(EPOCH_LEASE, takeover, prev=stale_view)
    assert (lease, accepted) == (EPOCH_LEASE, False)
    lease, accepted, _ = apply_lease_request(EPOCH_LEASE, takeover, prev=None)
    assert (lease, accepted) == (EPOCH_LEASE, False)


def test_takeover_of_a_live_epoch_lease_is_refused_by_request_lease():
    try:
        request_lease(EPOCH_LEASE, 2, ts(15), 2 * S, epoch=5, current_expiration=ts(20))
    except Exception as e:  # LeaseNotExpired
        assert "expires" in str(e)
    else:
        raise AssertionError("took over a lease whose holder is live")


def test_new_lease_starts_no_earlier_than_the_known_end_of_the_old_one():
    wanted = request_lease(EPOCH_LEASE, 2, ts(25), 2 * S, epoch=5, current_expiration=ts(20))
    assert wanted.start == ts(25)
    wanted = request_lease(EPOCH_LEASE, 1, ts(15), 2 * S, epoch=0, current_expiration=ts(18))
    assert wanted.start == ts(18) and not wanted.is_epoch and wanted.sequence == 4
