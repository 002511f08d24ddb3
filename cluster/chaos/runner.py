"""`spanlite chaos`: a Jepsen-style run against real node processes.

One run, in order:

1. Start N `spanlite start` processes on loopback (cluster.chaos.processes), each with its
   own store directory, `--enable-chaos-admin` and the planted bugs of `--inject-bug`.
2. Set up the workload (split its keys into ranges; fund the bank), then record a history
   (cluster.chaos.history) while many workers run the workload through the real client
   (cluster.chaos.workloads) and the nemesis injects its seeded schedule of faults
   (cluster.chaos.nemesis). A worker is a Jepsen process: one op at a time; after an
   op that ended `info` it takes a new process id (an indeterminate op never completes,
   so its process never issues another).
3. Heal everything, then the final reads (recorded like any op), retried until they
   succeed or a generous deadline passes: they show whether every acknowledged write is
   there, and that the cluster recovered.
4. Check the history (cluster.chaos.checkers), print the summary.

Exit code: 0 valid; 1 a violation (an anomaly, a node that crashed by itself, or final reads
that never succeeded); 2 the cluster or the workload could not be set up. Node processes are
killed on every exit path (the ChaosCluster context manager, plus PDEATHSIG in the nodes).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import trio

from bench.process_cluster import run_trio
from cluster.chaos.checkers import check_history
from cluster.chaos.history import HistoryRecorder
from cluster.chaos.nemesis import Nemesis, make_schedule
from cluster.chaos.processes import ChaosCluster, ChaosSetupError
from cluster.chaos.workloads import WORKLOADS
from cluster.client import connect
from ranges.api import SpanliteError

CLIENT_TIMEOUT_S = 5.0
CLIENT_CONNECTIONS = 3
SETUP_TIMEOUT_S = 60.0
FINAL_READS_DEADLINE_S = 90.0
THINK_TIME_S = (0.0, 0.02)
EXIT_VALID, EXIT_VIOLATION, EXIT_SETUP = 0, 1, 2


@dataclass
class ChaosConfig:
    nodes: int
    duration_s: float
    workload: str
    nemeses: tuple[str, ...]
    seed: int
    max_offset_ns: int
    bugs: tuple[str, ...] = ()
    workers: int = 16
    directory: Path | None = None
    history_path: Path | None = None
    keep: bool = False


@dataclass
class ChaosOutcome:
    exit_code: int
    lines: list[str]
    directory: Path
    history_path: Path
    report: dict = field(default_factory=dict)


def run_chaos(config: ChaosConfig, log=print) -> ChaosOutcome:
    """Run one chaos test; the directory is kept unless the run was valid (and not --keep)."""
    directory = config.directory or Path(tempfile.mkdtemp(prefix="spanlite-chaos-"))
    directory.mkdir(parents=True, exist_ok=True)
    history_path = config.history_path or directory / "history.jsonl"
    log(f"chaos: {config.nodes} nodes, workload {config.workload}, nemesis {','.join(config.nemeses) or 'none'}, "
        f"{config.duration_s:g}s, seed {config.seed}" + (f", planted bugs {','.join(config.bugs)}" if config.bugs else ""))
    log(f"chaos: directory {directory} (node logs: node*/node.log), history {history_path}")
    try:
        with ChaosCluster(directory, config.nodes, config.max_offset_ns, config.bugs) as cluster:
            # run_trio: a lone error comes out as itself, not inside the nurseries' ExceptionGroups.
            outcome = run_trio(_run, config, cluster, directory, history_path, log)
    except ChaosSetupError as e:
        outcome = ChaosOutcome(EXIT_SETUP, [f"setup failed: {e}"], directory, history_path)
    outcome.lines.append(f"history: {history_path}")
    if outcome.exit_code == EXIT_VALID and not config.keep and config.directory is None:
        _remove_keeping_history(directory, history_path)
        outcome.lines.append("node logs: removed (the run was valid; --keep keeps them)")
    else:
        outcome.lines.append(f"node logs: {directory}/node*/node.log")
    return outcome


def _remove_keeping_history(directory: Path, history_path: Path) -> None:
    if history_path.parent == directory:
        for child in directory.iterdir():
            if child != history_path:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    else:
        shutil.rmtree(directory, ignore_errors=True)


async def _run(config: ChaosConfig, cluster: ChaosCluster, directory: Path, history_path: Path, log) -> ChaosOutcome:
    await cluster.start()
    workload = WORKLOADS[config.workload]()
    addresses = cluster.addresses
    async with connect(addresses, timeout_s=CLIENT_TIMEOUT_S * 2) as admin_db:
        try:
            with trio.fail_after(SETUP_TIMEOUT_S):
                await _retry_setup(workload, admin_db)
        except (trio.TooSlowError, SpanliteError) as e:
            raise ChaosSetupError(f"the {config.workload} workload could not be set up: {e}") from None
        schedule = make_schedule(config.seed, cluster.node_ids, config.duration_s, config.nemeses,
                                 config.max_offset_ns)
        for fault in schedule:
            log(f"schedule: {json.dumps(fault.describe())}")
        with HistoryRecorder(history_path) as history:
            history.nemesis("schedule", [f.describe() for f in schedule])
            nemesis = Nemesis(cluster, history, schedule, [workload.key(k) for k in range(_key_count(workload))],
                              admin_db, random.Random(config.seed), log=log, split_key=workload.split_key)
            final_ok = await _record_run(config, workload, nemesis, history, addresses, log)
            events = history.events
    result = check_history(workload.name, events, **workload.check_kwargs())
    return _outcome(config, result, nemesis, cluster, final_ok, directory, history_path)


async def _retry_setup(workload, db) -> None:
    while True:
        try:
            await workload.setup(db)
            return
        except SpanliteError:
            await trio.sleep(0.5)  # a lease still settling after startup: try again


def _key_count(workload) -> int:
    return getattr(workload, "keys", None) or getattr(workload, "accounts")


async def _record_run(config: ChaosConfig, workload, nemesis: Nemesis, history, addresses: list[str], log) -> bool:
    """The workload under the nemesis for the run's duration; then heal and final reads."""
    processes = _ProcessIds(config.workers)
    started = trio.current_time()
    deadline = started + config.duration_s
    async with _clients(addresses) as clients:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(nemesis.run, started)
            for worker in range(config.workers):
                rng = random.Random(config.seed * 1_000_003 + worker)
                nursery.start_soon(_worker, workload, clients[worker % len(clients)], history, processes,
                                   worker, rng, deadline)
        log("chaos: workload done; healing every fault")
        await nemesis.heal_all()
        log("chaos: final reads")
        return await _final_reads(workload, clients[0], history, processes)


