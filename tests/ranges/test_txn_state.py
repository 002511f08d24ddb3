"""ranges.txn_state: prepared locks and transaction records, through splits and snapshots."""

from clock.timestamp import Timestamp
from paxos_groups.engine import MemoryEngine
from ranges.commands import EndTxn, PrepareTxn, ResolveTxn
from ranges.descriptor import RangeDescriptor
from ranges.locks import READ, WRITE, PreparedLock, TxnMeta
from ranges.mvcc import MVCC
from ranges.txn_state import TxnState

TXN = TxnMeta(b"t" * 16, 7)
TS = Timestamp(1_000, 0)
WHOLE = RangeDescriptor(2, b"\x02", b"\xff\xff", (1, 2, 3), 0)


def _prepared(engine: MemoryEngine) -> TxnState:
    state = TxnState(engine, MVCC(engine))
    locks = (PreparedLock(TXN, READ, b"c", b"x", None, TS, b"c"),
             PreparedLock(TXN, WRITE, b"q", b"q\x00", b"new", TS, b"c"))
    batch = []
    state.prepare(batch, PrepareTxn(TXN, locks, TS, 1))
    engine.write(batch, sync=True)
    return state


def test_split_cuts_a_read_span_and_the_right_range_loads_its_part():
    engine = MemoryEngine()
    left = _prepared(engine)
    batch = []
    left.split(batch, b"m")
    engine.write(batch, sync=True)
    assert [(l.kind, l.start, l.end) for l in left.prepared] == [(READ, b"c", b"m")]
    right = TxnState(engine, MVCC(engine))
    right.load(RangeDescriptor(9, b"m", b"\xff\xff", (1, 2, 3), 1))
    assert sorted((l.kind, l.start, l.end) for l in right.prepared) == [(READ, b"m", b"x"), (WRITE, b"q", b"q\x00")]


def test_resolve_commit_applies_writes_at_commit_ts_once():
    engine = MemoryEngine()
    state = _prepared(engine)
    mvcc = MVCC(engine)
    commit_ts = Timestamp(2_000, 0)
    batch = []
    count, _, written = state.resolve(batch, ResolveTxn(TXN.txn_id, b"\x02", b"\xff\xff", commit_ts, commit_ts))
    engine.write(batch, sync=True)
    assert count == 2 and written == [b"q"] and not state.prepared
    assert mvcc.get(b"q", commit_ts) == b"new" and mvcc.get(b"q", TS) is None
    assert state.resolve([], ResolveTxn(TXN.txn_id, b"\x02", b"\xff\xff", commit_ts, commit_ts))[0] == 0
    reloaded = TxnState(engine, mvcc)
    reloaded.load(WHOLE)
    assert not reloaded.prepared  # the lock records are gone from the engine too


def test_first_decision_wins_and_travels_in_snapshots():
    engine = MemoryEngine()
    state = _prepared(engine)
    batch = []
    abort = state.end(batch, EndTxn(TXN.txn_id, b"c", False, Timestamp(3_000, 0), 1))
    engine.write(batch, sync=True)
    late_commit = state.end([], EndTxn(TXN.txn_id, b"c", True, Timestamp(4_000, 0), 1))
    assert abort == late_commit and not late_commit.committed
    exported = state.export(WHOLE)
    other = MemoryEngine()
    copy = TxnState(other, MVCC(other))
    batch = []
    copy.restore_batch(batch, WHOLE, exported)
    other.write(batch, sync=True)
    assert copy.record(b"c", TXN.txn_id) == abort and len(copy.prepared) == 2
