"""Splits through consensus on an embedded cluster (docs/SHARDING.md)."""

import pytest
import trio

from cluster.embedded import EmbeddedCluster
from ranges.api import BadRequest
from ranges.keys import KEY_MAX, SYSTEM_KEY_MAX


def _tiles(ranges: list[dict]) -> bool:
    spans = sorted((r["start_key"], r["end_key"]) for r in ranges)
    if spans[0][0] != b"" or spans[-1][1] != KEY_MAX:
        return False
    return all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


async def test_requested_split_keeps_every_key_reachable(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        for c in b"abcdefghijklmnopqrstuvwxyz":
            await db.put(bytes([c]), b"v" + bytes([c]))
        left, right = await db.admin_split(b"m")
        assert left.end_key == b"m" and right.start_key == b"m"
        assert right.range_id != left.range_id
        rows = await db.scan(b"a", b"zz")
        assert [k for k, _ in rows] == [bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyz"]
        await db.put(b"n2", b"right side")
        await db.put(b"b2", b"left side")
        assert await db.get(b"n2") == b"right side"
        assert await db.get(b"b2") == b"left side"
        status = await db.status()
        assert len(status["ranges"]) == 3
        assert _tiles(status["ranges"])


async def test_bad_split_keys_are_rejected_and_nothing_changes(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        await db.admin_split(b"m")
        with pytest.raises(BadRequest, match="boundary"):
            await db.admin_split(b"m")
        with pytest.raises((BadRequest, ValueError)):
            await db.admin_split(b"")
        with pytest.raises((BadRequest, ValueError)):
            await db.admin_split(b"\x01meta")
        assert len((await db.status())["ranges"]) == 3


async def test_many_splits_under_concurrent_writes_lose_nothing():
    async with EmbeddedCluster(nodes=3) as cluster:
        acked: set[bytes] = set()

        async def writer(db, i):
            for j in range(60):
                key = b"w%02d%03d" % (i, j)
                await db.put(key, b"x")
                acked.add(key)

        async def splitter(db):
            for i in range(20):
                await db.admin_split(b"w%02d" % (i % 8) + b"%03d" % (i * 3))
                await trio.sleep(0)

        async with cluster.client() as db:
            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(writer, db, i)
                nursery.start_soon(splitter, db)
            rows = await db.scan(SYSTEM_KEY_MAX, KEY_MAX)
            assert {k for k, _ in rows} == acked
            status = await db.status()
            assert len(status["ranges"]) == 22
            assert _tiles(status["ranges"])


async def test_concurrent_splits_of_one_range_all_succeed(spanlite_cluster):
    """Splits racing on the same range: the losers restart from the new descriptor, so a
    user never sees a 'stale generation' error for a split nobody else asked for."""
    split_keys = [b"c%02d" % i for i in range(12)]
    async with spanlite_cluster.client() as db:
        async with trio.open_nursery() as nursery:
            for key in split_keys:
                nursery.start_soon(db.admin_split, key)
        status = await db.status()
        starts = {r["start_key"] for r in status["ranges"]}
        assert set(split_keys) <= starts
        assert _tiles(status["ranges"])


async def test_status_covers_ranges_the_asked_node_does_not_hold():
    """On 5 nodes the ranges live on 3: status asked of node 5 still lists every range,
    each with its leaseholder (the client merges every node's view)."""
    from cluster.client import connect

    async with EmbeddedCluster(nodes=5) as cluster:
        async with cluster.client() as db:
            await db.admin_split(b"m")
        async with connect([cluster.addresses[4]], timeout_s=15) as db:
            status = await db.status()
        assert status["node_id"] == 5
        assert len(status["ranges"]) == 3 and _tiles(status["ranges"])
        assert all(len(r["replicas"]) == 3 for r in status["ranges"])