class _ProcessIds:
    """Worker w starts as process w; a process whose op ended info is retired."""

    def __init__(self, workers: int) -> None:
        self._next = workers

    def new(self) -> int:
        self._next += 1
        return self._next - 1


async def _worker(workload, db, history, processes: _ProcessIds, worker: int, rng: random.Random,
                  deadline: float) -> None:
    process = worker
    while trio.current_time() < deadline:
        if await workload.operate(db, history, process, rng) == "info":
            process = processes.new()
        await trio.sleep(rng.uniform(*THINK_TIME_S))


async def _final_reads(workload, db, history, processes: _ProcessIds) -> bool:
    """Until the final reads all succeed (the cluster healed) or the deadline passes. Every
    attempt reads as new processes (an earlier attempt's op may have ended info)."""
    with trio.move_on_after(FINAL_READS_DEADLINE_S):
        while True:
            if await workload.final_reads(db, history, processes.new):
                return True
            await trio.sleep(1.0)
    return False


class _clients:
    """A few client connections shared by the workers (each lists every node, rotated)."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self._stack = None

    async def __aenter__(self) -> list:
        from contextlib import AsyncExitStack

        self._stack = AsyncExitStack()
        clients = []
        for i in range(min(CLIENT_CONNECTIONS, len(self.addresses))):
            rotated = self.addresses[i:] + self.addresses[:i]
            clients.append(await self._stack.enter_async_context(connect(rotated, timeout_s=CLIENT_TIMEOUT_S)))
        return clients

    async def __aexit__(self, *exc) -> bool:
        return await self._stack.__aexit__(*exc)


def _outcome(config: ChaosConfig, result, nemesis: Nemesis, cluster: ChaosCluster, final_ok: bool,
             directory: Path, history_path: Path) -> ChaosOutcome:
    lines = list(result.summary_lines())
    faults = ", ".join(f"{kind} x{n}" for kind, n in sorted(nemesis.injected.items())) or "none"
    lines.append(f"faults injected: {faults}")
    lines.extend(f"nemesis note: {note}" for note in nemesis.notes)
    problems = list(nemesis.problems)
    for node_id, code, tail in cluster.note_crashes():
        problems.append(f"node {node_id} exited by itself (exit code {code}): {tail}")
    if not final_ok:
        problems.append(f"the final reads did not succeed within {FINAL_READS_DEADLINE_S:.0f}s of healing "
                        "every fault: the cluster did not recover")
    lines.extend(f"problem: {p}" for p in problems)
    valid = result.valid and not problems
    lines.append("result: VALID" if valid else "result: INVALID")
    report = {
        "valid": valid, "workload": result.workload, "counts": result.counts, "seed": config.seed,
        "anomalies": [{"kind": a.kind, "explanation": a.explanation, "ops": a.ops} for a in result.anomalies],
        "faults": dict(nemesis.injected), "problems": problems, "notes": nemesis.notes,
        "history": str(history_path), "directory": str(directory), "bugs": list(config.bugs),
    }
    return ChaosOutcome(EXIT_VALID if valid else EXIT_VIOLATION, lines, directory, history_path, report)
