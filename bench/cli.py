"""The `spanlite bench` command: YCSB runs and a multi-process cluster to run them against.

    spanlite bench ycsb (--host HOST:PORT[,...] | --embedded [--nodes N])
                        --workload a..f --records N (--operations N | --duration S)
                        --concurrency C [--splits K] [--phase load|run|both]
                        [--json FILE] [--seed S] [--max-offset D] [--processes P]
    spanlite bench fsync --dir DIR [--count N]
    spanlite bench cluster start --nodes N --dir DIR [--base-port P] [--max-offset D]
    spanlite bench cluster stop --dir DIR
    spanlite bench cluster status --dir DIR

`cluster/cli.py` mounts this with `add_bench_parser(subparsers)` and dispatches the `bench`
command to `cmd_bench(args)`. Until then (and in tests) `python -m bench.cli bench ...` runs it.

Output contract: the YCSB text report goes to stdout (the load report first when
--phase both), progress lines and notes go to stderr. Exit codes: 0 when the benchmark ran
(failed operations are counted in the report, never turned into an exit code), 1 when the
cluster cannot be reached or an operation on the cluster's setup fails, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import trio

from bench import process_cluster
from bench.multiprocess import PROCESSES_MAX, WorkerFailed
from bench.runner import CONCURRENCY_MAX, DEFAULT_PROGRESS_INTERVAL_S
from clock.settings import DEFAULT_MAX_OFFSET_NS, format_duration, parse_duration

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

WORKLOAD_NAMES = ("a", "b", "c", "d", "e", "f")
EMBEDDED_NODES_DEFAULT = 3
EMBEDDED_NODES_MAX = 9
SPLITS_MAX = 1024
DEFAULT_SEED = 1
# How long a --host cluster gets to answer `status` before we call it unreachable.
PREFLIGHT_TIMEOUT_S = 10.0
TABLE = "usertable"

# Hashed YCSB keys are "user" + decimal fnvhash64(keynum), a value in [0, 2**63). Keys
# compare as byte strings, not numbers, so split points spaced evenly over [0, 2**63)
# would come out of order ("922..." sorts after "1000..."). 89% of hashes have 19
# digits, i.e. lie in [10**18, 2**63); spacing the splits evenly over that interval and
# writing them with 19 digits puts them in byte order and balances those keys exactly.
# Shorter hashes interleave by their leading digits, spread the same way to within ~1%.
HASH_SPLIT_MIN = 10**18
HASH_SPLIT_MAX = 2**63 - 1


class UsageError(Exception):
    """A command line that parses but makes no sense: one line on stderr, exit code 2."""


class SetupError(Exception):
    """The cluster could not be reached or prepared: one line on stderr, exit code 1."""


# ---------------------------------------------------------------------------------------
# the parser


def add_bench_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `bench` (with `ycsb` and `cluster start|stop|status`) to a `spanlite` parser."""
    bench = subparsers.add_parser("bench", help="YCSB benchmarks and a multi-process cluster to run them on")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="ycsb|cluster|fsync|ranges|splits|sql")
    _add_ycsb_parser(bench_sub)
    _add_cluster_parser(bench_sub)
    _add_fsync_parser(bench_sub)
    _add_scale_parsers(bench_sub)
    _add_sql_parser(bench_sub)
    return bench


def _add_cluster_target(parser: argparse.ArgumentParser) -> None:
    """--host of a running cluster, or --embedded [--nodes N] (what `_open_cluster` opens)."""
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--host", type=_addresses, metavar="HOST:PORT[,...]", help="a running cluster's nodes")
    target.add_argument("--embedded", action="store_true",
                        help="start a cluster in this process (disk stores, fsync on)")
    parser.add_argument("--nodes", type=int, metavar="N",
                        help=f"nodes of the --embedded cluster (default {EMBEDDED_NODES_DEFAULT})")


