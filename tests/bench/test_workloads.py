"""bench.workloads: YCSB's core workloads A-F and CoreWorkload's operation stream."""

from __future__ import annotations

import collections
import dataclasses

import pytest

from bench.generators import build_key_name, fnvhash64
from bench.workloads import (
    INSERT,
    READ,
    READ_MODIFY_WRITE,
    SCAN,
    UPDATE,
    WORKLOADS,
    CoreWorkload,
    decode_record,
    encode_record,
    record_key,
    table_end_key,
    workload_preset,
)

RECORDS = 1000

# (read, update, insert, scan, read-modify-write, distribution) from YCSB's workloads/workloada..f
YCSB_WORKLOAD_FILES = {
    "a": (0.5, 0.5, 0.0, 0.0, 0.0, "zipfian"),
    "b": (0.95, 0.05, 0.0, 0.0, 0.0, "zipfian"),
    "c": (1.0, 0.0, 0.0, 0.0, 0.0, "zipfian"),
    "d": (0.95, 0.0, 0.05, 0.0, 0.0, "latest"),
    "e": (0.0, 0.0, 0.05, 0.95, 0.0, "zipfian"),
    "f": (0.5, 0.0, 0.0, 0.0, 0.5, "zipfian"),
}


def _mix(workload):
    return dict(
        zip(
            (READ, UPDATE, INSERT, SCAN, READ_MODIFY_WRITE),
            (
                workload.read_proportion,
                workload.update_proportion,
                workload.insert_proportion,
                workload.scan_proportion,
                workload.read_modify_write_proportion,
            ),
        )
    )


@pytest.mark.parametrize("name", sorted(YCSB_WORKLOAD_FILES))
def test_presets_match_the_ycsb_workload_files(name):
    w = WORKLOADS[name]
    *proportions, distribution = YCSB_WORKLOAD_FILES[name]
    assert tuple(_mix(w).values()) == tuple(proportions)
    assert w.request_distribution == distribution
    assert (w.field_count, w.field_length, w.insert_order) == (10, 100, "hashed")
    assert w.read_all_fields is True and w.write_all_fields is False
    assert w.table == "usertable"
    if name == "e":
        assert (w.max_scan_length, w.scan_length_distribution) == (100, "uniform")


def test_workload_preset_accepts_names_and_overrides():
    assert workload_preset("workloadA", record_count=5).record_count == 5
    assert workload_preset("f").name == "f"
    with pytest.raises(ValueError):
        workload_preset("g")


@pytest.mark.parametrize("name", sorted(YCSB_WORKLOAD_FILES))
def test_operation_mix_follows_the_proportions(name):
    n = 20_000
    core = CoreWorkload(workload_preset(name, record_count=RECORDS), seed=1, operation_count=n)
    ops = []
    for _ in range(n):
        op = core.next_op()
        ops.append(op)
        if op.kind == INSERT:
            core.acknowledge_insert(op)
    counts = collections.Counter(op.kind for op in ops)
    for kind, proportion in _mix(core.workload).items():
        assert counts[kind] / n == pytest.approx(proportion, abs=0.015), kind


def test_zipfian_reads_stay_within_the_loaded_keys_and_favour_a_few():
    core = CoreWorkload(workload_preset("c", record_count=RECORDS), seed=2, operation_count=10_000)
    loaded = {build_key_name(i) for i in range(RECORDS)}
    keys = collections.Counter(core.next_op().key for _ in range(10_000))
    assert set(keys) <= loaded
    top = keys.most_common(1)[0]
    # YCSB's keyspace is 0..recordcount inclusive (recordcount + 1 items, the last one
    # never loaded and redrawn); the zipfian's item 0 lands on fnvhash64(0) % 1001.
    assert top[0] == build_key_name(fnvhash64(0) % (RECORDS + 1))
    assert top[1] > 10_000 / 26.47 - 100, "the hottest key gets ~1/ZETAN of the requests"


