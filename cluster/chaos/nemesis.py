"""The nemesis: a seeded schedule of faults, injected into real node processes.

`make_schedule(seed, ...)` draws every fault up front - (start, kind, targets, duration) -
so a seed names a run's faults (the operations' timing still varies from run to run). The
runner prints the schedule and records it in the history before the run starts.

Faults, grouped in three lanes. Within a lane faults follow each other (never two process
faults on one node at once); faults of different lanes overlap freely, which is the modest
overlap the issue asks for (a partition during a kill, a pause under skewed clocks).

| lane    | kind       | what happens                                                        |
|---------|------------|---------------------------------------------------------------------|
| process | kill       | kill -9 of a minority, restarted after the fault's duration         |
| process | kill-all   | kill -9 of every node, all restarted (rare; once in runs >= 45 s)   |
| process | pause      | SIGSTOP of a minority, SIGCONT after the duration                   |
| network | partition  | halves, majority ring, bridge, or isolating a busy range's          |
|         |            | leaseholder (found through `db.status()` when the fault starts)     |
| clock   | skew       | every node's clock shifted within +-40% of max offset               |
| clock   | big-skew   | one node shifted 2-4x max offset: it must stop serving (the clock   |
|         |            | monitor); the nemesis records whether and when it reported so       |
| split   | split      | a requested range split at a key the workload is using now (its     |
|         |            | data lands right of the split: what a split must carry over)        |

Partitions and skew are admin requests to one node (`ChaosDropPeers`, `ChaosClockOffset`,
sent through the real client), accepted because the chaos tool starts nodes with
`--enable-chaos-admin`. A partition is sent to every node on both sides; each side alone
cuts the link both ways, so a paused or dead node does not keep a partition from working.
A node that restarts comes back without faults: the nemesis sends it the current partition
and clock offset again.

`heal_all()` ends every fault (resume, restart, clear partitions, zero offsets), retrying
each admin request until it is accepted: the runner calls it before the final reads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import trio

from cluster.client import connect
from ranges.api import ChaosClockOffset, ChaosDropPeers, SpanliteError, Status

NEMESES = ("kill", "pause", "partition", "skew", "split")
PARTITION_SHAPES = ("halves", "majority-ring", "bridge", "leaseholder")
LANES = {"process": ("kill", "kill-all", "pause"), "network": ("partition",), "clock": ("skew", "big-skew"),
         "split": ("split",)}
# (min, max) seconds each kind of fault lasts.
DURATION_S = {"kill": (2.0, 5.0), "kill-all": (1.0, 3.0), "pause": (2.0, 5.0), "partition": (3.0, 8.0),
              "skew": (4.0, 10.0), "big-skew": (5.0, 9.0), "split": (1.0, 3.0)}
SPLIT_TIMEOUT_S = 10.0
GAP_S = (1.0, 4.0)  # quiet time between two faults of one lane
KILL_ALL_WEIGHT = 0.1
KILL_ALL_GUARANTEED_FROM_S = 45.0
SKEW_FRACTION_MAX = 0.4
BIG_SKEW_FACTOR = (2.0, 4.0)
ADMIN_TIMEOUT_S = 2.0
HEAL_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Fault:
    start_s: float
    kind: str
    nodes: tuple[int, ...]  # the nodes it acts on (partition: every node; leaseholder: decided at start)
    duration_s: float
    shape: str | None = None  # partitions
    grudge: dict | None = None  # partitions: node -> nodes it drops
    offsets: dict | None = None  # skews: node -> clock offset ns

    def describe(self) -> dict:
        """JSON-native, for the history and the printed schedule."""
        out = {"start_s": round(self.start_s, 2), "kind": self.kind, "nodes": list(self.nodes),
               "duration_s": round(self.duration_s, 2)}
        if self.shape is not None:
            out["shape"] = self.shape
        if self.grudge is not None:
            out["grudge"] = {str(n): sorted(d) for n, d in self.grudge.items()}
        if self.offsets is not None:
            out["offsets_ms"] = {str(n): round(o / 1e6, 2) for n, o in self.offsets.items()}
        return out


def parse_nemeses(text: str) -> tuple[str, ...]:
    """`kill,pause,partition,skew,split` (or `none`) -> the kinds; ValueError saying what is known."""
    if text.strip() in ("", "none"):
        return ()
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in NEMESES]
    if unknown:
        raise ValueError(f"unknown nemesis {', '.join(unknown)}: use a comma-separated list of "
                         f"{', '.join(NEMESES)} (or none)")
    return names


# ---------------------------------------------------------------------------------------
# the schedule


def make_schedule(seed: int, node_ids: list[int], duration_s: float, nemeses: tuple[str, ...],
                  max_offset_ns: int) -> list[Fault]:
    """Every fault of the run, sorted by start; each ends at least 1 s before `duration_s`."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    for lane, kinds in LANES.items():
        enabled = [k for k in kinds if _enabled(k, nemeses)]
        if enabled:
            faults += _lane(rng, lane, enabled, node_ids, duration_s, max_offset_ns)
    faults.sort(key=lambda f: f.start_s)
    return faults


