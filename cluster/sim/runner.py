"""`spanlite sim`: run seeds of the simulator, check the invariants, print failing seeds.

Each seed picks its own cluster size (3 or 5), fault mix and timing from the seed, runs
the workload under faults, heals everything, lets the cluster settle, reads every key,
and then runs the checkers. A failure prints the seed, the violated invariant and how to
replay it; the same seed replays the same run.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
import zlib
from dataclasses import dataclass

from cluster.sim.checkers import (
    AcceptedValueChecker,
    ChosenValueChecker,
    LeaseChecker,
    MetaChecker,
    Violation,
    check_final_reads,
    check_linearizable,
    check_transactions,
)
from cluster.sim.world import MS, SECOND, SimConfig, World

from cluster.sim.bugs import KNOWN_BUGS  # noqa: E402 - re-exported for the tests


@dataclass
class SeedResult:
    seed: int
    violation: Violation | None
    operations: int
    faults: dict[str, int]
    trace_digest: int
    splits: int = 0


def config_for_seed(seed: int, bug: str | None, nodes: int | None = None) -> SimConfig:
    import random

    rng = random.Random(seed * 7919 + 17)
    config = SimConfig()
    config.nodes = nodes or rng.choice((3, 3, 5))
    config.drop_rate = rng.choice((0.0, 0.01, 0.05))
    config.dup_rate = rng.choice((0.0, 0.02))
    config.net_delay_max_ns = rng.choice((2 * MS, 5 * MS, 15 * MS, 60 * MS))
    config.fault_interval_ns = rng.choice((400 * MS, 800 * MS, 1500 * MS))
    config.clients = rng.choice((3, 5))
    # Larger max offsets make clock-skew bugs visible at tick granularity (50 ms).
    config.max_offset_ns = rng.choice((20 * MS, 100 * MS, 250 * MS))
    config.bugs = frozenset([bug]) if bug else frozenset()
    # Some seeds split automatically too (a tiny threshold: the keyspace is small).
    config.split_threshold_bytes = rng.choice((64 << 20, 1500))
    # Short liveness records expire within one partition, so epoch leases change hands
    # under faults (the default 3 s outlasts most of the schedule's partitions).
    config.liveness_duration_ns = rng.choice((750 * MS, 1500 * MS, 3000 * MS))
    config.txn_workload = rng.choice(("bank", "append", "append"))
    return config


class FaultSchedule:
    """Seeded faults during the run; every fault heals before the final reads."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.rng = world.rng
        self.max_offset_ns = world.config.max_offset_ns

    def start(self) -> None:
        # Clocks start skewed (within ±max_offset/2, so any two differ by at most max_offset):
        # leases and commit-wait must hold under skew from the first instant.
        half = self.max_offset_ns // 2
        for node_id in sorted(self.world.skew_ns):
            self.world.skew_ns[node_id] = self.rng.randrange(-half, half + 1)
        self.world.schedule(self.world.config.fault_interval_ns, self._next_fault)

    def _next_fault(self) -> None:
        world = self.world
        if world.now_ns >= world.config.duration_ns:
            return
        roll = self.rng.random()
        if roll < 0.35:
            self._crash_minority()
        elif roll < 0.42:
            self._crash_all()
        elif roll < 0.75:
            self._partition()
        else:
            self._skew()
        interval = world.config.fault_interval_ns
        world.schedule(self.rng.randrange(interval // 2, interval * 3 // 2), self._next_fault)

    def _crash_minority(self) -> None:
        world = self.world
        n = world.config.nodes
        down = n - len(world.live_nodes())
        if down >= (n - 1) // 2:
            return
        victim = self.rng.choice(world.live_nodes())
        world.crash(victim)
        world.schedule(self.rng.randrange(200 * MS, 3 * SECOND), lambda: world.restart(victim))

    def _crash_all(self) -> None:
        world = self.world
        for node_id in world.live_nodes():
            world.crash(node_id)
            world.schedule(self.rng.randrange(100 * MS, 1500 * MS), lambda i=node_id: world.restart(i))

    def _partition(self) -> None:
        world = self.world
        nodes = list(range(1, world.config.nodes + 1))
        self.rng.shuffle(nodes)
        shape = self.rng.choice(("isolate", "isolate-leader", "halves", "bridge", "one-way"))
        blocked: set[tuple[int, int]] = set()
        if shape == "isolate-leader":
            # Jepsen's favourite: cut off the leader of the busiest (user) range, so a new
            # leader takes over while the old one still has accepts in flight.
            leader = self._leader_of_user_range()
            if leader is not None:
                nodes.remove(leader)
                nodes.insert(0, leader)
            blocked = _both_ways([nodes[0]], nodes[1:])
        elif shape == "isolate":
            blocked = _both_ways([nodes[0]], nodes[1:])
        elif shape == "halves":
            cut = len(nodes) // 2
            blocked = _both_ways(nodes[:cut], nodes[cut:])
        elif shape == "bridge":
            # nodes[0] talks to both sides; the sides cannot talk to each other.
            rest = nodes[1:]
            cut = len(rest) // 2
            blocked = _both_ways(rest[:cut], rest[cut:])
        else:
            blocked = {(nodes[0], other) for other in nodes[1:]}
        world.blocked = blocked
        world._count(f"partition-{shape}")
        world.trace.append(f"{world.now_ns} partition {shape} {sorted(blocked)}")
        world.schedule(self.rng.randrange(300 * MS, 3 * SECOND), self._heal_partition)

    def _leader_of_user_range(self) -> int | None:
        for node_id in self.world.live_nodes():
            store = self.world.nodes[node_id].store
            for replica in store.replicas.values():
                if replica.sm.descriptor.start_key >= b"\x02" and replica.group.is_leader:
                    return node_id
        return None

    def _heal_partition(self) -> None:
        self.world.blocked = set()

    def _skew(self) -> None:
        world = self.world
        node = self.rng.randrange(1, world.config.nodes + 1)
        half = self.max_offset_ns // 2
        world.skew_ns[node] = self.rng.randrange(-half, half + 1)
        world._count("skew")

    def heal_all(self) -> None:
        world = self.world
        world.blocked = set()
        for node_id in world.nodes:
            world.restart(node_id)


def _both_ways(side_a: list[int], side_b: list[int]) -> set[tuple[int, int]]:
    return {(a, b) for a in side_a for b in side_b} | {(b, a) for a in side_a for b in side_b}


def run_seed(seed: int, bug: str | None = None, nodes: int | None = None) -> SeedResult:
    config = config_for_seed(seed, bug, nodes)
    chosen = ChosenValueChecker()
    accepted = AcceptedValueChecker()
    leases = LeaseChecker()
    meta = MetaChecker()
    world = World(seed, config, observers=[chosen, accepted, leases, meta])
    faults = FaultSchedule(world)
    world.start_clients()
    faults.start()
    try:
        world.run_until(config.duration_ns)
        faults.heal_all()
        world.run_until(config.duration_ns + 2 * SECOND)
        world.start_final_reads()
        world.run_until(config.duration_ns + config.settle_ns)
    except AssertionError as e:
        # An impossible state inside a node: the node would stop. A checker in its own right.
        violation = Violation("node assertion", f"at t={world.now_ns}ns: {e}\n{traceback.format_exc(limit=6)}")
        return SeedResult(seed, violation, len(world.history), dict(world.faults_injected), 0)
    violation = (chosen.violation or accepted.violation or leases.violation or check_transactions(world) or check_linearizable(world)
                 or check_final_reads(world) or meta.check_final(world))
    digest = zlib.crc32("\n".join(world.trace).encode() + world.history.to_jsonl().encode())
    return SeedResult(seed, violation, len(world.history), dict(world.faults_injected), digest, world.splits_done)


def run_seeds(args) -> int:
    bug = args.inject_bug
    if bug is not None and bug not in KNOWN_BUGS:
        print(f"error: unknown bug {bug!r}; known: {', '.join(KNOWN_BUGS)}", file=sys.stderr)
        return 2
    if not args.verbose:
        logging.getLogger("spanlite").setLevel(logging.CRITICAL)  # Faults make nodes log a lot.
    started = time.monotonic()
    failures = 0
    for seed in range(args.seed_start, args.seed_start + args.seeds):
        result = run_seed(seed, bug, args.nodes)
        if args.verbose:
            print(f"seed {seed}: {result.operations} ops, {result.splits} splits, faults {result.faults}"
                  + (f", VIOLATION {result.violation}" if result.violation else ""))
        if result.violation is not None:
            failures += 1
            print(f"seed {seed} FAILED: {result.violation.invariant}\n{result.violation.detail}\n"
                  f"replay: spanlite sim --seeds 1 --seed-start {seed}"
                  + (f" --inject-bug {bug}" if bug else ""), file=sys.stderr)
            if bug is not None:
                break  # A planted bug is caught: that is what we wanted to know.
    elapsed = time.monotonic() - started
    ran = seed - args.seed_start + 1
    print(f"{ran} seeds, {failures} failed, {elapsed:.1f}s" + (f" (bug {bug})" if bug else ""))
    return 1 if failures else 0
