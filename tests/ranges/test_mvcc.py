"""MVCC reads and writes over the engine, checked against a simple model."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clock.timestamp import MAX, ZERO, Timestamp
from paxos_groups.engine import MemoryEngine
from ranges import mvcc as mvcc_module
from ranges.keys import KEY_MAX, KeyTooLarge, MAX_KEY_BYTES
from ranges.mvcc import MVCC


def ts(wall, logical=0):
    return Timestamp(wall, logical)


def make():
    engine = MemoryEngine()
    return engine, MVCC(engine)


def write(engine, fill):
    batch = []
    fill(batch)
    engine.write(batch, sync=False)


def test_get_returns_newest_version_at_or_below_ts():
    engine, m = make()
    write(engine, lambda b: (m.put(b, b"k", ts(10), b"v10"), m.put(b, b"k", ts(20), b"v20")))
    assert m.get(b"k", ts(9)) is None
    assert m.get(b"k", ts(10)) == b"v10"
    assert m.get(b"k", ts(19, 5)) == b"v10"
    assert m.get(b"k", ts(20)) == b"v20"
    assert m.get(b"k", MAX) == b"v20"
    assert m.get_with_ts(b"k", ts(15)) == (b"v10", ts(10))
    assert m.latest_version_ts(b"k") == ts(20)
    assert m.latest_version_ts(b"other") is None


def test_tombstone_reads_as_absent():
    engine, m = make()
    write(engine, lambda b: m.put(b, b"k", ts(10), b"v"))
    write(engine, lambda b: m.delete(b, b"k", ts(20)))
    assert m.get(b"k", ts(15)) == b"v"
    assert m.get_with_ts(b"k", ts(25)) == (None, ts(20))
    assert m.latest_version_ts(b"k") == ts(20)
    assert m.scan(b"", KEY_MAX, ts(25)) == []


def test_reads_see_written_batches_only():
    engine, m = make()
    batch = []
    m.put(batch, b"k", ts(1), b"v")
    assert m.get(b"k", MAX) is None  # Not written to the engine yet.
    engine.write(batch, sync=False)
    assert m.get(b"k", MAX) == b"v"


def test_keys_with_zero_bytes_and_prefixes_stay_apart():
    engine, m = make()
    keys = [b"", b"\x00", b"\x00\x00", b"\x00\x01", b"a", b"a\x00", b"a\x00\xff", b"ab", b"\xff\xfe"]
    write(engine, lambda b: [m.put(b, k, ts(5), b"v" + k) for k in keys])
    for k in keys:
        assert m.get(k, ts(5)) == b"v" + k
    assert [k for k, _ in m.scan(b"", KEY_MAX, ts(5))] == keys
    assert [k for k, _ in m.scan(b"\x00", b"a\x00", ts(5))] == keys[1:5]


def test_scan_limit_and_bounds():
    engine, m = make()
    write(engine, lambda b: [m.put(b, bytes([c]), ts(1), b"x") for c in b"abcdef"])
    assert [k for k, _ in m.scan(b"b", b"e", MAX)] == [b"b", b"c", b"d"]
    assert [k for k, _ in m.scan(b"", KEY_MAX, MAX, limit=2)] == [b"a", b"b"]
    assert m.scan(b"c", b"c", MAX) == []


def test_scan_skips_many_versions_without_decoding_them(monkeypatch):
    engine, m = make()
    for wall in range(1, 101):
        write(engine, lambda b, wall=wall: [m.put(b, k, ts(wall), b"%d" % wall) for k in (b"a", b"b", b"c")])
    decoded = []
    real = mvcc_module.decode_version_value
    monkeypatch.setattr(mvcc_module, "decode_version_value", lambda raw: decoded.append(raw) or real(raw))
    assert m.scan(b"", KEY_MAX, ts(50)) == [(b"a", b"50"), (b"b", b"50"), (b"c", b"50")]
    assert len(decoded) == 3  # One decode per key: newer and older versions were only compared.


def test_put_validates_key():
    _, m = make()
    with pytest.raises(KeyTooLarge):
        m.put([], b"k" * (MAX_KEY_BYTES + 1), ts(1), b"v")


def test_export_import_and_clear_span():
    src_engine, src = make()
    write(src_engine, lambda b: (src.put(b, b"a", ts(1), b"1"), src.delete(b, b"a", ts(2)), src.put(b, b"b", ts(3), b"3")))
    exported = src.export_span(b"", KEY_MAX)
    assert exported == [[b"a", [2, 0], None], [b"a", [1, 0], b"1"], [b"b", [3, 0], b"3"]]
    dst_engine, dst = make()
    write(dst_engine, lambda b: dst.import_span(b, exported))
    assert dst.export_span(b"", KEY_MAX) == exported
    assert dst.span_bytes(b"", KEY_MAX) == src.span_bytes(b"", KEY_MAX) > 0
    write(dst_engine, lambda b: dst.clear_span(b, b"a", b"b"))
    assert dst.export_span(b"", KEY_MAX) == exported[2:]


@pytest.mark.parametrize("bad", [None, [[b"a"]], [[b"a", [1], b"v"]], [["a", [1, 0], b"v"]], [[b"a", [1, 0], 5]]])
def test_import_rejects_malformed(bad):
    _, m = make()
    with pytest.raises(ValueError):
        m.import_span([], bad)


# -- model check -----------------------------------------------------------------------

small_keys = st.sampled_from([b"", b"\x00", b"a", b"a\x00", b"ab", b"b", b"\xff"])
ops = st.lists(
    st.tuples(small_keys, st.integers(1, 12), st.integers(0, 2), st.none() | st.binary(max_size=3)), max_size=40
)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(0, 14), small_keys, small_keys, st.none() | st.integers(1, 5))
def test_reads_match_a_simple_model(writes, read_wall, a, b, limit):
    engine, m = make()
    model = {}  # (key, ts) -> value or None
    for key, wall, logical, value in writes:
        t = ts(wall, logical)
        write(engine, lambda batch: m.put(batch, key, t, value) if value is not None else m.delete(batch, key, t))
        model[(key, t)] = value
    read_ts = ts(read_wall, 1)
    expected = {}
    for (key, t), value in sorted(model.items(), key=lambda kv: kv[0][1]):
        if t <= read_ts:
            expected[key] = value
    for key in {k for k, _ in model} | {b"zz"}:
        assert m.get(key, read_ts) == expected.get(key)
    start, end = min(a, b), max(a, b)
    live = sorted((k, v) for k, v in expected.items() if v is not None and start <= k < end)
    assert m.scan(start, end, read_ts, limit) == live[:limit]
    assert m.scan(start, end, ZERO) == []