def _enabled(kind: str, nemeses: tuple[str, ...]) -> bool:
    family = {"kill-all": "kill", "big-skew": "skew"}.get(kind, kind)
    return family in nemeses


def _lane(rng: random.Random, lane: str, kinds: list[str], node_ids: list[int], duration_s: float,
          max_offset_ns: int) -> list[Fault]:
    faults = []
    t = rng.uniform(1.0, 3.0)
    end_s = duration_s - 1.0
    while True:
        kind = _pick_kind(rng, kinds)
        low, high = DURATION_S[kind]
        length = min(rng.uniform(low, high), end_s - t)
        if length < low / 2 or length < 1.0:
            break
        faults.append(_fault(rng, t, kind, length, node_ids, max_offset_ns))
        t += length + rng.uniform(*GAP_S)
    if lane == "process" and "kill-all" in kinds and duration_s >= KILL_ALL_GUARANTEED_FROM_S:
        faults = _ensure_kill_all(faults, node_ids)
    return faults


def _pick_kind(rng: random.Random, kinds: list[str]) -> str:
    weights = [KILL_ALL_WEIGHT if k == "kill-all" else 1.0 for k in kinds]
    return rng.choices(kinds, weights)[0]


def _ensure_kill_all(faults: list[Fault], node_ids: list[int]) -> list[Fault]:
    """Kill-all is rare by weight; a long run still gets one (the middle process fault)."""
    if not faults or any(f.kind == "kill-all" for f in faults):
        return faults
    middle = len(faults) // 2
    chosen = faults[middle]
    faults[middle] = Fault(chosen.start_s, "kill-all", tuple(node_ids), min(chosen.duration_s, DURATION_S["kill-all"][1]))
    return faults


