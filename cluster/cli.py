"""The `spanlite` command line.

    spanlite start --store DIR --listen HOST:PORT --join HOST:PORT[,...] [--max-offset 20ms]
    spanlite init --host HOST:PORT
    spanlite kv --host HOST:PORT[,...] put KEY VALUE | get KEY | del KEY | scan START END [--limit N]
    spanlite status --host HOST:PORT [--json]
    spanlite sql --host HOST:PORT [-e STATEMENTS] [--format table|csv|json]
    spanlite demo [--nodes N] [-e STATEMENTS] [--format table|csv|json] [--no-example]
    spanlite sim --seeds N [--seed-start S] [--inject-bug NAME]

Errors are one line on stderr saying what was wrong and what to do; the exit code is 1
(2 for a command line that does not parse).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

import trio

from clock.settings import DEFAULT_MAX_OFFSET_NS, format_duration, parse_duration
from bench.cli import add_bench_parser, cmd_bench
from cluster.chaos.cli import add_chaos_parser, cmd_chaos
from cluster.sim.bugs import KNOWN_BUGS as SIM_BUGS
from ranges.api import SpanliteError


class CliError(Exception):
    """An expected failure: printed as one line, exit code 1."""


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _addresses(text: str) -> list[str]:
    from cluster.transport import parse_address_list

    try:
        return parse_address_list(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spanlite", description="A sharded, strictly serializable database.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = sub.add_parser("start", help="run a node in the foreground until SIGTERM/SIGINT")
    start.add_argument("--store", required=True, metavar="DIR", help="the node's store directory")
    start.add_argument("--listen", required=True, metavar="HOST:PORT")
    start.add_argument("--advertise", metavar="HOST:PORT", help="address peers use (default: --listen)")
    start.add_argument("--join", type=_addresses, default=[], metavar="HOST:PORT[,...]",
                       help="the cluster's nodes (used by `init`)")
    start.add_argument("--max-offset", type=_duration, default=DEFAULT_MAX_OFFSET_NS, metavar="DURATION",
                       help=f"maximum clock offset between nodes (default {format_duration(DEFAULT_MAX_OFFSET_NS)})")
    start.add_argument("--inject-bug", action="append", default=[], metavar="NAME", help=argparse.SUPPRESS)
    # Fault injection for `spanlite chaos` (partitions, clock skew): hidden, never in production.
    start.add_argument("--enable-chaos-admin", action="store_true", help=argparse.SUPPRESS)
    start.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    init = sub.add_parser("init", help="bootstrap a new cluster, once")
    init.add_argument("--host", required=True, metavar="HOST:PORT")

    kv = sub.add_parser("kv", help="read and write keys")
    kv.add_argument("--host", required=True, type=_addresses, metavar="HOST:PORT[,...]")
    kv.add_argument("--timeout", type=_duration, default=parse_duration("15s"), metavar="DURATION")
    kv_sub = kv.add_subparsers(dest="kv_command", required=True, metavar="put|get|del|scan|split")
    put = kv_sub.add_parser("put", help="write KEY = VALUE")
    put.add_argument("key")
    put.add_argument("value")
    get = kv_sub.add_parser("get", help="print KEY's value; exit 1 when missing")
    get.add_argument("key")
    delete = kv_sub.add_parser("del", help="delete KEY")
    delete.add_argument("key")
    scan = kv_sub.add_parser("scan", help="keys in [START, END)")
    scan.add_argument("start")
    scan.add_argument("end")
    scan.add_argument("--limit", type=int, metavar="N")
    split = kv_sub.add_parser("split", help="split the range holding KEY at KEY")
    split.add_argument("key")

    status = sub.add_parser("status", help="nodes and ranges")
    status.add_argument("--host", required=True, type=_addresses, metavar="HOST:PORT[,...]")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    demo = sub.add_parser("demo", help="an embedded cluster in this process with an example database, and a SQL "
                                       "shell (-e STATEMENTS or standard input run as a script instead)")
    demo.add_argument("--nodes", type=int, default=3, help="how many nodes (1-9, default 3)")
    demo.add_argument("-e", "--execute", metavar="STATEMENTS", help="run these statements and exit")
    demo.add_argument("--format", choices=("table", "csv", "json"), default="table")
    demo.add_argument("--no-example", action="store_true", help="start empty, without the example database")

    sql = sub.add_parser("sql", help="run SQL: -e STATEMENTS, statements on standard input, or a shell")
    sql.add_argument("--host", required=True, type=_addresses, metavar="HOST:PORT[,...]")
    sql.add_argument("-e", "--execute", metavar="STATEMENTS", help="run these statements and exit")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")

    sim = sub.add_parser("sim", help="the deterministic simulator")
    sim.add_argument("--seeds", type=int, default=100)
    sim.add_argument("--seed-start", type=int, default=0)
    sim.add_argument("--inject-bug", default=None, metavar="NAME",
                     help="plant a bug the checkers must catch: " + ", ".join(SIM_BUGS))
    sim.add_argument("--nodes", type=int, default=None, help="3 or 5 (default: chosen per seed)")
    sim.add_argument("--steps", type=int, default=None, help="events per seed")
    sim.add_argument("--verbose", action="store_true")

    add_bench_parser(sub)
    add_chaos_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        handler = COMMANDS[args.command]
        try:
            return handler(args) or 0
        except BaseExceptionGroup as group:
            raise _sole_exception(group) from None
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except SpanliteError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    except ValueError as e:  # bad keys/values caught by the client before anything is sent
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _sole_exception(group: BaseExceptionGroup) -> BaseException:
    """trio nurseries wrap errors in groups; a lone error is reported as itself."""
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        group = group.exceptions[0]
    return group


# ---------------------------------------------------------------------------------------
# start / init


def cmd_start(args) -> int:
    from cluster.node import Node, NodeConfig
    from paxos_groups.engine import RocksEngine

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        engine = RocksEngine(args.store)
    except Exception as e:  # noqa: BLE001 - rocksdict raises plain Exceptions.
        raise CliError(f"cannot open store {args.store}: {e} (is another node using it?)") from None
    _refuse_store_of_another_cluster(engine, args.store, args.join)
    config = NodeConfig(listen=args.listen, advertise=args.advertise, join=args.join,
                        max_offset_ns=args.max_offset, bugs=frozenset(args.inject_bug),
                        chaos_admin=args.enable_chaos_admin)
    node = Node(engine, config)
    try:
        trio.run(_run_until_signal, node)
    except OSError as e:
        raise CliError(f"cannot listen on {args.listen}: {e}") from None
    finally:
        engine.close()
    return 0


def _refuse_store_of_another_cluster(engine, store: str, join: list[str]) -> None:
    """A store that belongs to cluster X must not join the nodes of cluster Y: ask the
    --join nodes that answer which cluster they are in (unreachable ones are skipped)."""
    from ranges.store import load_identity

    identity = load_identity(engine)
    if identity is None or not join:
        return
    own = identity.nodes.get(identity.node_id)
    for address in join:
        if address != own:
            other = _cluster_id_at(address)
            if other is not None and other != identity.cluster_id:
                engine.close()
                raise CliError(f"store {store} belongs to cluster {identity.cluster_id}, but the node at {address} "
                               f"belongs to cluster {other}: use an empty --store to join that cluster")


def _cluster_id_at(address: str) -> str | None:
    from cluster.client import connect

    async def ask():
        try:
            with trio.move_on_after(2):
                async with connect([address], timeout_s=2) as db:
                    return (await db.status())["cluster_id"]
        except Exception:  # noqa: BLE001 - unreachable or not initialized: nothing to compare
            return None

    return trio.run(ask)


async def _run_until_signal(node) -> None:
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await nursery.start(node.run)
            async for signum in signals:
                logging.getLogger("spanlite.node").info("received %s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def cmd_init(args) -> int:
    async def run():
        from cluster.client import connect

        async with connect([args.host], timeout_s=30) as db:
            return await db.init()

    result = trio.run(run)
    print(f"cluster {result['cluster_id']} initialized with {len(result['nodes'])} nodes")
    return 0


# ---------------------------------------------------------------------------------------
# kv / status


def cmd_kv(args) -> int:
    from cluster.client import connect

    async def run() -> int:
        async with connect(args.host, timeout_s=args.timeout / 1e9) as db:
            return await _kv(db, args)

    return trio.run(run)


async def _kv(db, args) -> int:
    command = args.kv_command
    if command == "put":
        await db.put(args.key.encode(), args.value.encode())
        return 0
    if command == "get":
        value = await db.get(args.key.encode())
        if value is None:
            return 1
        print(value.decode(errors="replace"))
        return 0
    if command == "del":
        await db.delete(args.key.encode())
        return 0
    if command == "split":
        left, right = await db.admin_split(args.key.encode())
        print(f"split range {left.range_id} at {args.key!r}: new range {right.range_id}")
        return 0
    if args.limit is not None and args.limit <= 0:
        raise CliError("--limit must be a positive number")
    for key, value in await db.scan(args.start.encode(), args.end.encode(), args.limit):
        print(f"{key.decode(errors='replace')}\t{value.decode(errors='replace')}")
    return 0


def cmd_status(args) -> int:
    from cluster.client import connect

    async def run():
        async with connect(args.host, timeout_s=10) as db:
            return await db.status()

    status = trio.run(run)
    if args.json:
        print(json.dumps(status_to_json(status), indent=2))
    else:
        print(format_status(status))
    return 0


def _key_text(key: bytes) -> str:
    return key.decode("utf-8", errors="backslashreplace")


def status_to_json(status: dict) -> dict:
    ranges = [dict(r, start_key=_key_text(r["start_key"]), end_key=_key_text(r["end_key"]))
              for r in status["ranges"]]
    return {"cluster_id": status["cluster_id"], "node_id": status["node_id"], "nodes": status["nodes"],
            "ranges": ranges}


def format_status(status: dict) -> str:
    lines = [f"cluster {status['cluster_id']} (answered by node {status['node_id']})", "",
             f"{'node_id':>7}  {'address':<24} live"]
    for node in status["nodes"]:
        lines.append(f"{node['node_id']:>7}  {node['address']:<24} {'yes' if node['live'] else 'NO'}")
    lines += ["", f"{'range_id':>8}  {'start_key':<16} {'end_key':<16} {'replicas':<12} {'leaseholder':>11} {'size_bytes':>10}"]
    for r in status["ranges"]:
        replicas = ",".join(str(n) for n in r["replicas"])
        lease = "-" if r["leaseholder"] is None else str(r["leaseholder"])
        lines.append(f"{r['range_id']:>8}  {_key_text(r['start_key']) or '/Min':<16} "
                     f"{_key_text(r['end_key']):<16} {replicas:<12} {lease:>11} {r.get('size_bytes', 0):>10}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# demo / sim


def cmd_demo(args) -> int:
    """An embedded cluster, the example database (sql_lite_front/example.py) and the SQL shell.
    With -e or a piped standard input only the results are printed, so they can be piped on."""
    from cluster.embedded import EmbeddedCluster
    from sql_lite_front import example
    from sql_lite_front.errors import SqlError
    from sql_lite_front.executor import Session
    from sql_lite_front.shell import run_session

    if not 1 <= args.nodes <= 9:
        raise CliError("--nodes must be between 1 and 9")

    def banner(addresses: list[str]) -> None:
        print(f"spanlite demo: {args.nodes} node{'s' if args.nodes > 1 else ''} at {', '.join(addresses)} "
              f"(stores in memory, gone on exit)")
        if not args.no_example:
            print(example.describe_example())
            print("Try:")
            for statement in example.EXAMPLE_STATEMENTS:
                print(f"  {statement}")
        print("\\? lists the meta-commands (\\d orders, \\x, \\timing, ...); \\q or Ctrl-D quits.")

    async def run() -> int:
        async with EmbeddedCluster(nodes=args.nodes) as cluster:
            async with cluster.client() as db:
                session = Session(db)
                if not args.no_example:
                    try:
                        await example.load_example(session)
                    except SqlError as e:
                        raise CliError(f"loading the example database failed: {e.message} "
                                       f"(try --no-example)") from None
                return await run_session(session, execute=args.execute, fmt=args.format,
                                         banner=lambda: banner(cluster.addresses))

    return trio.run(run)


def cmd_sim(args) -> int:
    from cluster.sim.runner import run_seeds

    return run_seeds(args)


def cmd_sql(args) -> int:
    """-e STATEMENTS, else standard input when it is not a terminal, else the SQL shell; the exit
    status is 1 if any statement failed."""
    from cluster.client import connect
    from sql_lite_front.executor import Session
    from sql_lite_front.shell import run_session

    async def run() -> int:
        async with connect(args.host) as db:
            return await run_session(Session(db), execute=args.execute, fmt=args.format)

    return trio.run(run)


COMMANDS = {
    "sql": cmd_sql,
    "start": cmd_start,
    "init": cmd_init,
    "kv": cmd_kv,
    "status": cmd_status,
    "demo": cmd_demo,
    "sim": cmd_sim,
    "bench": cmd_bench,
    "chaos": cmd_chaos,
}


if __name__ == "__main__":
    sys.exit(main())