def test_zipfian_keyspace_includes_the_expected_new_keys():
    core = CoreWorkload(workload_preset("e", record_count=RECORDS), seed=3, operation_count=10_000)
    # YCSB: ScrambledZipfianGenerator(0, recordcount + int(opcount * insertproportion * 2.0)).
    assert core.key_chooser.item_count == RECORDS + 1000 + 1


def test_load_ops_insert_every_record_with_all_fields():
    core = CoreWorkload(workload_preset("a", record_count=50), seed=4)
    ops = [core.next_load_op() for _ in range(50)]
    assert [op.keynum for op in ops] == list(range(50))
    assert [op.key for op in ops] == [build_key_name(i) for i in range(50)]
    for op in ops:
        assert op.kind == INSERT
        assert sorted(op.values) == [f"field{i}" for i in range(10)]
        assert all(len(v) == 100 and all(0x20 <= b <= 0x5F for b in v) for v in op.values.values())


def test_updates_write_one_field_and_the_record_keeps_every_field():
    core = CoreWorkload(workload_preset("a", record_count=RECORDS), seed=5)
    update = next(op for op in iter(core.next_op, None) if op.kind == UPDATE)
    assert len(update.values) == 1
    (name, value), = update.values.items()
    record = core.full_record_for_update(update)
    assert sorted(record) == [f"field{i}" for i in range(10)]
    assert record[name] == value
    assert all(len(v) == 100 for v in record.values())


def test_read_modify_write_reads_all_fields_and_writes_one():
    core = CoreWorkload(workload_preset("f", record_count=RECORDS), seed=6)
    rmw = next(op for op in iter(core.next_op, None) if op.kind == READ_MODIFY_WRITE)
    assert rmw.fields is None  # readallfields=true
    assert len(rmw.values) == 1


def test_scan_lengths_are_uniform_between_one_and_max_scan_length():
    core = CoreWorkload(workload_preset("e", record_count=RECORDS), seed=7, operation_count=10_000)
    lengths = []
    for _ in range(10_000):
        op = core.next_op()
        if op.kind == SCAN:
            lengths.append(op.scan_length)
        else:
            core.acknowledge_insert(op)
    assert min(lengths) == 1 and max(lengths) == 100
    assert sum(lengths) / len(lengths) == pytest.approx(50.5, abs=1.5)


def test_transaction_inserts_continue_after_the_loaded_records():
    core = CoreWorkload(workload_preset("d", record_count=RECORDS), seed=8)
    inserts = []
    while len(inserts) < 5:
        op = core.next_op()
        if op.kind == INSERT:
            inserts.append(op)
    assert [op.keynum for op in inserts] == [RECORDS + i for i in range(5)]
    assert [op.key for op in inserts] == [build_key_name(RECORDS + i) for i in range(5)]


def test_latest_reads_favour_the_newest_acknowledged_insert():
    core = CoreWorkload(workload_preset("d", record_count=RECORDS), seed=9)
    insert = next(op for op in iter(core.next_op, None) if op.kind == INSERT)
    reads = [op for op in (core.next_op() for _ in range(2000)) if op.kind == READ]
    assert all(op.keynum < insert.keynum for op in reads), "unacknowledged keys are never read"
    core.acknowledge_insert(insert)
    reads = [op for op in (core.next_op() for _ in range(4000)) if op.kind == READ]
    newest = collections.Counter(op.keynum for op in reads).most_common(1)[0][0]
    assert newest == insert.keynum


def test_the_stream_is_a_function_of_the_seed():
    def stream(seed):
        core = CoreWorkload(workload_preset("a", record_count=RECORDS), seed=seed)
        return [dataclasses.astuple(core.next_op()) for _ in range(300)]

    assert stream(10) == stream(10)
    assert stream(10) != stream(11)


def test_record_encoding_and_keys():
    record = {"field0": b"x" * 100, "field1": b"y" * 100}
    assert decode_record(encode_record(record)) == record
    assert record_key("usertable", "user42") == b"usertable/user42"
    end = table_end_key("usertable")
    assert end == b"usertable0"
    assert record_key("usertable", "user" + "9" * 20) < end
    assert b"usertable/\xff\xff" < end < b"usertable1"
