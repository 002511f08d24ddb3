"""The embedded cluster end to end: real nodes, real transport, real stores."""

import pytest
import trio

from cluster.embedded import EmbeddedCluster
from ranges.api import BadRequest
from ranges.keys import MAX_VALUE_BYTES


async def _leaseholder_index(cluster: EmbeddedCluster) -> int:
    status = await cluster.status()
    holders = [r["leaseholder"] for r in status["ranges"] if r["leaseholder"] is not None]
    assert holders, f"no leaseholder in {status}"
    return holders[0] - 1


async def test_put_get_delete_scan(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        await db.put(b"a", b"1")
        await db.put(b"b", b"2")
        await db.put(b"c", b"3")
        assert await db.get(b"b") == b"2"
        await db.delete(b"b")
        assert await db.get(b"b") is None
        assert await db.get(b"missing") is None
        assert await db.scan(b"a", b"z") == [(b"a", b"1"), (b"c", b"3")]
        assert await db.scan(b"a", b"z", limit=1) == [(b"a", b"1")]


async def test_concurrent_clients_read_their_writes(spanlite_cluster):
    async def worker(db, i):
        for j in range(20):
            key = b"w%d-%d" % (i, j)
            await db.put(key, key)
            assert await db.get(key) == key

    async with spanlite_cluster.client() as db:
        async with trio.open_nursery() as nursery:
            for i in range(16):
                nursery.start_soon(worker, db, i)
        assert len(await db.scan(b"w", b"x")) == 16 * 20


async def test_oversized_value_is_rejected_and_nothing_written(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        with pytest.raises((BadRequest, ValueError), match="too large|limit"):
            await db.put(b"big", b"x" * (MAX_VALUE_BYTES + 1))
        assert await db.get(b"big") is None


async def test_writes_resume_after_leaseholder_is_killed():
    async with EmbeddedCluster(nodes=3) as cluster:
        async with cluster.client() as db:
            await db.put(b"before", b"1")
            victim = await _leaseholder_index(cluster)
            cluster.kill(victim)
            started = trio.current_time()
            await db.put(b"after", b"2")
            assert trio.current_time() - started < 5.0
            assert await db.get(b"before") == b"1"
            await cluster.restart(victim)
            assert await db.get(b"after") == b"2"


async def test_kill_all_and_restart_keeps_acknowledged_writes():
    async with EmbeddedCluster(nodes=3) as cluster:
        async with cluster.client() as db:
            for i in range(50):
                await db.put(b"k%03d" % i, b"v%d" % i)
        for i in range(3):
            cluster.kill(i)
        for i in range(3):
            await cluster.restart(i)
        async with cluster.client() as db:
            rows = await db.scan(b"k", b"l")
            assert rows == [(b"k%03d" % i, b"v%d" % i) for i in range(50)]


async def test_minority_partition_leaves_cluster_available():
    async with EmbeddedCluster(nodes=3) as cluster:
        async with cluster.client() as db:
            await db.put(b"x", b"1")
            victim = await _leaseholder_index(cluster)
            others = [i for i in range(3) if i != victim]
            cluster.partition([victim], others)
            await db.put(b"x", b"2")
            assert await db.get(b"x") == b"2"
            cluster.heal()
            assert await db.get(b"x") == b"2"


async def test_disk_stores_survive_kill_and_restart():
    async with EmbeddedCluster(nodes=3, store="disk") as cluster:
        async with cluster.client() as db:
            await db.put(b"durable", b"yes")
        for i in range(3):
            cluster.kill(i)
        for i in range(3):
            await cluster.restart(i)
        async with cluster.client() as db:
            assert await db.get(b"durable") == b"yes"


async def test_a_node_skewed_beyond_max_offset_stops_serving_and_logs_sparingly(caplog):
    # Its peers refuse its frames (their timestamps are too far ahead), but the clock probes
    # in those frames must still be measured, or the node never learns that it is the odd one.
    async with EmbeddedCluster(nodes=3, max_offset_ns=20_000_000) as cluster:
        async with cluster.client() as db:
            await db.put(b"k", b"v")
            cluster.skew(1, 60_000_000)  # 3x max offset ahead
            store = cluster.nodes[1].store
            with trio.fail_after(10):
                while store.clock.serving:
                    await trio.sleep(0.05)
            await trio.sleep(1.0)
            drops = [r for r in caplog.records if "dropping frames from node" in r.getMessage()]
            assert 0 < len(drops) <= 4, f"{len(drops)} lines for a second of refused frames"
            cluster.skew(1, 0)
            with trio.fail_after(10):
                while not store.clock.serving:
                    await trio.sleep(0.05)
            assert await db.get(b"k") == b"v"
