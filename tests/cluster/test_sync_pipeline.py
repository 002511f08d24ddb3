"""The node's sync pipeline: no cycle's output leaves before a WAL sync covering its writes.

Driven with a fake engine whose `sync_wal` blocks (in its worker thread) until the test lets
it go, so the test sees exactly what is held while a sync is in flight.
"""

from __future__ import annotations

import threading

import trio

from cluster.node import _SyncPipeline
from ranges.store import Output


class FakeDeferringEngine:
    """The deferred-sync surface of RocksEngine; `sync_wal` waits for `allow_sync`."""

    defers_syncs = True

    def __init__(self) -> None:
        self.syncs_requested = 0
        self.syncs_durable = 0
        self.allow_sync = threading.Semaphore(0)
        self.syncs_started = 0
        self.requested_at_sync_start: list[int] = []

    def write_synced(self) -> None:
        self.syncs_requested += 1

    def sync_wal(self) -> bool:
        self.syncs_started += 1
        self.requested_at_sync_start.append(self.syncs_requested)
        self.allow_sync.acquire()
        return True

    def mark_durable(self, upto: int) -> None:
        assert upto <= self.syncs_requested
        self.syncs_durable = max(self.syncs_durable, upto)


def output(name: str) -> Output:
    return Output(peer_frames={2: {"m": [name]}}, responses=[])


async def settle() -> None:
    for _ in range(20):
        await trio.sleep(0.005)


async def test_outputs_wait_for_a_sync_that_covers_their_cycle_and_leave_in_order(nursery):
    engine = FakeDeferringEngine()
    released: list[str] = []
    pipeline = _SyncPipeline(engine, lambda out: released.append(out.peer_frames[2]["m"][0]))
    nursery.start_soon(pipeline.run)

    pipeline.submit(output("nothing-to-sync"))  # no synced write yet: leaves at once
    assert released == ["nothing-to-sync"]

    engine.write_synced()  # cycle 1 persisted a batch that needs a sync
    pipeline.submit(output("cycle-1"))
    await settle()
    assert released == ["nothing-to-sync"] and engine.syncs_started == 1  # held while the sync runs

    engine.write_synced()  # cycle 2 runs while cycle 1's sync is in flight
    pipeline.submit(output("cycle-2"))
    pipeline.submit(output("cycle-3-no-new-write"))  # depends on cycle 2's state: must wait too
    engine.allow_sync.release()  # the first sync returns: it covered cycle 1 only
    await settle()
    assert released == ["nothing-to-sync", "cycle-1"]
    assert engine.syncs_started == 2 and engine.requested_at_sync_start == [1, 2]

    engine.allow_sync.release()
    await settle()
    assert released == ["nothing-to-sync", "cycle-1", "cycle-2", "cycle-3-no-new-write"]
    assert engine.syncs_durable == 2 and pipeline.syncs == 2

    pipeline.submit(output("after"))  # everything durable, nothing held: no sync needed
    assert released[-1] == "after" and engine.syncs_started == 2


async def test_empty_outputs_are_not_held(nursery):
    engine = FakeDeferringEngine()
    pipeline = _SyncPipeline(engine, lambda out: (_ for _ in ()).throw(AssertionError("released")))
    engine.write_synced()
    pipeline.submit(Output())
    assert not pipeline.held


async def test_a_closed_engine_releases_nothing(nursery):
    engine = FakeDeferringEngine()
    engine.sync_wal = lambda: False  # closed under the pipeline (a killed node)
    released = []
    pipeline = _SyncPipeline(engine, released.append)
    engine.write_synced()
    pipeline.submit(output("never"))
    await pipeline.run()  # returns instead of releasing
    assert released == [] and engine.syncs_durable == 0
