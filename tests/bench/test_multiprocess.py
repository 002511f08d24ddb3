"""Several YCSB client processes: shares of the work, disjoint inserts, exact merging."""

from __future__ import annotations

import dataclasses

import pytest

from bench.multiprocess import _Merger, split_evenly, worker_specs
from bench.report import Measurements, STATUS_ERROR, STATUS_OK, encode_histograms
from bench.workloads import INSERT, READ, CoreWorkload, workload_preset


@pytest.mark.parametrize(("total", "parts"), [(0, 1), (10, 3), (64, 4), (7, 7), (5, 8)])
def test_split_evenly(total, parts):
    shares = split_evenly(total, parts)
    assert sum(shares) == total and len(shares) == parts
    assert max(shares) - min(shares) <= 1 and shares == sorted(shares, reverse=True)


def test_worker_specs_share_operations_and_concurrency():
    specs = worker_specs(["127.0.0.1:1"], "a", records=100, operations=1001, duration_s=None,
                         concurrency=64, seed=7, processes=3, progress_interval_s=1.0)
    assert [s.concurrency for s in specs] == [22, 21, 21]
    assert sum(s.operations for s in specs) == 1001
    assert [s.client_index for s in specs] == [0, 1, 2] and {s.client_count for s in specs} == {3}
    assert len({s.seed for s in specs}) == 3  # distinct operation streams


def _inserted_and_read_keys(client_index: int, client_count: int, operations: int):
    spec = dataclasses.replace(workload_preset("d"), record_count=100)
    workload = CoreWorkload(spec, seed=f"1.{client_index}", operation_count=operations,
                            client_index=client_index, client_count=client_count)
    inserted, read = set(), set()
    for _ in range(operations):
        op = workload.next_op()
        if op.kind == INSERT:
            inserted.add(op.key)
            workload.acknowledge_insert(op)
        else:
            assert op.kind == READ
            read.add(op.key)
    return inserted, read


def test_client_processes_insert_disjoint_keys_and_read_only_existing_ones():
    loaded = {CoreWorkload(dataclasses.replace(workload_preset("d"), record_count=100), seed=1).key_name(k)
              for k in range(100)}
    all_inserted = []
    for index in range(3):
        inserted, read = _inserted_and_read_keys(index, 3, 2000)
        assert inserted and not (inserted & loaded)
        assert read <= loaded | inserted  # never a key no one has written
        all_inserted.append(inserted)
    assert not (all_inserted[0] & all_inserted[1]) and not (all_inserted[1] & all_inserted[2])


def test_one_client_process_keeps_the_plain_key_numbers():
    workload = CoreWorkload(workload_preset("d"), seed=1)
    assert [workload.physical_keynum(k) for k in (0, 999, 1000, 1001)] == [0, 999, 1000, 1001]


def _measurements(latencies: list[int], errors: int) -> Measurements:
    m = Measurements(track_intervals=True)
    for latency in latencies:
        m.record("READ", latency, STATUS_OK)
    for _ in range(errors):
        m.record("UPDATE", 500, STATUS_ERROR)
        m.note_error("UPDATE: Unavailable: no")
    return m


def test_merged_measurements_equal_one_measurement_of_everything():
    parts = [_measurements([100, 200, 300], 1), _measurements([5000, 7000], 2)]
    merged = Measurements()
    for part in parts:
        merged.add_wire(part.to_wire())
    together = _measurements([100, 200, 300, 5000, 7000], 3)
    for name in ("READ", "UPDATE", "UPDATE-FAILED"):
        assert merged.by_name[name].summary() == together.by_name[name].summary(), name
    assert merged.error_count == 3 and merged.error_samples == ["UPDATE: Unavailable: no"]


def test_merger_sums_progress_and_results():
    lines = []
    merger = _Merger(2, lines.append)
    part = _measurements([100, 200], 0)
    merger.handle(("progress", 0, 2, encode_histograms(part.take_interval())))
    merger.handle(("progress", 1, 3, encode_histograms({})))
    merger.emit_progress()
    assert "5 operations" in lines[-1] and "[READ: Count=2" in lines[-1]
    merger.handle(("done", 0, 2, 1, part.to_wire()))
    assert merger.end_ns is None
    merger.handle(("done", 1, 0, 1, Measurements().to_wire()))
    assert merger.end_ns is not None and merger.operations == 2
    with pytest.raises(Exception, match="client process 1 failed"):
        merger.handle(("failed", 1, "Traceback ..."))
