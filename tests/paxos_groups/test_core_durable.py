"""Durable state codec: Ready -> WriteBatch -> engine -> DurableState, on both engines."""

from __future__ import annotations

import random

import cbor2
import pytest

from paxos_groups.ballot import Ballot
from paxos_groups.core import DurableState, GroupConfig, PaxosGroup, Ready
from paxos_groups.durable import (
    DurableStateCorrupt,
    chosen_upto_key,
    first_index_key,
    load_durable_state,
    log_key,
    needs_sync,
    promised_key,
    ready_to_batch,
)
from paxos_groups.engine import MemoryEngine, RocksEngine
from paxos_groups.messages import Accept, InstallSnapshot, Prepare

GID = 3


@pytest.fixture(params=["memory", "rocks"])
def engine_factory(request, tmp_path):
    engines = []

    def make(reopen=None):
        if request.param == "memory":
            engine = reopen or MemoryEngine()
        else:
            if reopen is not None:
                reopen.close()
                engines.remove(reopen)
            engine = RocksEngine(str(tmp_path / "db"))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def test_key_layout_matches_the_architecture_doc():
    prefix = b"\x01" + GID.to_bytes(8, "big")
    assert promised_key(GID) == prefix + b"p"
    assert chosen_upto_key(GID) == prefix + b"c"
    assert first_index_key(GID) == prefix + b"f"
    assert log_key(GID, 258) == prefix + b"l" + (258).to_bytes(8, "big")


def test_ready_to_batch_encodes_each_field():
    ready = Ready(
        promised=Ballot(4, 2),
        accepted=[(5, Ballot(4, 2), b"v"), (6, Ballot(4, 2), None)],
        chosen_upto=5,
        truncate_upto=2,
        truncate_slots=[1, 2],
    )
    batch = dict(ready_to_batch(GID, ready))
    assert cbor2.loads(batch[promised_key(GID)]) == [4, 2]
    assert cbor2.loads(batch[log_key(GID, 5)]) == [4, 2, b"v"]
    assert cbor2.loads(batch[log_key(GID, 6)]) == [4, 2, None]
    assert batch[log_key(GID, 1)] is None and batch[log_key(GID, 2)] is None
    assert cbor2.loads(batch[first_index_key(GID)]) == 3
    assert cbor2.loads(batch[chosen_upto_key(GID)]) == 5


def test_needs_sync_only_for_promises_and_accepted_entries():
    assert needs_sync(Ready(promised=Ballot(1, 1)))
    assert needs_sync(Ready(accepted=[(1, Ballot(1, 1), b"x")]))
    assert not needs_sync(Ready(chosen_upto=4, truncate_upto=2, truncate_slots=[1, 2]))
    assert not needs_sync(Ready())
    assert ready_to_batch(GID, Ready()) == []


def test_empty_engine_loads_the_initial_state(engine_factory):
    engine = engine_factory()
    assert load_durable_state(engine, GID) == DurableState()


def _drive(engine, g: PaxosGroup) -> None:
    while g.has_ready():
        ready = g.ready()
        engine.write(ready_to_batch(g.group_id, ready), sync=needs_sync(ready))
        g.advance(ready)


def test_round_trip_through_the_engine_and_a_reopen(engine_factory):
    engine = engine_factory()
    other_group = PaxosGroup(GID + 1, 2, (1, 2, 3), DurableState(), GroupConfig(), random.Random(0))
    g = PaxosGroup(GID, 2, (1, 2, 3), DurableState(), GroupConfig(), random.Random(0))
    g.step(1, Prepare(GID, Ballot(1, 1), 1))
    g.step(1, Accept(GID, Ballot(1, 1), tuple((s, f"v{s}".encode()) for s in range(1, 11)), 0))
    g.step(1, Accept(GID, Ballot(1, 1), ((11, None), (12, [1, b"x", {"k": 2}])), 8))
    other_group.step(1, Accept(GID + 1, Ballot(5, 1), ((1, b"other"),), 0))
    _drive(engine, g)
    _drive(engine, other_group)
    g.compact(4)
    _drive(engine, g)
    engine = engine_factory(reopen=engine)
    state = load_durable_state(engine, GID)
    assert state.promised == Ballot(1, 1)
    assert state.first_index == 5 and state.chosen_upto == 8
    assert sorted(state.accepted) == list(range(5, 13))
    assert state.accepted[12] == (Ballot(1, 1), [1, b"x", {"k": 2}])
    assert state.accepted[11] == (Ballot(1, 1), None)
    assert load_durable_state(engine, GID + 1).accepted == {1: (Ballot(5, 1), b"other")}
    restarted = PaxosGroup(GID, 2, (1, 2, 3), state, GroupConfig(), random.Random(0), applied_index=6)
    ready = restarted.ready()
    assert [s for s, _ in ready.committed] == [7, 8]


def test_snapshot_install_truncation_round_trips(engine_factory):
    engine = engine_factory()
    g = PaxosGroup(GID, 2, (1, 2, 3), DurableState(), GroupConfig(), random.Random(0))
    g.step(1, Accept(GID, Ballot(1, 1), tuple((s, s) for s in range(1, 6)), 0))
    _drive(engine, g)
    g.step(1, InstallSnapshot(GID, Ballot(1, 1), 3, "snap"))
    _drive(engine, g)
    state = load_durable_state(engine, GID)
    assert state.first_index == 4 and state.chosen_upto == 3
    assert sorted(state.accepted) == [4, 5]


def test_memory_engine_crash_loses_unsynced_chosen_upto_but_never_synced_accepts():
    engine = MemoryEngine()
    g = PaxosGroup(GID, 2, (1, 2, 3), DurableState(), GroupConfig(), random.Random(0))
    g.step(1, Accept(GID, Ballot(1, 1), ((1, b"a"),), 0))
    _drive(engine, g)
    g.step(1, Accept(GID, Ballot(1, 1), (), 1))  # only chosen_upto changes: an unsynced write
    _drive(engine, g)
    engine.crash()
    state = load_durable_state(engine, GID)
    assert state.accepted == {1: (Ballot(1, 1), b"a")} and state.chosen_upto == 0


@pytest.mark.parametrize(
    "key,value,needle",
    [
        (promised_key(GID), cbor2.dumps([1]), "promised"),
        (promised_key(GID), b"\xff\xff", "promised"),
        (chosen_upto_key(GID), cbor2.dumps("x"), "integer"),
        (first_index_key(GID), cbor2.dumps(0), "integer"),
        (log_key(GID, 1), cbor2.dumps([1, 1]), "slot 1"),
        (log_key(GID, 1), cbor2.dumps([1, True, b"v"]), "slot 1"),
        (log_key(GID, 1) + b"\x00", cbor2.dumps([1, 1, b"v"]), "malformed log key"),
    ],
)
def test_corrupt_state_is_reported_not_loaded(key, value, needle):
    engine = MemoryEngine()
    engine.write([(key, value)], sync=True)
    with pytest.raises(DurableStateCorrupt, match=needle):
        load_durable_state(engine, GID)


def test_log_below_first_index_is_corrupt():
    engine = MemoryEngine()
    engine.write(
        [
            (log_key(GID, 1), cbor2.dumps([1, 1, b"v"])),
            (first_index_key(GID), cbor2.dumps(3)),
            (chosen_upto_key(GID), cbor2.dumps(5)),
        ],
        sync=True,
    )
    with pytest.raises(DurableStateCorrupt, match="below first_index"):
        load_durable_state(engine, GID)
