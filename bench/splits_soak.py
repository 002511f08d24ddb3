"""`spanlite bench splits`: many requested splits under random writes, optionally with a
kill -9 of one node in the middle, then the checks of the sharding issue:

- at least splits+1 user ranges, every range with 3 replicas and a valid leaseholder,
  leaseholders on every node, descriptors tiling the keyspace;
- a scan over the whole user keyspace returns exactly the acknowledged keys.

    spanlite bench cluster start --nodes 3 --dir /tmp/sc
    spanlite bench splits --dir /tmp/sc --splits 200 --puts 20000 --kill-node 2

Exit code 1 if any check fails (each failure is printed).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from bench import process_cluster
from cluster.client import connect
from ranges.keys import KEY_MAX, SYSTEM_KEY_MAX

CONCURRENCY = 32
SETTLE_TIMEOUT_S = 60.0


@dataclass
class SoakResult:
    acked: set[bytes] = field(default_factory=set)
    splits_done: int = 0
    split_errors: list[str] = field(default_factory=list)
    put_errors: int = 0
    failures: list[str] = field(default_factory=list)
    killed: int | None = None
    seconds: float = 0.0


def _split_keys(count: int, rng: random.Random) -> list[bytes]:
    return sorted({b"u%08d" % rng.randrange(100_000_000) for _ in range(count * 2)})[:count]


async def _writer(db, keys: list[bytes], result: SoakResult) -> None:
    for key in keys:
        try:
            await db.put(key, b"v" + key)
            result.acked.add(key)
        except Exception:  # noqa: BLE001 - counted; an unacked put may or may not be there.
            result.put_errors += 1


async def _splitter(db, keys: list[bytes], result: SoakResult) -> None:
    for key in keys:
        try:
            await db.admin_split(key)
            result.splits_done += 1
        except Exception as e:  # noqa: BLE001 - reported
            result.split_errors.append(f"{key!r}: {e}")


async def _killer(directory: Path, node: int, after_s: float, down_s: float, result: SoakResult) -> None:
    await trio.sleep(after_s)
    record = process_cluster.read_record(directory)
    victim = record.nodes[node - 1]
    os.kill(victim.pid, signal.SIGKILL)
    result.killed = node
    await trio.sleep(down_s)
    log = Path(victim.log)
    pid = process_cluster.spawn_node(node, Path(victim.store), victim.address, record.addresses,
                                     record.max_offset, log)
    record.nodes[node - 1].pid = pid
    process_cluster.write_record(directory, record)


async def run_soak(addresses: list[str], *, splits: int, puts: int, seed: int,
                   directory: Path | None = None, kill_node: int | None = None) -> SoakResult:
    rng = random.Random(seed)
    result = SoakResult()
    started = time.monotonic()
    put_keys = [b"u%08d" % rng.randrange(100_000_000) for _ in range(puts)]
    chunks = [put_keys[i::CONCURRENCY] for i in range(CONCURRENCY)]
    async with connect(addresses, timeout_s=60) as db:
        async with trio.open_nursery() as nursery:
            for chunk in chunks:
                nursery.start_soon(_writer, db, chunk, result)
            nursery.start_soon(_splitter, db, _split_keys(splits, rng), result)
            if kill_node is not None and directory is not None:
                nursery.start_soon(_killer, directory, kill_node, 3.0, 5.0, result)
        result.seconds = time.monotonic() - started
        await _check(db, result, splits)
    return result


async def _check(db, result: SoakResult, splits: int) -> None:
    rows = await db.scan(SYSTEM_KEY_MAX, KEY_MAX)  # Touches every range: leases come back.
    seen = {k for k, _ in rows}
    missing = result.acked - seen
    if missing:
        result.failures.append(f"{len(missing)} acknowledged keys missing from the scan, e.g. {sorted(missing)[:3]}")
    wrong = [k for k, v in rows if v != b"v" + k]
    if wrong:
        result.failures.append(f"{len(wrong)} keys with wrong values, e.g. {wrong[:3]}")
    status = await _settled_status(db)
    ranges = status["ranges"]
    user_ranges = [r for r in ranges if r["start_key"] >= SYSTEM_KEY_MAX]
    if len(user_ranges) < result.splits_done + 1 or len(ranges) < splits + 1:
        result.failures.append(f"{len(ranges)} ranges ({len(user_ranges)} user), expected at least {splits + 1}")
    for problem in _range_problems(status):
        result.failures.append(problem)


async def _settled_status(db) -> dict:
    """Status once every range has a valid leaseholder and leases sit on every live node."""
    deadline = trio.current_time() + SETTLE_TIMEOUT_S
    while True:
        await db.scan(SYSTEM_KEY_MAX, KEY_MAX, limit=None)
        status = await db.status()
        if not _range_problems(status) or trio.current_time() > deadline:
            return status
        await trio.sleep(1.0)


def _range_problems(status: dict) -> list[str]:
    problems = []
    ranges = sorted(status["ranges"], key=lambda r: r["start_key"])
    live = {n["node_id"] for n in status["nodes"] if n["live"]}
    if ranges[0]["start_key"] != b"" or ranges[-1]["end_key"] != KEY_MAX:
        problems.append("ranges do not cover the whole keyspace")
    for a, b in zip(ranges, ranges[1:]):
        if a["end_key"] != b["start_key"]:
            problems.append(f"ranges {a['range_id']} and {b['range_id']} do not abut")
    without = [r["range_id"] for r in ranges if r["leaseholder"] is None]
    if without:
        problems.append(f"{len(without)} ranges without a valid leaseholder, e.g. {without[:5]}")
    short = [r["range_id"] for r in ranges if len(r["replicas"]) != 3]
    if short:
        problems.append(f"{len(short)} ranges without 3 replicas")
    holders = {r["leaseholder"] for r in ranges if r["leaseholder"] is not None}
    if not live <= holders:
        problems.append(f"leaseholders only on nodes {sorted(holders)}, live nodes {sorted(live)}")
    return problems


def report(result: SoakResult, splits: int, puts: int) -> str:
    lines = [f"{splits} splits requested, {result.splits_done} done; {puts} puts, {len(result.acked)} acknowledged, "
             f"{result.put_errors} failed; {result.seconds:.1f}s"
             + (f"; node {result.killed} killed with SIGKILL and restarted" if result.killed else "")]
    lines += [f"split error: {e}" for e in result.split_errors[:5]]
    lines += [f"FAILED: {f}" for f in result.failures] or ["all checks passed"]
    return "\n".join(lines)


def to_json(result: SoakResult) -> str:
    return json.dumps({"acked": len(result.acked), "splits_done": result.splits_done,
                       "failures": result.failures, "seconds": result.seconds})


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.splits_soak --dir DIR [--splits 200] [--puts 20000] [--kill-node N]`
    against a cluster started with `spanlite bench cluster start --nodes 3 --dir DIR`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.splits_soak", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="the bench cluster directory")
    parser.add_argument("--splits", type=int, default=200)
    parser.add_argument("--puts", type=int, default=20_000)
    parser.add_argument("--kill-node", type=int, default=None, metavar="N", help="kill -9 node N midway, restart it")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    record = process_cluster.read_record(args.dir)
    if record is None:
        parser.error(f"{args.dir} has no cluster: run `spanlite bench cluster start --nodes 3 --dir {args.dir}`")
    result = trio.run(lambda: run_soak(record.addresses, splits=args.splits, puts=args.puts, seed=args.seed,
                                       directory=args.dir, kill_node=args.kill_node))
    print(report(result, args.splits, args.puts))
    return 1 if result.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