def _add_sql_parser(bench_sub: argparse._SubParsersAction) -> None:
    sql = bench_sub.add_parser("sql", help="latency of point SELECT and 1-row UPDATE via SQL vs the KV client")
    _add_cluster_target(sql)
    sql.add_argument("--rows", type=int, default=1000, metavar="N", help="rows in the table and KV keys (default 1000)")
    sql.add_argument("--ops", type=int, default=1000, metavar="N", help="rounds per run (default 1000)")
    sql.add_argument("--runs", type=int, default=3, metavar="R", help="runs; medians are printed (default 3)")
    sql.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S")
    sql.add_argument("--max-offset", type=_duration, default=None, metavar="D", help=argparse.SUPPRESS)
    sql.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")


def _add_scale_parsers(bench_sub: argparse._SubParsersAction) -> None:
    ranges = bench_sub.add_parser("ranges", help="idle CPU and write throughput at several range counts, side by side")
    ranges.add_argument("--dir", type=Path, required=True, metavar="DIR",
                        help="a fresh 3-node process cluster is started in DIR/N for each count N")
    ranges.add_argument("--ranges", type=_counts, default=[10, 1000], metavar="N[,N...]",
                        help="range counts to compare (default 10,1000)")
    ranges.add_argument("--duration", type=_seconds, default=20.0, metavar="S", help="write phase (default 20 s)")
    ranges.add_argument("--idle", type=_seconds, default=10.0, metavar="S", help="idle CPU sample (default 10 s)")
    ranges.add_argument("--concurrency", type=int, default=64, metavar="C")
    ranges.add_argument("--seed", type=int, default=1, metavar="S")
    ranges.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    splits = bench_sub.add_parser("splits", help="requested splits under random puts (and a kill -9), then checks")
    splits.add_argument("--dir", type=Path, required=True, metavar="DIR",
                        help="a cluster started with `spanlite bench cluster start --nodes 3 --dir DIR`")
    splits.add_argument("--splits", type=int, default=200, metavar="N")
    splits.add_argument("--puts", type=int, default=20_000, metavar="N")
    splits.add_argument("--kill-node", type=int, default=None, metavar="N", help="kill -9 node N midway, restart it")
    splits.add_argument("--seed", type=int, default=1, metavar="S")


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected range counts like 10,1000, got {text!r}") from None
    if not counts or any(not 1 <= c <= 10_000 for c in counts):
        raise argparse.ArgumentTypeError(f"range counts must be between 1 and 10000, got {text!r}")
    return counts


def _add_fsync_parser(bench_sub: argparse._SubParsersAction) -> None:
    from bench.fsync import COUNT_DEFAULT

    fsync = bench_sub.add_parser("fsync", help="measure this disk's fsync latency (fdatasync, rocksdict syncs)")
    fsync.add_argument("--dir", type=Path, required=True, metavar="DIR",
                       help="a directory on the disk to measure (a scratch subdirectory is made and removed)")
    fsync.add_argument("--count", type=int, default=COUNT_DEFAULT, metavar="N",
                       help=f"syncs per measurement (default {COUNT_DEFAULT})")
    fsync.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")


def _add_ycsb_parser(bench_sub: argparse._SubParsersAction) -> None:
    ycsb = bench_sub.add_parser("ycsb", help="run a YCSB core workload (a..f)")
    _add_cluster_target(ycsb)
    ycsb.add_argument("--workload", type=str.lower, choices=WORKLOAD_NAMES, required=True)
    ycsb.add_argument("--records", type=int, required=True, metavar="N", help="YCSB recordcount")
    amount = ycsb.add_mutually_exclusive_group()
    amount.add_argument("--operations", type=int, metavar="N", help="run phase: stop after N operations")
    amount.add_argument("--duration", type=_seconds, metavar="S",
                        help="run phase: stop after S seconds (e.g. 30, 30s, 2m)")
    ycsb.add_argument("--concurrency", type=int, required=True, metavar="C", help="concurrent clients")
    ycsb.add_argument("--splits", type=int, default=0, metavar="K",
                      help="pre-split the usertable at K evenly spaced points of the hashed key space")
    ycsb.add_argument("--phase", choices=("load", "run", "both"), default="both",
                      help="load the records, run the workload, or both (default)")
    ycsb.add_argument("--json", type=Path, metavar="FILE", help="also write the figures and settings as JSON")
    ycsb.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S",
                      help=f"seed of the operation stream (default {DEFAULT_SEED})")
    ycsb.add_argument("--processes", type=int, default=1, metavar="P",
                      help="run the run phase in P client processes, each with C/P of the concurrency "
                           "(--host only; default 1): one Python client process caps the throughput")
    ycsb.add_argument("--max-offset", type=_duration, default=None, metavar="D",
                      help="--embedded: the cluster's max clock offset; --host: recorded in the JSON "
                           f"settings (default {format_duration(DEFAULT_MAX_OFFSET_NS)})")


