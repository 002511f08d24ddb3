"""bench.runner and bench.report against an in-memory fake of the spanlite client."""

from __future__ import annotations

import bisect
import json
import re

import pytest
import trio

from bench.generators import build_key_name
from bench.report import java_double, ordinal
from bench.runner import run_ycsb
from bench.workloads import WORKLOADS, record_key, workload_preset


class FakeKV:
    """A dict with the client's async API; yields to trio on every call so tasks interleave."""

    def __init__(self, *, fail_every_nth_get: int = 0, fail_put_keys: frozenset[bytes] = frozenset()):
        self.data: dict[bytes, bytes] = {}
        self.sorted_keys: list[bytes] = []
        self.fail_every_nth_get = fail_every_nth_get
        self.fail_put_keys = fail_put_keys
        self.gets = 0
        self.failed_gets = 0
        self.failed_puts = 0

    async def put(self, key: bytes, value: bytes) -> None:
        await trio.sleep(0)
        if key in self.fail_put_keys:
            self.failed_puts += 1
            raise ConnectionError("injected put failure")
        if key not in self.data:
            bisect.insort(self.sorted_keys, key)
        self.data[key] = value

    async def get(self, key: bytes) -> bytes | None:
        await trio.sleep(0)
        self.gets += 1
        if self.fail_every_nth_get and self.gets % self.fail_every_nth_get == 0:
            self.failed_gets += 1
            raise TimeoutError("injected get failure")
        return self.data.get(key)

    async def delete(self, key: bytes) -> None:
        await trio.sleep(0)
        if self.data.pop(key, None) is not None:
            self.sorted_keys.remove(key)

    async def scan(self, start: bytes, end: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        await trio.sleep(0)
        lo = bisect.bisect_left(self.sorted_keys, start)
        hi = bisect.bisect_left(self.sorted_keys, end)
        if limit is not None:
            hi = min(hi, lo + limit)
        return [(k, self.data[k]) for k in self.sorted_keys[lo:hi]]


class FakeTxn:
    def __init__(self, kv: FakeKV) -> None:
        self.kv = kv
        self.writes: dict[bytes, bytes] = {}

    async def get(self, key: bytes) -> bytes | None:
        return self.writes.get(key) or await self.kv.get(key)

    async def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value


class FakeTxnKV(FakeKV):
    """FakeKV plus `transaction()`: buffered writes applied on a clean exit."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.committed = 0
        self.aborted = 0

    def transaction(self):
        kv = self

        class _Context:
            async def __aenter__(self):
                self.txn = FakeTxn(kv)
                return self.txn

            async def __aexit__(self, exc_type, exc, tb):
                if exc_type is not None:
                    kv.aborted += 1
                    return False
                for key, value in self.txn.writes.items():
                    await kv.put(key, value)
                kv.committed += 1
                return False

        return _Context()


def loaded_keys(n: int) -> set[bytes]:
    return {record_key("usertable", build_key_name(i)) for i in range(n)}


# ---------------------------------------------------------------------------------------
# load and run


async def test_load_inserts_every_record():
    db = FakeKV()
    report = await run_ycsb(db, WORKLOADS["a"], phase="load", records=500, concurrency=4, seed=1, load_batch=8)
    assert set(db.data) == loaded_keys(500)
    assert report.phase == "load" and report.operations == 500
    assert report.operation_count("INSERT") == 500
    assert report.return_count("INSERT", "OK") == 500


@pytest.mark.parametrize("name", ["a", "b", "c", "d", "e", "f"])
async def test_run_counts_and_proportions_per_workload(name):
    db = FakeKV()
    records, ops = 300, 2000
    workload = WORKLOADS[name]
    report = await run_ycsb(db, workload, phase="both", records=records, operations=ops, concurrency=8, seed=2)
    assert report.load_report is not None and report.load_report.operations == records
    assert report.operations == ops
    counts = {kind: report.return_count(kind, "OK") for kind in ("READ", "UPDATE", "INSERT", "SCAN", "READ-MODIFY-WRITE")}
    rmw = counts["READ-MODIFY-WRITE"]
    # As in YCSB, a read-modify-write is also timed as one READ and one UPDATE.
    top_level = {**counts, "READ": counts["READ"] - rmw, "UPDATE": counts["UPDATE"] - rmw}
    assert sum(top_level.values()) == ops
    expected = {
        "READ": workload.read_proportion,
        "UPDATE": workload.update_proportion,
        "INSERT": workload.insert_proportion,
        "SCAN": workload.scan_proportion,
        "READ-MODIFY-WRITE": workload.read_modify_write_proportion,
    }
    for kind, proportion in expected.items():
        assert top_level[kind] / ops == pytest.approx(proportion, abs=0.04), kind
    assert report.measurements.error_count == 0
    assert not any("FAILED" in name for name in report.measurements.by_name), "no failures against a healthy store"
    assert len(db.data) == records + top_level["INSERT"]


async def test_scans_stay_inside_the_table():
    db = FakeKV()
    await run_ycsb(db, WORKLOADS["e"], phase="load", records=200, concurrency=2, seed=3)
    # Rows of other tables hold bytes that are not cbor records: a scan reaching them fails.
    for key in (b"usertable0", b"usertable1/x", b"usertablf", b"zzz"):
        db.data[key] = b"\xff not a record"
        bisect.insort(db.sorted_keys, key)
    report = await run_ycsb(db, WORKLOADS["e"], phase="run", records=200, operations=1000, concurrency=4, seed=3)
    assert report.return_count("SCAN", "OK") == report.operation_count("SCAN") > 900
    assert report.return_count("SCAN", "ERROR") == 0


async def test_errors_are_counted_per_operation_and_never_stop_the_run():
    db = FakeKV()
    await run_ycsb(db, WORKLOADS["c"], phase="load", records=200, concurrency=2, seed=4)
    db.fail_every_nth_get = 7
    report = await run_ycsb(db, WORKLOADS["c"], phase="run", records=200, operations=700, concurrency=4, seed=4)
    assert db.failed_gets == 100
    assert report.operations == 700
    assert report.return_count("READ", "ERROR") == 100
    assert report.return_count("READ", "OK") == 600
    assert report.operation_count("READ-FAILED") == 100
    assert report.operation_count("READ") == 600
    assert report.error_samples == ["READ: TimeoutError: injected get failure"]
    text = report.to_text()
    assert "[READ], Return=ERROR, 100\n" in text
    assert "[READ-FAILED], Operations, 100\n" in text


async def test_load_errors_are_counted():
    bad = frozenset(record_key("usertable", build_key_name(i)) for i in (3, 30, 99))
    db = FakeKV(fail_put_keys=bad)
    report = await run_ycsb(db, WORKLOADS["a"], phase="load", records=100, concurrency=3, seed=5, load_batch=4)
    assert report.operations == 100
    assert report.return_count("INSERT", "ERROR") == 3
    assert report.return_count("INSERT", "OK") == 97
    assert len(db.data) == 97


async def test_reads_of_missing_records_are_not_found():
    db = FakeKV()
    report = await run_ycsb(db, WORKLOADS["c"], phase="run", records=100, operations=200, concurrency=2, seed=6)
    assert report.return_count("READ", "NOT_FOUND") == 200
    assert report.operation_count("READ-FAILED") == 200
    assert "[READ], Return=NOT_FOUND, 200\n" in report.to_text()


async def test_read_modify_write_runs_in_a_transaction_when_the_client_has_them():
    db = FakeTxnKV()
    await run_ycsb(db, WORKLOADS["f"], phase="load", records=200, concurrency=2, seed=7)
    before = dict(db.data)
    report = await run_ycsb(db, WORKLOADS["f"], phase="run", records=200, operations=600, concurrency=4, seed=7)
    rmw = report.return_count("READ-MODIFY-WRITE", "OK")
    assert rmw > 200 and db.committed == rmw and db.aborted == 0
    assert db.data != before


async def test_a_failed_read_modify_write_step_aborts_its_transaction():
    db = FakeTxnKV()
    await run_ycsb(db, WORKLOADS["f"], phase="load", records=200, concurrency=2, seed=8)
    db.fail_every_nth_get = 5
    report = await run_ycsb(db, WORKLOADS["f"], phase="run", records=200, operations=500, concurrency=4, seed=8)
    rmw_errors = report.return_count("READ-MODIFY-WRITE", "ERROR")
    assert rmw_errors > 0 and db.aborted == rmw_errors
    assert report.return_count("READ", "ERROR") == db.failed_gets
    assert report.operation_count("READ-MODIFY-WRITE") == report.return_count("READ-MODIFY-WRITE", "OK") + rmw_errors


async def test_same_seed_same_database_with_one_client():
    async def final_state(seed):
        db = FakeKV()
        await run_ycsb(db, WORKLOADS["d"], phase="both", records=100, operations=400, concurrency=1, seed=seed, load_batch=1)
        return db.data

    assert await final_state(9) == await final_state(9)
    assert await final_state(9) != await final_state(10)


async def test_a_timed_run_stops_at_the_deadline():
    db = FakeKV()
    await run_ycsb(db, WORKLOADS["b"], phase="load", records=100, concurrency=2, seed=11)
    report = await run_ycsb(db, WORKLOADS["b"], phase="run", records=100, duration_s=0.2, concurrency=4, seed=11)
    assert report.operations > 100
    assert 200 <= report.runtime_ms < 2000


async def test_progress_lines():
    db = FakeKV()
    lines: list[str] = []
    await run_ycsb(
        db, WORKLOADS["a"], phase="both", records=100, duration_s=0.25, concurrency=4, seed=12,
        progress=lines.append, progress_interval_s=0.05,
    )
    assert len(lines) >= 4
    pattern = re.compile(
        r"^\d+ sec: \d+ operations; \d+\.\d current ops/sec;"
        r"( \[(READ|UPDATE|INSERT)(-FAILED)?: Count=\d+, 50=\d+, 99=\d+\])*$"
    )
    for line in lines:
        assert pattern.match(line), line
    assert any("[READ: Count=" in line and "[UPDATE: Count=" in line for line in lines)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"phase": "run", "records": 10, "concurrency": 1},  # neither operations nor duration
        {"phase": "run", "records": 10, "operations": 5, "concurrency": 0},
        {"phase": "sideways", "records": 10, "operations": 5, "concurrency": 1},
        {"phase": "load", "records": 0, "concurrency": 1},
    ],
)
async def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        await run_ycsb(FakeKV(), WORKLOADS["a"], seed=0, **kwargs)


# ---------------------------------------------------------------------------------------
# report format

_NUMBER = r"\d+"
_DOUBLE = r"(\d+\.\d+(E-?\d+)?|NaN|Infinity)"
_SECTION_LINES = [
    ("Operations", _NUMBER),
    ("AverageLatency\\(us\\)", _DOUBLE),
    ("MinLatency\\(us\\)", _NUMBER),
    ("MaxLatency\\(us\\)", _NUMBER),
    ("50thPercentileLatency\\(us\\)", _NUMBER),
    ("95thPercentileLatency\\(us\\)", _NUMBER),
    ("99thPercentileLatency\\(us\\)", _NUMBER),
]


def assert_ycsb_text(text: str) -> list[str]:
    """Check YCSB's exporter layout line by line; returns the section names in order."""
    lines = text.splitlines()
    assert re.fullmatch(rf"\[OVERALL\], RunTime\(ms\), {_NUMBER}", lines[0]), lines[0]
    assert re.fullmatch(rf"\[OVERALL\], Throughput\(ops/sec\), {_DOUBLE}", lines[1]), lines[1]
    sections, i = [], 2
    while i < len(lines):
        name = re.fullmatch(r"\[([A-Z-]+)\], Operations, \d+", lines[i]).group(1)
        sections.append(name)
        for measurement, value in _SECTION_LINES:
            assert re.fullmatch(rf"\[{re.escape(name)}\], {measurement}, {value}", lines[i]), lines[i]
            i += 1
        while i < len(lines) and re.fullmatch(rf"\[{re.escape(name)}\], Return=[A-Z_]+, \d+", lines[i]):
            i += 1
    return sections


async def test_text_report_matches_ycsb_lines():
    db = FakeKV(fail_every_nth_get=9)
    report = await run_ycsb(db, WORKLOADS["f"], phase="both", records=100, operations=500, concurrency=4, seed=13)
    sections = assert_ycsb_text(report.to_text())
    assert sections == ["READ", "READ-FAILED", "UPDATE", "READ-MODIFY-WRITE"]
    assert assert_ycsb_text(report.load_report.to_text()) == ["INSERT"]
    text = report.to_text()
    assert re.search(r"^\[READ\], Return=OK, \d+$", text, re.M)
    assert re.search(r"^\[READ\], Return=ERROR, \d+$", text, re.M)
    assert re.search(r"^\[READ-MODIFY-WRITE\], Return=ERROR, \d+$", text, re.M)
    assert f"[OVERALL], RunTime(ms), {report.runtime_ms}\n" in text


async def test_json_report_has_the_figures_and_the_settings():
    db = FakeKV()
    report = await run_ycsb(db, WORKLOADS["a"], phase="both", records=100, operations=300, concurrency=2, seed=14)
    settings = {"nodes": 3, "ranges": 8, "max_offset": "250ms", "durability": "fsync"}
    data = json.loads(json.dumps(report.to_json(settings)))
    assert data["settings"] == settings
    assert data["phase"] == "run" and data["workload"] == "a" and data["operations"] == 300
    assert data["runtime_ms"] == report.runtime_ms
    assert data["throughput_ops_per_sec"] == pytest.approx(report.throughput_ops_per_s)
    read = data["measurements"]["READ"]
    for key in (
        "operations", "average_latency_us", "min_latency_us", "max_latency_us",
        "p50_latency_us", "p95_latency_us", "p99_latency_us", "return_codes",
    ):
        assert key in read, key
    assert read["return_codes"]["OK"] == read["operations"]
    assert data["errors"] == {"count": 0, "samples": []}
    assert data["load"]["phase"] == "load" and data["load"]["operations"] == 100


def test_java_double_and_ordinal_formatting():
    assert java_double(98.91196834817013) == "98.91196834817013"
    assert java_double(100.0) == "100.0"
    assert java_double(0.0) == "0.0"
    assert java_double(1e7) == "1.0E7"
    assert java_double(12345678.9) == "1.23456789E7"
    assert java_double(0.0001) == "1.0E-4"
    assert java_double(float("nan")) == "NaN"
    assert java_double(float("inf")) == "Infinity"
    assert [ordinal(p) for p in (1, 2, 3, 11, 12, 13, 21, 50, 95, 99)] == [
        "1st", "2nd", "3rd", "11th", "12th", "13th", "21st", "50th", "95th", "99th",
    ]
    assert ordinal(99.9) == "99.9"


def test_presets_can_be_overridden_for_the_runner():
    assert workload_preset("e", max_scan_length=10).max_scan_length == 10
