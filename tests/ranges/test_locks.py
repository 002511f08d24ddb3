"""ranges.locks: wound-wait decisions, reservations, expiry, snapshot-read blocking."""

from clock.timestamp import Timestamp
from ranges.locks import READ, WRITE, LockTable, PreparedLock, TxnMeta, prepared_writes_blocking

OLD = TxnMeta(b"o" * 16, 100)
YOUNG = TxnMeta(b"y" * 16, 200)
TS = Timestamp(1_000, 0)


def test_reads_share_and_a_write_conflicts_with_another_transactions_read():
    table = LockTable()
    table.add_read(YOUNG, b"a", b"c", 0)
    assert table.holders(OLD, READ, b"a", b"b", []) == []
    holders = table.holders(OLD, WRITE, b"b", b"b\x00", [])
    assert [(h.txn, h.prepared) for h in holders] == [(YOUNG, False)]
    assert table.holders(YOUNG, WRITE, b"b", b"b\x00", []) == []  # its own lock


def test_older_wounds_younger_unprepared_and_younger_waits_for_older():
    table = LockTable()
    table.add_read(OLD, b"k", b"k\x00", 0)
    assert not table.may_proceed(YOUNG, table.holders(YOUNG, WRITE, b"k", b"k\x00", []), b"k")
    table.release(OLD.txn_id)
    table.add_read(YOUNG, b"k", b"k\x00", 0)
    assert table.may_proceed(OLD, table.holders(OLD, WRITE, b"k", b"k\x00", []), b"k")
    assert YOUNG.txn_id in table.wounded and "b'k'" in table.wounded[YOUNG.txn_id]
    assert not table.holds_reads(YOUNG, [(b"k", b"k\x00")])


def test_prepared_and_preparing_transactions_are_never_wounded():
    table = LockTable()
    prepared = [PreparedLock(YOUNG, READ, b"k", b"l", None, TS, b"k")]
    holders = table.holders(OLD, WRITE, b"k", b"k\x00", prepared)
    assert holders[0].prepared and not table.may_proceed(OLD, holders, b"k")
    # A one-phase commit in flight reserves its writes; its read spans count as prepared too.
    table.add_read(YOUNG, b"r", b"s", 0)
    table.reserve(YOUNG, [PreparedLock(YOUNG, WRITE, b"w", b"w\x00", b"v", TS, b"w")], 0)
    holders = table.holders(OLD, WRITE, b"r", b"r\x00", [])
    assert holders[0].prepared and not table.may_proceed(OLD, holders, b"r")
    assert YOUNG.txn_id not in table.wounded


def test_plain_writes_wait_for_any_lock():
    table = LockTable()
    table.add_read(YOUNG, b"k", b"k\x00", 0)
    assert not table.may_proceed(None, table.holders(None, WRITE, b"k", b"k\x00", []))


def test_a_new_lease_starts_from_an_empty_table_and_silent_transactions_expire():
    table = LockTable()
    table.check_lease(1)
    table.add_read(YOUNG, b"k", b"k\x00", now_ns=0)
    table.check_lease(2)
    assert not table.holds_reads(YOUNG, [(b"k", b"k\x00")])
    table.add_read(OLD, b"k", b"k\x00", now_ns=0)
    assert table.expire(now_ns=10, inactive_ns=100) == []
    assert table.expire(now_ns=200, inactive_ns=100) == [OLD.txn_id]
    assert "expired" in table.wounded[OLD.txn_id]


def test_snapshot_reads_wait_only_for_prepared_writes_at_or_below_their_timestamp():
    locks = [PreparedLock(OLD, WRITE, b"k", b"k\x00", b"v", TS, b"k"),
             PreparedLock(OLD, READ, b"a", b"z", None, TS, b"k")]
    assert prepared_writes_blocking(locks, b"a", b"z", Timestamp(1_000, 0))
    assert not prepared_writes_blocking(locks, b"a", b"z", Timestamp(999, 5))
    assert not prepared_writes_blocking(locks, b"l", b"z", Timestamp(5_000, 0))  # the read lock does not block