def _add_cluster_parser(bench_sub: argparse._SubParsersAction) -> None:
    cluster = bench_sub.add_parser("cluster", help="start/stop node processes on loopback")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True, metavar="start|stop|status")
    start = cluster_sub.add_parser("start", help="start N detached node processes; prints their addresses")
    start.add_argument("--nodes", type=int, default=3, metavar="N")
    start.add_argument("--dir", type=Path, required=True, metavar="DIR",
                       help="stores, logs and cluster.json live here")
    start.add_argument("--base-port", type=int, metavar="P", help="use ports P..P+N-1 (default: free ports)")
    start.add_argument("--max-offset", type=_duration, default=DEFAULT_MAX_OFFSET_NS, metavar="D",
                       help=f"maximum clock offset (default {format_duration(DEFAULT_MAX_OFFSET_NS)})")
    stop = cluster_sub.add_parser("stop", help="SIGTERM the nodes (SIGKILL after 10 s)")
    stop.add_argument("--dir", type=Path, required=True, metavar="DIR")
    status = cluster_sub.add_parser("status", help="which node processes are alive (exit 1 unless all)")
    status.add_argument("--dir", type=Path, required=True, metavar="DIR")


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _seconds(text: str) -> float:
    """A plain number is seconds ("30", "0.5"); anything else is a duration ("30s", "2m")."""
    try:
        return float(text)
    except ValueError:
        return _duration(text) / 1e9


