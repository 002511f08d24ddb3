"""`spanlite chaos`: the runner end to end (real node processes), and its parts.

The 20-second run is part of `make test`; the runs that must catch planted bugs take a
minute each and are marked slow (README, "Chaos testing", lists the commands).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.chaos.history import load_history
from cluster.chaos.nemesis import (
    DURATION_S,
    LANES,
    SKEW_FRACTION_MAX,
    make_schedule,
    parse_nemeses,
    partition_grudge,
)
from cluster.node import HeldWritesEngine, Node, NodeConfig
from paxos_groups.engine import MemoryEngine
from ranges.api import BadRequest, ChaosClockOffset, ChaosDropPeers, decode_request, encode_request

REPO = Path(__file__).resolve().parents[2]
MAX_OFFSET_NS = 20_000_000


def chaos_command() -> list[str]:
    """`spanlite chaos` once it is wired into cluster/cli.py; its own module until then."""
    from cluster import cli

    if "chaos" in getattr(cli, "COMMANDS", {}):
        return [sys.executable, "-m", "cluster.cli", "chaos"]
    return [sys.executable, "-m", "cluster.chaos.cli"]


def run_chaos(tmp_path: Path, *args: str, timeout_s: float) -> subprocess.CompletedProcess:
    command = chaos_command() + ["--dir", str(tmp_path / "run"), "--history", str(tmp_path / "history.jsonl"), *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)


# ---------------------------------------------------------------------------------------
# end to end


def test_20_second_run_with_every_nemesis_is_valid(tmp_path):
    done = run_chaos(tmp_path, "--nodes", "3", "--duration", "20s", "--workload", "register",
                     "--nemesis", "kill,pause,partition,skew,split", "--seed", "5", "--workers", "8", timeout_s=45)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "result: VALID" in done.stdout
    assert "workload register:" in done.stdout and "anomalies: none" in done.stdout
    assert "faults injected:" in done.stdout
    events = load_history(tmp_path / "history.jsonl")
    faults = {e["f"] for e in events if e["process"] == "nemesis"}
    assert {"schedule", "heal-all"} <= faults
    assert sum(e["type"] == "ok" for e in events) > 100, "the workload hardly ran"


def test_a_cluster_that_cannot_start_is_a_setup_error(tmp_path):
    done = run_chaos(tmp_path, "--nodes", "2", "--duration", "5s", timeout_s=30)
    assert done.returncode == 2
    assert "--nodes must be between 3 and 9" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("bug, workload, nemesis, seed", [
    ("skip-commit-wait", "append", "skew", 1),
    ("ack-before-fsync", "append", "kill", 1),
    ("release-locks-before-commit-record", "bank", "kill,pause,partition,skew", 1),
    ("read-ignores-prepared", "bank", "kill,pause,partition,skew", 1),
    ("skip-reproposal", "register", "kill,pause,partition,skew", 1),
    ("split-drops-rhs-write", "register", "kill,pause,partition,skew,split", 1),
])
def test_planted_bug_is_caught_by_a_60_second_run(tmp_path, bug, workload, nemesis, seed):
    done = run_chaos(tmp_path, "--nodes", "5", "--duration", "60s", "--workload", workload, "--nemesis", nemesis,
                     "--seed", str(seed), "--inject-bug", bug, "--json", timeout_s=240)
    assert done.returncode == 1, f"planted bug {bug} was not caught:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert report["anomalies"] and report["bugs"] == [bug]


# ---------------------------------------------------------------------------------------
# the schedule


def test_a_seed_names_the_schedule():
    one = make_schedule(5, [1, 2, 3, 4, 5], 60, ("kill", "pause", "partition", "skew"), MAX_OFFSET_NS)
    again = make_schedule(5, [1, 2, 3, 4, 5], 60, ("kill", "pause", "partition", "skew"), MAX_OFFSET_NS)
    other = make_schedule(6, [1, 2, 3, 4, 5], 60, ("kill", "pause", "partition", "skew"), MAX_OFFSET_NS)
    assert one == again and one != other


@pytest.mark.parametrize("seed", range(20))
def test_schedules_keep_their_promises(seed):
    nodes = [1, 2, 3, 4, 5]
    schedule = make_schedule(seed, nodes, 60, ("kill", "pause", "partition", "skew"), MAX_OFFSET_NS)
    assert {f.kind for f in schedule} >= {"kill-all"}, "a run of 60 s with kill gets a kill-all"
    for fault in schedule:
        assert 0 < fault.start_s and fault.start_s + fault.duration_s <= 59.0, "every fault heals before the end"
        assert fault.duration_s <= DURATION_S[fault.kind][1]
        if fault.kind in ("kill", "pause"):
            assert 1 <= len(fault.nodes) <= 2, "a minority"
        if fault.kind == "skew":
            assert all(abs(o) <= SKEW_FRACTION_MAX * MAX_OFFSET_NS for o in fault.offsets.values())
        if fault.kind == "big-skew":
            assert len(fault.nodes) == 1 and abs(fault.offsets[fault.nodes[0]]) > MAX_OFFSET_NS
    for kinds in LANES.values():
        lane = [f for f in schedule if f.kind in kinds]
        for before, after in zip(lane, lane[1:]):
            assert before.start_s + before.duration_s < after.start_s, "faults of one lane never overlap"


def test_only_the_chosen_nemeses_run():
    schedule = make_schedule(1, [1, 2, 3], 60, ("pause",), MAX_OFFSET_NS)
    assert schedule and {f.kind for f in schedule} == {"pause"}
    assert make_schedule(1, [1, 2, 3], 60, (), MAX_OFFSET_NS) == []
    with pytest.raises(ValueError, match="unknown nemesis crash"):
        parse_nemeses("kill,crash")


@pytest.mark.parametrize("shape", ["halves", "bridge", "majority-ring"])
@pytest.mark.parametrize("nodes", [3, 5])
def test_partitions_are_symmetric_and_leave_no_node_alone_except_by_design(shape, nodes):
    import random

    node_ids = list(range(1, nodes + 1))
    grudge = partition_grudge(random.Random(nodes), shape, node_ids)
    for node, dropped in grudge.items():
        assert node not in dropped
        assert all(node in grudge[other] for other in dropped), "a cut link is cut at both ends"
    assert any(grudge.values()), "a partition cuts something"
    if shape == "majority-ring" and nodes == 5:
        views = [frozenset(set(node_ids) - grudge[n]) for n in node_ids]
        assert all(len(v) == 3 for v in views) and len(set(views)) == 5, "each sees its own majority"
    if shape == "bridge":
        assert any(not grudge[n] for n in node_ids), "the bridge node talks to everyone"


# ---------------------------------------------------------------------------------------
# the node-side hooks


def test_chaos_requests_round_trip_and_are_validated():
    for request in (ChaosDropPeers((2, 3)), ChaosDropPeers(()), ChaosClockOffset(-25_000_000)):
        assert decode_request(encode_request(request)) == request
    with pytest.raises(BadRequest, match="clock offset"):
        decode_request(["chaos-clock", 10**12])
    with pytest.raises(BadRequest, match="positive node ids"):
        decode_request(["chaos-drop", [0]])


def test_a_node_refuses_chaos_requests_unless_enabled():
    node = Node(MemoryEngine(), NodeConfig(listen="127.0.0.1:0"))
    answer = node._chaos_admin(ChaosDropPeers((2,)))
    assert isinstance(answer, BadRequest) and "--enable-chaos-admin" in answer.message
    assert node._message_filter is None


def test_chaos_requests_partition_and_skew_an_enabled_node():
    node = Node(MemoryEngine(), NodeConfig(listen="127.0.0.1:0", chaos_admin=True))
    assert node._chaos_admin(ChaosDropPeers((2,))) == {"dropped": [2]}
    allowed = node._message_filter
    assert not allowed(1, 2) and not allowed(2, 1) and allowed(1, 3) and allowed(3, 1)
    node._chaos_admin(ChaosDropPeers(()))
    assert node._message_filter is None
    assert node._chaos_admin(ChaosClockOffset(30_000_000))["offset_ns"] == 30_000_000
    assert node.physical.offset_ns == 30_000_000


class _Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def test_held_writes_are_readable_and_reach_the_engine_only_when_old_enough():
    base, clock = MemoryEngine(), _Clock()
    base.write([(b"a", b"0"), (b"c", b"0"), (b"e", b"0")], sync=True)
    engine = HeldWritesEngine(base, clock, hold_ns=100)
    engine.write([(b"b", b"1"), (b"c", None)], sync=True)
    clock.ns = 50
    engine.write([(b"d", b"2"), (b"b", b"3")], sync=True)
    assert engine.get(b"b") == b"3" and engine.get(b"c") is None and base.get(b"b") is None
    assert list(engine.scan(b"a", b"z")) == [(b"a", b"0"), (b"b", b"3"), (b"d", b"2"), (b"e", b"0")]
    assert list(engine.scan_reverse(b"a", b"z", 2)) == [(b"e", b"0"), (b"d", b"2")]
    assert engine.first_in(b"c", b"z") == (b"d", b"2")
    clock.ns = 120
    assert engine.flush_due() == 1  # only the first batch is 100 ns old
    assert base.get(b"b") == b"1" and base.get(b"c") is None and base.get(b"d") is None
    assert engine.get(b"b") == b"3", "a later held write still shadows the engine"
    restarted = HeldWritesEngine(base, clock)  # after a kill -9: what the engine got, a prefix
    assert restarted.get(b"b") == b"1" and restarted.get(b"d") is None and restarted.get(b"c") is None
