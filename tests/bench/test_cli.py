"""`spanlite bench`: flag validation, split points, and end-to-end runs on both cluster kinds.

The command is exercised through a parser built like cluster/cli.py builds it
(`bench.cli.build_parser`, the `bench` command on a `spanlite` parser), in-process for
the embedded cluster and as `python -m bench.cli` processes for the multi-process cluster,
so `bench cluster start` is shown to leave its nodes running after it exits.
"""

from __future__ import annotations

import bisect
import json
import socket
import subprocess
import sys
from contextlib import asynccontextmanager

import pytest

from bench import cli, process_cluster
from bench.generators import build_key_name
from bench.workloads import record_key
from tests.bench.test_runner import FakeKV

BENCH = [sys.executable, "-m", "bench.cli", "bench"]
COMMAND_TIMEOUT_S = 60


def run_bench(argv: list[str]) -> int:
    """Parse and run `spanlite bench ...` in this process; argparse errors become exit code 2."""
    try:
        args = cli.build_parser().parse_args(["bench", *argv])
    except SystemExit as e:
        return e.code
    return cli.cmd_bench(args)


def bench_process(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(BENCH + list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


YCSB_OK = ["--workload", "a", "--records", "10", "--operations", "10", "--concurrency", "2"]


# ---------------------------------------------------------------------------------------
# flag validation


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (YCSB_OK, "give exactly one of --host HOST:PORT[,...] or --embedded"),
        (["--embedded", "--host", "127.0.0.1:1", *YCSB_OK], "not allowed with argument"),
        (["--embedded", *YCSB_OK, "--duration", "5"], "not allowed with argument"),
        (["--embedded", "--workload", "a", "--records", "10", "--concurrency", "2"],
         "the run phase needs --operations N or --duration S"),
        (["--embedded", *YCSB_OK[:1], "g", *YCSB_OK[2:]], "invalid choice: 'g'"),
        (["--host", "127.0.0.1:1", "--nodes", "3", *YCSB_OK], "--nodes sizes an --embedded cluster"),
        (["--host", "nohostport", *YCSB_OK], "HOST:PORT"),
        (["--embedded", "--nodes", "0", *YCSB_OK], "--nodes must be between 1 and 9"),
        (["--embedded", *YCSB_OK[:-1], "0"], "--concurrency must be between 1 and"),
        (["--embedded", *YCSB_OK, "--splits", "-1"], "--splits must be between 0 and"),
        (["--embedded", "--workload", "a", "--records", "0", "--operations", "1", "--concurrency", "1"],
         "--records must be at least 1"),
        (["--embedded", "--workload", "a", "--records", "5", "--duration", "0", "--concurrency", "1"],
         "--duration must be positive"),
        (["--embedded", *YCSB_OK, "--max-offset", "soon"], "invalid duration"),
        (["--embedded", *YCSB_OK, "--json", "/nonexistent-dir/a.json"], "directory /nonexistent-dir does not exist"),
        (["--embedded", *YCSB_OK, "--processes", "2"], "--processes needs --host"),
        (["--host", "127.0.0.1:1", *YCSB_OK, "--processes", "3"], "--processes 3 exceeds --concurrency 2"),
        (["--host", "127.0.0.1:1", *YCSB_OK, "--processes", "0"], "--processes must be between 1 and"),
    ],
)
def test_bad_ycsb_flags_are_usage_errors(argv, message, capsys):
    assert run_bench(["ycsb", *argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_validation_also_guards_hand_built_arguments(capsys):
    args = cli.build_parser().parse_args(["bench", "ycsb", "--embedded", *YCSB_OK])
    args.workload = "z"
    assert cli.cmd_bench(args) == cli.EXIT_USAGE
    assert "--workload must be one of a, b, c, d, e, f" in capsys.readouterr().err


def test_a_load_phase_needs_no_operation_count():
    args = cli.build_parser().parse_args(
        ["bench", "ycsb", "--embedded", "--workload", "B", "--records", "5", "--concurrency", "1", "--phase", "load"])
    cli.validate_ycsb_args(args)  # No UsageError.
    assert args.workload == "b"


def test_duration_takes_seconds_or_a_duration():
    assert cli._seconds("2.5") == 2.5
    assert cli._seconds("2m") == 120.0


def test_unreachable_host_is_exit_code_1(monkeypatch, capsys):
    monkeypatch.setattr(cli, "PREFLIGHT_TIMEOUT_S", 1.0)
    port = process_cluster.free_ports(1)[0]
    assert run_bench(["ycsb", "--host", f"127.0.0.1:{port}", *YCSB_OK]) == cli.EXIT_FAILURE
    assert f"cannot reach the cluster at 127.0.0.1:{port}" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# split points


def test_split_points_are_in_byte_order_inside_the_table():
    points = cli.split_points(7)
    assert len(points) == 7
    assert points == sorted(points)
    assert all(record_key("usertable", "user") < p < b"usertable0" for p in points)
    assert cli.split_points(0) == []


def test_split_points_balance_the_hashed_keys():
    keys = sorted(record_key("usertable", build_key_name(n)) for n in range(10_000))
    points = cli.split_points(4)
    bounds = [0] + [bisect.bisect_left(keys, p) for p in points] + [len(keys)]
    per_range = [hi - lo for lo, hi in zip(bounds, bounds[1:])]
    assert all(1_600 <= count <= 2_400 for count in per_range), per_range  # 2,000 each, +-20%


def test_splits_without_admin_split_print_a_note(capsys):
    class NoSplits:
        pass

    assert process_cluster.run_trio(cli._pre_split, NoSplits(), 3) == 0
    assert "--splits 3 ignored" in capsys.readouterr().err


def test_splits_call_admin_split_at_each_point():
    class Splitter:
        def __init__(self) -> None:
            self.keys: list[bytes] = []

        async def admin_split(self, key: bytes) -> None:
            self.keys.append(key)

    db = Splitter()
    assert process_cluster.run_trio(cli._pre_split, db, 5) == 5
    assert db.keys == cli.split_points(5)


# ---------------------------------------------------------------------------------------
# bench cluster: errors that need no running cluster


def test_stop_and_status_without_a_cluster(tmp_path, capsys):
    assert run_bench(["cluster", "stop", "--dir", str(tmp_path)]) == cli.EXIT_FAILURE
    assert "nothing to stop" in capsys.readouterr().err
    assert run_bench(["cluster", "status", "--dir", str(tmp_path)]) == cli.EXIT_FAILURE
    assert "no cluster in" in capsys.readouterr().err


def test_start_on_a_port_in_use(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = run_bench(["cluster", "start", "--nodes", "1", "--dir", str(tmp_path), "--base-port", str(port)])
    assert code == cli.EXIT_FAILURE
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    assert not (tmp_path / "cluster.json").exists()  # Nothing was started.


# ---------------------------------------------------------------------------------------
# the ycsb command's plumbing, against the in-memory fake client of test_runner


class FakeCluster(FakeKV):
    async def status(self) -> dict:
        return {"nodes": [{"node_id": 1}, {"node_id": 2}], "ranges": [{"range_id": 1}, {"range_id": 2}]}


def test_failed_operations_are_reported_not_an_exit_code(monkeypatch, tmp_path, capsys):
    fake = FakeCluster(fail_every_nth_get=10)

    @asynccontextmanager
    async def open_fake(args):
        yield fake

    monkeypatch.setattr(cli, "_open_cluster", open_fake)
    report_file = tmp_path / "c.json"
    code = run_bench(["ycsb", "--host", "127.0.0.1:1", "--workload", "c", "--records", "50", "--operations", "200",
                      "--concurrency", "4", "--phase", "both", "--seed", "7", "--max-offset", "250ms",
                      "--json", str(report_file)])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK
    assert out.startswith("# YCSB load phase\n[OVERALL], RunTime(ms), ")
    assert "[READ], Return=ERROR, " in out
    assert "run: " in err and "operations failed; first errors:" in err and "injected get failure" in err

    result = json.loads(report_file.read_text())
    assert result["errors"]["count"] == fake.failed_gets > 0
    assert result["settings"] == {
        "cluster": "hosts", "hosts": ["127.0.0.1:1"], "nodes": 2, "ranges": 2, "max_offset": "250ms",
        "durability": "fsync", "workload": "c", "phase": "both", "records": 50, "operations": 200,
        "duration_s": None, "concurrency": 4, "processes": 1, "splits": 0, "seed": 7,
    }
    assert result["load"]["operations"] == 50


# ---------------------------------------------------------------------------------------
# end to end


def _assert_clean_report(text: str, ops: tuple[str, ...]) -> None:
    assert "[OVERALL], RunTime(ms), " in text
    assert "[OVERALL], Throughput(ops/sec), " in text
    for op in ops:
        assert f"[{op}], Operations, " in text
        assert f"[{op}], 99thPercentileLatency(us), " in text
        assert f"[{op}], Return=OK, " in text
    assert "Return=ERROR" not in text


def test_embedded_ycsb_a_end_to_end(tmp_path, capsys):
    report_file = tmp_path / "a.json"
    code = run_bench(["ycsb", "--embedded", "--workload", "a", "--records", "200", "--operations", "500",
                      "--concurrency", "8", "--json", str(report_file)])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK, err
    load_text, run_text = out.split("# YCSB run phase")
    _assert_clean_report(load_text, ("INSERT",))
    _assert_clean_report(run_text, ("READ", "UPDATE"))
    assert "[INSERT], Operations, 200" in load_text
    assert "load: " in err and "run: " in err and "current ops/sec" in err  # Progress, per phase.

    result = json.loads(report_file.read_text())
    assert result["operations"] == 500
    assert result["errors"]["count"] == 0 and result["load"]["errors"]["count"] == 0
    settings = result["settings"]
    assert settings["nodes"] == 3 and settings["ranges"] >= 1
    assert settings["max_offset"] == "20ms" and settings["durability"] == "fsync"
    assert settings["cluster"] == "embedded"
    assert (settings["workload"], settings["records"], settings["concurrency"], settings["seed"]) == ("a", 200, 8, 1)


@pytest.fixture
def cluster_dir(tmp_path):
    """A DIR for `bench cluster start`; whatever still runs at the end is stopped."""
    directory = tmp_path / "cluster"
    yield directory
    record = process_cluster.read_record(directory)
    if record is not None:
        process_cluster.stop_nodes(process_cluster.live_nodes(record))


def test_process_cluster_start_ycsb_stop(cluster_dir):
    started = bench_process("cluster", "start", "--nodes", "3", "--dir", str(cluster_dir))
    assert started.returncode == 0, started.stderr
    addresses = started.stdout.split()
    assert len(addresses) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
    record = process_cluster.read_record(cluster_dir)
    assert record.addresses == addresses
    assert len(process_cluster.live_nodes(record)) == 3  # They outlived `start`.

    again = bench_process("cluster", "start", "--nodes", "3", "--dir", str(cluster_dir))
    assert again.returncode == 1 and "already has a running cluster" in again.stderr

    status = bench_process("cluster", "status", "--dir", str(cluster_dir))
    assert status.returncode == 0 and status.stdout.count(" alive") == 3

    ycsb = bench_process("ycsb", "--host", ",".join(addresses), "--workload", "b", "--records", "100",
                         "--operations", "300", "--concurrency", "8")
    assert ycsb.returncode == 0, ycsb.stderr
    _assert_clean_report(ycsb.stdout.split("# YCSB run phase")[1], ("READ",))

    # Several client processes: their operations and histograms add up in one report.
    json_path = cluster_dir / "d.json"
    multi = bench_process("ycsb", "--host", ",".join(addresses), "--workload", "d", "--records", "100",
                          "--operations", "301", "--concurrency", "8", "--processes", "3", "--phase", "run",
                          "--json", str(json_path))
    assert multi.returncode == 0, multi.stderr
    _assert_clean_report(multi.stdout, ("READ", "INSERT"))
    figures = json.loads(json_path.read_text())
    assert figures["operations"] == 301 and figures["settings"]["processes"] == 3
    counted = sum(m["operations"] for name, m in figures["measurements"].items() if not name.endswith("-FAILED"))
    assert counted == 301

    stopped = bench_process("cluster", "stop", "--dir", str(cluster_dir))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.count("stopped node") == 3
    assert process_cluster.live_nodes(record) == []
    nothing = bench_process("cluster", "stop", "--dir", str(cluster_dir))
    assert nothing.returncode == 1 and "nothing to stop" in nothing.stderr


def test_fsync_measures_each_kind_of_sync(tmp_path, capsys):
    report_file = tmp_path / "fsync.json"
    code = run_bench(["fsync", "--dir", str(tmp_path), "--count", "5", "--json", str(report_file)])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK, err
    for name in ("os.write 4 KiB + fdatasync", "rocksdict put, sync=True", "rocksdict 100-put batch, sync=True",
                 "rocksdict put + flush_wal(sync)"):
        assert name in out
    figures = json.loads(report_file.read_text())
    assert [f["count"] for f in figures] == [5, 5, 5, 5]
    assert all(0 < f["median_ms"] <= f["p99_ms"] <= f["max_ms"] for f in figures)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fsync.json"]  # the scratch directory is gone


def test_fsync_needs_an_existing_directory(tmp_path, capsys):
    assert run_bench(["fsync", "--dir", str(tmp_path / "missing")]) == cli.EXIT_USAGE
    assert "is not a directory" in capsys.readouterr().err