def _addresses(text: str) -> list[str]:
    from cluster.transport import parse_address_list

    try:
        return parse_address_list(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# ---------------------------------------------------------------------------------------
# dispatch


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a parsed `bench` command line; returns the exit code."""
    from ranges.api import SpanliteError

    try:
        if args.bench_command == "ycsb":
            return cmd_ycsb(args)
        if args.bench_command == "fsync":
            return cmd_fsync(args)
        if args.bench_command == "ranges":
            return cmd_ranges(args)
        if args.bench_command == "splits":
            return cmd_splits(args)
        if args.bench_command == "sql":
            return cmd_sql_latency(args)
        assert args.bench_command == "cluster", f"unknown bench command {args.bench_command!r}"
        return cmd_cluster(args)
    except UsageError as e:
        print(f"error: bench {args.bench_command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (SetupError, process_cluster.ProcessClusterError, WorkerFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except SpanliteError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return EXIT_FAILURE


def cmd_ranges(args: argparse.Namespace) -> int:
    from bench import range_scale

    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {args.concurrency}")
    return range_scale.run(args.dir, args.ranges, idle_s=args.idle, duration_s=args.duration,
                           concurrency=args.concurrency, seed=args.seed, json_path=args.json)


def cmd_splits(args: argparse.Namespace) -> int:
    from bench import splits_soak

    record = process_cluster.read_record(args.dir)
    if record is None:
        raise UsageError(f"{args.dir} has no cluster: run `spanlite bench cluster start --nodes 3 --dir {args.dir}`")
    if args.kill_node is not None and not 1 <= args.kill_node <= len(record.nodes):
        raise UsageError(f"--kill-node must be a node of the cluster (1..{len(record.nodes)}), got {args.kill_node}")
    result = trio.run(lambda: splits_soak.run_soak(record.addresses, splits=args.splits, puts=args.puts,
                                                   seed=args.seed, directory=args.dir, kill_node=args.kill_node))
    print(splits_soak.report(result, args.splits, args.puts))
    return 1 if result.failures else 0


def cmd_sql_latency(args: argparse.Namespace) -> int:
    for flag, value in (("--rows", args.rows), ("--ops", args.ops), ("--runs", args.runs)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if not args.host and not args.embedded:
        raise UsageError("say where the cluster is: --host HOST:PORT[,...] or --embedded")
    process_cluster.run_trio(_sql_latency, args)
    return EXIT_OK


async def _sql_latency(args: argparse.Namespace) -> None:
    from bench import sql_latency

    async with _open_cluster(args) as db:
        await _preflight(db, args)
        await sql_latency.run(db, rows=args.rows, ops=args.ops, runs=args.runs, seed=args.seed,
                              json_path=args.json)


# ---------------------------------------------------------------------------------------
# bench ycsb


def validate_ycsb_args(args: argparse.Namespace) -> None:
    """The rules argparse cannot state; also guards callers that build `args` by hand."""
    if bool(args.host) == bool(args.embedded):
        raise UsageError("give exactly one of --host HOST:PORT[,...] or --embedded")
    if args.nodes is not None and not args.embedded:
        raise UsageError("--nodes sizes an --embedded cluster; with --host the cluster is what it is")
    if args.nodes is not None and not 1 <= args.nodes <= EMBEDDED_NODES_MAX:
        raise UsageError(f"--nodes must be between 1 and {EMBEDDED_NODES_MAX}, got {args.nodes}")
    if args.workload not in WORKLOAD_NAMES:
        raise UsageError(f"--workload must be one of a, b, c, d, e, f, got {args.workload!r}")
    if args.records < 1:
        raise UsageError(f"--records must be at least 1, got {args.records}")
    if not 1 <= args.concurrency <= CONCURRENCY_MAX:
        raise UsageError(f"--concurrency must be between 1 and {CONCURRENCY_MAX}, got {args.concurrency}")
    if not 0 <= args.splits <= SPLITS_MAX:
        raise UsageError(f"--splits must be between 0 and {SPLITS_MAX}, got {args.splits}")
    processes = getattr(args, "processes", 1)
    if not 1 <= processes <= PROCESSES_MAX:
        raise UsageError(f"--processes must be between 1 and {PROCESSES_MAX}, got {processes}")
    if processes > args.concurrency:
        raise UsageError(f"--processes {processes} exceeds --concurrency {args.concurrency}: "
                         "every client process needs at least one client")
    if processes > 1 and not args.host:
        raise UsageError("--processes needs --host: an --embedded cluster lives inside this one process")
    if args.json is not None and not args.json.parent.is_dir():
        # Checked now, not after a long run that could then not be saved.
        raise UsageError(f"--json {args.json}: directory {args.json.parent} does not exist")
    _validate_run_amount(args)


def _validate_run_amount(args: argparse.Namespace) -> None:
    if args.operations is not None and args.duration is not None:
        raise UsageError("give --operations N or --duration S, not both")
    if args.phase != "load" and args.operations is None and args.duration is None:
        raise UsageError("the run phase needs --operations N or --duration S")
    if args.operations is not None and args.operations < 1:
        raise UsageError(f"--operations must be at least 1, got {args.operations}")
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration must be positive, got {args.duration}")


def cmd_ycsb(args: argparse.Namespace) -> int:
    validate_ycsb_args(args)
    report, settings = process_cluster.run_trio(_ycsb, args)
    _print_reports(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(settings), indent=2) + "\n")
    return EXIT_OK


async def _ycsb(args: argparse.Namespace):
    async with _open_cluster(args) as db:
        nodes = await _preflight(db, args)
        splits = await _pre_split(db, args.splits)
        report = await _run_phases(db, args)
        status = await db.status()
    return report, _settings(args, nodes=nodes, splits=splits, status=status)


async def _run_phases(db, args: argparse.Namespace):
    """run_ycsb's "both", one phase at a time, so each progress line can say its phase."""
    from bench.runner import run_ycsb
    from bench.workloads import workload_preset

    workload = workload_preset(args.workload)
    common = {"records": args.records, "concurrency": args.concurrency, "seed": args.seed}
    load_report = None
    if args.phase in ("load", "both"):
        load_report = await run_ycsb(db, workload, phase="load", progress=_progress_printer("load"), **common)
        if args.phase == "load":
            return load_report
    processes = getattr(args, "processes", 1)
    if processes > 1:
        from bench.multiprocess import run_in_processes, worker_specs

        specs = worker_specs(args.host, args.workload, records=args.records, operations=args.operations,
                             duration_s=args.duration, concurrency=args.concurrency, seed=args.seed,
                             processes=processes, progress_interval_s=DEFAULT_PROGRESS_INTERVAL_S)
        report = await run_in_processes(specs, workload.name, progress=_progress_printer("run"))
    else:
        report = await run_ycsb(db, workload, phase="run", operations=args.operations, duration_s=args.duration,
                                progress=_progress_printer("run"), **common)
    report.load_report = load_report
    return report


@asynccontextmanager
async def _open_cluster(args: argparse.Namespace) -> AsyncIterator[object]:
    """A client of the --host cluster, or of an --embedded one that lives as long as it."""
    if args.host:
        from cluster.client import connect

        async with connect(args.host) as db:
            yield db
        return
    from cluster.embedded import EmbeddedCluster

    nodes = args.nodes or EMBEDDED_NODES_DEFAULT
    cluster = EmbeddedCluster(nodes=nodes, store="disk", max_offset_ns=_max_offset_ns(args))
    try:
        await cluster.__aenter__()
    except BaseException as e:
        raise _embedded_start_error(e, nodes) from None
    try:
        async with cluster.client() as db:
            yield db
    finally:
        await cluster.__aexit__(None, None, None)


def _embedded_start_error(error: BaseException, nodes: int) -> BaseException:
    """A SetupError for the failures a start can meet (ports, timeouts, the cluster's own); else `error`."""
    from ranges.api import SpanliteError

    sole = process_cluster.sole_exception(error)
    if not isinstance(sole, (OSError, trio.TooSlowError, SpanliteError)):
        return error
    return SetupError(f"the embedded {nodes}-node cluster did not start: {type(sole).__name__}: {sole}")


async def _preflight(db, args: argparse.Namespace) -> int:
    """Fail fast and clearly when the cluster does not answer; returns its node count."""
    from ranges.api import SpanliteError

    where = ",".join(args.host) if args.host else "the embedded cluster"
    try:
        with trio.fail_after(PREFLIGHT_TIMEOUT_S):
            status = await db.status()
    except (SpanliteError, trio.TooSlowError) as e:
        detail = getattr(e, "message", None) or f"no answer within {PREFLIGHT_TIMEOUT_S:.0f}s"
        raise SetupError(f"cannot reach the cluster at {where}: {detail}") from None
    return len(status["nodes"])


def split_points(splits: int, table: str = TABLE) -> list[bytes]:
    """`splits` keys spaced evenly over the hashed usertable key space, in byte order."""
    assert 0 <= splits <= SPLITS_MAX, f"splits {splits} out of range"
    span = HASH_SPLIT_MAX - HASH_SPLIT_MIN
    values = [HASH_SPLIT_MIN + span * i // (splits + 1) for i in range(1, splits + 1)]
    keys = [f"{table}/user{value:019d}".encode() for value in values]
    assert keys == sorted(set(keys)), "split points must be distinct and in byte order"
    return keys


async def _pre_split(db, splits: int) -> int:
    """Split the usertable at `split_points(splits)` if the client can; returns the splits made."""
    if splits == 0:
        return 0
    admin_split = getattr(db, "admin_split", None)
    if admin_split is None:
        print(f"note: --splits {splits} ignored: this client cannot split ranges yet (no admin_split)",
              file=sys.stderr)
        return 0
    for key in split_points(splits):
        await admin_split(key)
    print(f"pre-split {TABLE} at {splits} points", file=sys.stderr)
    return splits


def _max_offset_ns(args: argparse.Namespace) -> int:
    return DEFAULT_MAX_OFFSET_NS if args.max_offset is None else args.max_offset


def _settings(args: argparse.Namespace, *, nodes: int, splits: int, status: dict) -> dict[str, object]:
    """The cluster and run settings that go into the JSON beside the figures.

    `splits` is the pre-splits actually made; `ranges` counts the ranges at the end of the run.
    """
    max_offset_ns = status.get("max_offset_ns", _max_offset_ns(args))  # the cluster's own, once it reports it
    return {
        "cluster": "hosts" if args.host else "embedded",
        "hosts": list(args.host) if args.host else None,
        "nodes": nodes,
        "ranges": len(status["ranges"]),
        "max_offset": format_duration(max_offset_ns),
        "durability": "fsync",
        "workload": args.workload,
        "phase": args.phase,
        "records": args.records,
        "operations": args.operations,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "processes": getattr(args, "processes", 1),
        "splits": splits,
        "seed": args.seed,
    }


def _progress_printer(phase: str):
    def print_progress(line: str) -> None:
        print(f"{phase}: {line}", file=sys.stderr, flush=True)

    return print_progress


def _print_reports(report) -> None:
    if report.load_report is not None:
        print("# YCSB load phase")
        sys.stdout.write(report.load_report.to_text())
        print("\n# YCSB run phase")
    sys.stdout.write(report.to_text())
    sys.stdout.flush()
    _print_error_summary(report)


def _print_error_summary(report) -> None:
    # The counts are in the report already; the messages say why, which the report cannot.
    for phase_report in (report.load_report, report):
        if phase_report is None or phase_report.measurements.error_count == 0:
            continue
        count = phase_report.measurements.error_count
        print(f"{phase_report.phase}: {count} operations failed; first errors:", file=sys.stderr)
        for sample in phase_report.error_samples:
            print(f"  {sample}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# bench fsync


def cmd_fsync(args: argparse.Namespace) -> int:
    from bench.fsync import COUNT_MAX, measure

    if not args.dir.is_dir():
        raise UsageError(f"--dir {args.dir} is not a directory")
    if not 1 <= args.count <= COUNT_MAX:
        raise UsageError(f"--count must be between 1 and {COUNT_MAX}, got {args.count}")
    if args.json is not None and not args.json.parent.is_dir():
        raise UsageError(f"--json {args.json}: directory {args.json.parent} does not exist")
    results = measure(str(args.dir), args.count)
    print(f"sync latency in {args.dir.resolve()} ({args.count} syncs each, one thread, back to back)")
    for figures in results:
        print(figures.line())
    if args.json is not None:
        args.json.write_text(json.dumps([f.to_json() for f in results], indent=2) + "\n")
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# bench cluster


def cmd_cluster(args: argparse.Namespace) -> int:
    directory = args.dir.resolve()
    if args.cluster_command == "start":
        return _cluster_start(args, directory)
    if args.cluster_command == "stop":
        return _cluster_stop(directory)
    assert args.cluster_command == "status", f"unknown cluster command {args.cluster_command!r}"
    return _cluster_status(directory)


def _cluster_start(args: argparse.Namespace, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    record = process_cluster.start_cluster(directory, args.nodes, base_port=args.base_port,
                                           max_offset_ns=args.max_offset)
    for address in record.addresses:
        print(address)
    print(f"{len(record.nodes)} nodes serving (logs in {directory}/node*/node.log); "
          f"stop with: spanlite bench cluster stop --dir {directory}", file=sys.stderr)
    return EXIT_OK


def _cluster_stop(directory: Path) -> int:
    stopped, killed = process_cluster.stop_cluster(directory)
    for node in stopped:
        how = "SIGKILL after SIGTERM timed out" if node in killed else "SIGTERM"
        print(f"stopped node{node.node} {node.address} pid {node.pid} ({how})")
    return EXIT_OK


def _cluster_status(directory: Path) -> int:
    nodes = process_cluster.cluster_status(directory)
    for node, alive in nodes:
        print(f"node{node.node} {node.address} pid {node.pid} {'alive' if alive else 'dead'}")
    return EXIT_OK if all(alive for _, alive in nodes) else EXIT_FAILURE


# ---------------------------------------------------------------------------------------
# standalone entry point


def build_parser() -> argparse.ArgumentParser:
    """A `spanlite` parser with only the bench command (what cluster/cli.py mounts)."""
    parser = argparse.ArgumentParser(prog="spanlite")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_bench_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return cmd_bench(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
