"""`spanlite bench sql`: the latency the SQL front adds, measured side by side with the KV client.

One client, one operation at a time (latency, not throughput), against the same cluster:

    point SELECT   `SELECT balance FROM bench_accounts WHERE id = $k`   vs  `db.get(key)`
    1-row UPDATE   `UPDATE bench_accounts SET balance = balance + 1 WHERE id = $k`
                   vs  a KV transaction doing the same read-modify-write (`get` + `put`)
                   and vs a blind `db.put(key)` (what a KV user would write without a read)

The table and the KV keys hold the same N rows, each in its own range (the table is split off
at its first key, the KV keys live under their own prefix), and the four kinds of operation are
interleaved in a random order within each round, so the machine's noise hits them alike. Each
run reports p50/p90/p99 per operation; with several runs the printed figures are medians.

    spanlite bench cluster start --nodes 3 --dir /tmp/sqlb
    spanlite bench sql --host 127.0.0.1:26257 --ops 2000 --runs 3
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sql_lite_front.executor import Session

TABLE = "bench_accounts"
KV_PREFIX = b"bench-kv/"
INSERT_BATCH = 200
OPERATIONS = ("sql_select", "kv_get", "sql_update", "kv_rmw_txn", "kv_put")
LABELS = {
    "sql_select": "SQL point SELECT",
    "kv_get": "KV get",
    "sql_update": "SQL 1-row UPDATE",
    "kv_rmw_txn": "KV txn get+put",
    "kv_put": "KV put",
}


@dataclass
class OpFigures:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    samples: int


@dataclass
class RunFigures:
    run: int
    ops: dict[str, OpFigures] = field(default_factory=dict)


def kv_key(account: int) -> bytes:
    return KV_PREFIX + b"%08d" % account


async def load(db, session: Session, rows: int) -> None:
    """Create the table and the KV keys with the same rows, each in a range of its own."""
    await session.execute(f"DROP TABLE IF EXISTS {TABLE}")
    await session.execute(f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, balance INT NOT NULL, note TEXT)")
    await session.execute(f"ALTER TABLE {TABLE} SPLIT AT VALUES (0)")
    for start in range(0, rows, INSERT_BATCH):
        values = ", ".join(f"({i}, 1000, 'account {i}')" for i in range(start, min(rows, start + INSERT_BATCH)))
        await session.execute(f"INSERT INTO {TABLE} VALUES {values}")
    await db.admin_split(KV_PREFIX)
    for account in range(rows):
        await db.put(kv_key(account), b"1000")


async def _kv_rmw(db, account: int) -> None:
    async def add_one(txn) -> None:
        balance = int(await txn.get(kv_key(account)))
        txn.put(kv_key(account), str(balance + 1).encode())

    await db.run_transaction(add_one)


def _operation(db, session: Session, name: str, account: int):
    if name == "sql_select":
        return session.execute(f"SELECT balance FROM {TABLE} WHERE id = {account}")
    if name == "sql_update":
        return session.execute(f"UPDATE {TABLE} SET balance = balance + 1 WHERE id = {account}")
    if name == "kv_get":
        return db.get(kv_key(account))
    if name == "kv_rmw_txn":
        return _kv_rmw(db, account)
    return db.put(kv_key(account), b"%d" % account)


async def run_once(db, session: Session, rows: int, ops: int, rng: random.Random, run: int) -> RunFigures:
    """`ops` rounds; each round runs every operation once, in a random order, on random rows."""
    samples: dict[str, list[float]] = {name: [] for name in OPERATIONS}
    for _ in range(ops):
        order = list(OPERATIONS)
        rng.shuffle(order)
        for name in order:
            started = time.perf_counter()
            await _operation(db, session, name, rng.randrange(rows))
            samples[name].append((time.perf_counter() - started) * 1000)
    return RunFigures(run, {name: _figures(values) for name, values in samples.items()})


def _figures(values: list[float]) -> OpFigures:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return OpFigures(at(0.50), at(0.90), at(0.99), len(ordered))


def median_figures(runs: list[RunFigures]) -> dict[str, OpFigures]:
    return {name: OpFigures(*(statistics.median(getattr(r.ops[name], f) for r in runs)
                              for f in ("p50_ms", "p90_ms", "p99_ms")),
                            sum(r.ops[name].samples for r in runs))
            for name in OPERATIONS}


def report(figures: dict[str, OpFigures], runs: int) -> str:
    lines = [f"latency per operation, one client, one at a time (median of {runs} run{'s' * (runs > 1)}):",
             f"  {'operation':<18} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"]
    for name in OPERATIONS:
        f = figures[name]
        lines.append(f"  {LABELS[name]:<18} {f.p50_ms:>8.2f} {f.p90_ms:>8.2f} {f.p99_ms:>8.2f}")
    select_ratio = figures["sql_select"].p50_ms / figures["kv_get"].p50_ms
    update_ratio = figures["sql_update"].p50_ms / figures["kv_rmw_txn"].p50_ms
    lines.append(f"  SQL/KV p50: point SELECT {select_ratio:.2f}x KV get, "
                 f"UPDATE {update_ratio:.2f}x KV txn get+put")
    return "\n".join(lines)


async def run(db, *, rows: int, ops: int, runs: int, seed: int, json_path: Path | None, out=print) -> None:
    session = Session(db)
    out(f"loading {rows} rows into table {TABLE} and under KV prefix {KV_PREFIX.decode()} ...")
    await load(db, session, rows)
    rng = random.Random(seed)
    await run_once(db, session, rows, min(ops, 100), rng, 0)  # warm-up: caches, connections
    results = []
    for number in range(1, runs + 1):
        results.append(await run_once(db, session, rows, ops, rng, number))
        out(f"run {number}: " + ", ".join(f"{LABELS[n]} p50 {f.p50_ms:.2f} ms" for n, f in results[-1].ops.items()))
    figures = median_figures(results)
    out(report(figures, runs))
    if json_path is not None:
        json_path.write_text(json.dumps({"rows": rows, "ops_per_run": ops, "runs": [asdict(r) for r in results],
                                         "median": {n: asdict(f) for n, f in figures.items()}}, indent=2))
