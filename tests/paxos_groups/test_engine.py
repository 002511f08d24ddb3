"""The engines' point-read fast path `first_in` agrees with `scan` and sees every write."""

from __future__ import annotations

import pytest

from paxos_groups.engine import MemoryEngine, RocksEngine


@pytest.fixture(params=["memory", "rocks"])
def engine(request, tmp_path):
    if request.param == "memory":
        yield MemoryEngine()
        return
    engine = RocksEngine(str(tmp_path / "db"))
    yield engine
    engine.close()


def _first_by_scan(engine, start: bytes, end: bytes):
    return next(iter(engine.scan(start, end, limit=1)), None)


def test_first_in_matches_scan(engine):
    engine.write([(b"b", b"1"), (b"d", b"2"), (b"f", b"3")], sync=False)
    for start, end in [(b"a", b"z"), (b"b", b"c"), (b"c", b"d"), (b"c", b"e"), (b"g", b"z"), (b"a", b"b")]:
        assert engine.first_in(start, end) == _first_by_scan(engine, start, end), (start, end)


def test_first_in_sees_writes_and_deletes_made_after_earlier_reads(engine):
    assert engine.first_in(b"k", b"l") is None
    engine.write([(b"k1", b"v1")], sync=False)
    assert engine.first_in(b"k", b"l") == (b"k1", b"v1")
    engine.write([(b"k0", b"v0")], sync=True)
    assert engine.first_in(b"k", b"l") == (b"k0", b"v0")
    engine.write([(b"k0", None)], sync=False)
    assert engine.first_in(b"k", b"l") == (b"k1", b"v1")
    engine.write([(b"k1", b"v1b")], sync=False)
    assert engine.first_in(b"k", b"l") == (b"k1", b"v1b")


def test_rocks_first_in_after_flush_and_reopen(tmp_path):
    path = str(tmp_path / "db")
    engine = RocksEngine(path)
    engine.write([(b"a%04d" % i, b"x" * 100) for i in range(2000)], sync=True)
    assert engine.first_in(b"a0500", b"b") == (b"a0500", b"x" * 100)
    engine._db.flush()  # move the data to an SST file under the live tailing iterator
    engine.write([(b"a0499z", b"new")], sync=False)
    assert engine.first_in(b"a0499", b"b") == (b"a0499", b"x" * 100)
    assert engine.first_in(b"a04990", b"b") == (b"a0499z", b"new")
    engine.close()  # must release the LOCK even though first_in made an iterator
    reopened = RocksEngine(path)
    try:
        assert reopened.first_in(b"a0499z", b"b") == (b"a0499z", b"new")
    finally:
        reopened.close()