def _minority(rng: random.Random, node_ids: list[int]) -> tuple[int, ...]:
    return tuple(sorted(rng.sample(node_ids, rng.randint(1, (len(node_ids) - 1) // 2))))


def _fault(rng: random.Random, t: float, kind: str, length: float, node_ids: list[int],
           max_offset_ns: int) -> Fault:
    if kind in ("kill", "pause"):
        return Fault(t, kind, _minority(rng, node_ids), length)
    if kind == "kill-all":
        return Fault(t, kind, tuple(node_ids), length)
    if kind == "split":
        return Fault(t, kind, (), length)  # the key is the workload's, chosen when it starts
    if kind == "partition":
        shape = rng.choice(PARTITION_SHAPES)
        grudge = None if shape == "leaseholder" else partition_grudge(rng, shape, node_ids)
        return Fault(t, kind, tuple(node_ids), length, shape=shape, grudge=grudge)
    if kind == "skew":
        limit = int(SKEW_FRACTION_MAX * max_offset_ns)
        return Fault(t, kind, tuple(node_ids), length, offsets={n: rng.randint(-limit, limit) for n in node_ids})
    assert kind == "big-skew", f"unknown fault kind {kind}"
    node = rng.choice(node_ids)
    offset = int(rng.uniform(*BIG_SKEW_FACTOR) * max_offset_ns) * rng.choice((-1, 1))
    return Fault(t, kind, (node,), length, offsets={node: offset})


def partition_grudge(rng: random.Random, shape: str, node_ids: list[int]) -> dict[int, frozenset[int]]:
    """node -> the nodes it must not talk to (symmetric). Shapes as in Jepsen's nemeses."""
    order = list(node_ids)
    rng.shuffle(order)
    if shape == "halves":
        cut = len(order) // 2
        return _split(order[:cut], order[cut:])
    if shape == "bridge":
        bridge, rest = order[0], order[1:]
        cut = len(rest) // 2
        return {**_split(rest[:cut], rest[cut:]), bridge: frozenset()}  # the bridge talks to everyone
    assert shape == "majority-ring", f"unknown partition shape {shape}"
    return _majority_ring(order)


def _split(left: list[int], right: list[int]) -> dict[int, frozenset[int]]:
    grudge = {n: frozenset(right) for n in left}
    grudge.update({n: frozenset(left) for n in right})
    return grudge


def _majority_ring(order: list[int]) -> dict[int, frozenset[int]]:
    """Each node talks only to its neighbours on a ring: with 5 nodes each sees a majority
    (itself and 2 others), but no two nodes see the same one. With 3 nodes it is a bridge."""
    count = len(order)
    reach = max(1, (count - 1) // 4)
    grudge = {}
    for i, node in enumerate(order):
        near = {order[(i + d) % count] for d in range(-reach, reach + 1)}
        grudge[node] = frozenset(set(order) - near)
    if count == 3:  # a ring of 3 with reach 1 cuts nothing: drop one link instead
        a, b = order[0], order[1]
        grudge = {n: frozenset() for n in order}
        grudge[a], grudge[b] = frozenset({b}), frozenset({a})
    return {n: d for n, d in grudge.items()}


def isolate(node: int, node_ids: list[int]) -> dict[int, frozenset[int]]:
    others = [n for n in node_ids if n != node]
    return _split([node], others)


# ---------------------------------------------------------------------------------------
# admin requests


async def admin(address: str, request) -> object | None:
    """One request to one node through the real client; its answer, or None if it did not
    answer in time or refused (a paused, dead or partitioned node: the caller decides)."""
    with trio.move_on_after(ADMIN_TIMEOUT_S):
        # Errors are caught inside `connect`: past its nursery they arrive in an ExceptionGroup.
        async with connect([address], timeout_s=ADMIN_TIMEOUT_S) as db:
            try:
                return await db.send(request)
            except SpanliteError:
                return None
    return None


async def node_serving(address: str) -> bool | None:
    """The node's own view: is its clock within bounds (serving)? None: no answer."""
    status = await admin(address, Status())
    if not isinstance(status, dict):
        return None
    own = [n for n in status.get("nodes", []) if n.get("node_id") == status.get("node_id")]
    return bool(own[0].get("clock_ok", True)) if own else None


# ---------------------------------------------------------------------------------------
# running the schedule


@dataclass
class Nemesis:
    """Injects the faults of a schedule into a ChaosCluster and records them in the history."""

    cluster: object  # cluster.chaos.processes.ChaosCluster
    history: object  # cluster.chaos.history.HistoryRecorder
    schedule: list[Fault]
    busy_keys: list[bytes]  # the workload's keys: a "busy range" holds one of them
    status_client: object  # a cluster.client.Client to every node, for db.status() and splits
    rng: random.Random = field(default_factory=random.Random)
    log: object = print
    grudge: dict[int, frozenset[int]] = field(default_factory=dict)  # in force now
    offsets: dict[int, int] = field(default_factory=dict)  # in force now
    injected: dict[str, int] = field(default_factory=dict)  # kind -> count
    notes: list[str] = field(default_factory=list)  # what the summary should say
    problems: list[str] = field(default_factory=list)  # violations seen by the nemesis itself
    # node -> how many process or network faults hit it so far (a big-skew watch needs none)
    disturbances: dict[int, int] = field(default_factory=dict)
    # rng -> a key the workload uses now, to split at (`split` faults); None: splits are skipped
    split_key: object = None

    async def run(self, started_at: float) -> None:
        """Run every lane's faults at their times (trio clock, relative to `started_at`)."""
        async with trio.open_nursery() as nursery:
            for kinds in LANES.values():
                lane = [f for f in self.schedule if f.kind in kinds]
                if lane:
                    nursery.start_soon(self._run_lane, lane, started_at)

    async def _run_lane(self, lane: list[Fault], started_at: float) -> None:
        for fault in lane:
            await trio.sleep_until(started_at + fault.start_s)
            await self._inject(fault)
            await trio.sleep_until(started_at + fault.start_s + fault.duration_s)
            await self._heal(fault)

    def _record(self, f: str, value: dict) -> None:
        self.history.nemesis(f, value)
        self.log(f"nemesis: {f} {value}")

    # -- injecting --------------------------------------------------------------------

    async def _inject(self, fault: Fault) -> None:
        self.injected[fault.kind] = self.injected.get(fault.kind, 0) + 1
        cluster = self.cluster
        nodes = list(fault.nodes)
        if fault.kind in ("kill", "kill-all", "pause", "partition"):
            for node_id in nodes:
                self.disturbances[node_id] = self.disturbances.get(node_id, 0) + 1
        if fault.kind in ("kill", "kill-all"):
            cluster.kill(nodes)
            self._record(fault.kind, {"nodes": nodes})
        elif fault.kind == "pause":
            cluster.pause(nodes)
            self._record("pause", {"nodes": nodes})
        elif fault.kind == "split":
            await self._split()
        elif fault.kind == "partition":
            grudge, shape = fault.grudge, fault.shape
            if grudge is None:
                grudge, shape = await self._leaseholder_grudge()
            # Recorded as it starts: the first node that accepts cuts its links.
            self._record("partition", {"shape": shape, "grudge": {str(n): sorted(d) for n, d in grudge.items() if d}})
            await self._set_grudge(grudge)
        else:
            self._record(fault.kind, {"offsets_ms": {str(n): round(o / 1e6, 2) for n, o in fault.offsets.items()}})
            await self._set_offsets(fault.offsets)
            if fault.kind == "big-skew":
                await self._watch_big_skew(nodes[0], fault.duration_s)

    async def _leaseholder_grudge(self) -> tuple[dict[int, frozenset[int]], str]:
        """Isolate the leaseholder of a busy range (one of the workload's keys)."""
        node_ids = self.cluster.node_ids
        key = self.rng.choice(self.busy_keys)
        leaseholder = None
        with trio.move_on_after(ADMIN_TIMEOUT_S * 2):
            try:
                status = await self.status_client.status()
                for r in status["ranges"]:
                    if r["start_key"] <= key < r["end_key"] and r.get("leaseholder") in node_ids:
                        leaseholder = r["leaseholder"]
            except SpanliteError:
                pass
        if leaseholder is None:  # nobody knew (mid-election, or faults elsewhere): any node
            leaseholder = self.rng.choice(node_ids)
            return isolate(leaseholder, node_ids), f"isolate node {leaseholder} (leaseholder unknown)"
        return isolate(leaseholder, node_ids), f"isolate leaseholder node {leaseholder} of key {key.decode()}"

    async def _set_grudge(self, grudge: dict[int, frozenset[int]]) -> None:
        self.grudge = {n: frozenset(d) for n, d in grudge.items() if d}
        async with trio.open_nursery() as nursery:
            for node_id in self.cluster.node_ids:
                nursery.start_soon(self._send_grudge, node_id)

    async def _send_grudge(self, node_id: int) -> bool:
        dropped = tuple(sorted(self.grudge.get(node_id, ())))
        return await admin(self.cluster.address_of(node_id), ChaosDropPeers(dropped)) is not None

    async def _set_offsets(self, offsets: dict[int, int]) -> None:
        self.offsets.update(offsets)
        async with trio.open_nursery() as nursery:
            for node_id in offsets:
                nursery.start_soon(self._send_offset, node_id)

    async def _send_offset(self, node_id: int) -> bool:
        offset = ChaosClockOffset(self.offsets.get(node_id, 0))
        return await admin(self.cluster.address_of(node_id), offset) is not None

    def _undisturbed(self, node_id: int) -> bool:
        member = self.cluster.members[node_id]
        return member.running and not member.paused and not self.grudge

    async def _watch_big_skew(self, node_id: int, duration_s: float) -> None:
        """The node must stop serving: poll its own status until it says so (or time is up).
        Not saying so is a violation only if no other fault hit it or the network meanwhile
        (a paused, killed or partitioned node may not have been able to measure or answer)."""
        started = trio.current_time()
        undisturbed = self._undisturbed(node_id)
        disturbances = dict(self.disturbances)
        with trio.move_on_after(max(0.0, duration_s - 0.5)):
            while True:
                if await node_serving(self.cluster.address_of(node_id)) is False:
                    after = trio.current_time() - started
                    self._record("stopped-serving", {"nodes": [node_id], "after_s": round(after, 2)})
                    return
                await trio.sleep(0.25)
        what = f"big-skew: node {node_id} did not report that it stopped serving within {duration_s - 0.5:.1f}s"
        if undisturbed and self._undisturbed(node_id) and disturbances == self.disturbances:
            self.problems.append(what + " though no other fault hit the cluster's processes or network: its clock "
                                 "monitor missed an offset beyond max offset")
        else:
            self.notes.append(what + " (another fault hit it or the network meanwhile)")

    # -- healing ----------------------------------------------------------------------

    async def _split(self) -> None:
        """Split at a key the workload is using, through the real client (a consensus split in
        the range's log, then the meta update); a split that does not finish in time is noted,
        not a violation: the checkers judge what the workload saw."""
        if self.split_key is None:
            return
        key = self.split_key(self.rng)
        outcome = "timeout"
        with trio.move_on_after(SPLIT_TIMEOUT_S):
            try:
                await self.status_client.admin_split(key)
                outcome = "ok"
            except SpanliteError as e:
                outcome = f"failed: {e.message}"
        self._record("split", {"key": key.decode("ascii", "backslashreplace"), "outcome": outcome})

    async def _heal(self, fault: Fault) -> None:
        nodes = list(fault.nodes)
        if fault.kind == "split":
            return  # a split is not undone
        if fault.kind in ("kill", "kill-all"):
            await self._restart(nodes)
        elif fault.kind == "pause":
            self.cluster.resume(nodes)
            self._record("resume", {"nodes": nodes})
            await self._reapply(nodes)
        elif fault.kind == "partition":
            await self._set_grudge({})
            self._record("heal-partition", {})
        else:
            await self._set_offsets({n: 0 for n in fault.offsets})
            self._record("reset-clock", {"nodes": sorted(fault.offsets)})

    async def _restart(self, nodes: list[int]) -> None:
        try:
            await self.cluster.restart(nodes)
        except Exception as e:  # noqa: BLE001 - ChaosSetupError: reported, the run goes on.
            self._record("restart-failed", {"nodes": nodes, "error": str(e)})
            self.notes.append(f"restart of nodes {nodes} failed: {e}")
            return
        self._record("restart", {"nodes": nodes})
        await self._reapply(nodes)

    async def _reapply(self, nodes: list[int]) -> None:
        """A restarted node forgot the faults in force; a resumed one missed any change made
        while it was stopped (a partition healed, a clock reset): send it the current ones."""
        async with trio.open_nursery() as nursery:
            for node_id in nodes:
                nursery.start_soon(self._send_grudge, node_id)
                nursery.start_soon(self._send_offset, node_id)

    async def heal_all(self) -> None:
        """End every fault; retry each node's admin requests until accepted (or the deadline)."""
        cluster = self.cluster
        cluster.resume(cluster.node_ids)
        down = cluster.down()
        if down:
            await self._restart(down)
        self.grudge, self.offsets = {}, {n: 0 for n in cluster.node_ids}
        with trio.move_on_after(HEAL_DEADLINE_S):
            async with trio.open_nursery() as nursery:
                for node_id in cluster.node_ids:
                    nursery.start_soon(self._heal_node, node_id)
        self._record("heal-all", {"nodes": cluster.node_ids})

    async def _heal_node(self, node_id: int) -> None:
        while not (await self._send_grudge(node_id) and await self._send_offset(node_id)):
            await trio.sleep(0.5)
