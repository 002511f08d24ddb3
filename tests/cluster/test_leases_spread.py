"""Leaseholders spread across nodes; ranges split automatically past the size threshold."""

import trio

from cluster.embedded import EmbeddedCluster
from ranges.store import StoreConfig


async def test_leases_spread_over_all_nodes_after_splits():
    config = StoreConfig(lease_balance_ticks=4)
    async with EmbeddedCluster(nodes=3, store_config=config) as cluster:
        async with cluster.client() as db:
            for i in range(8):
                await db.admin_split(b"s%02d" % i)
            with trio.fail_after(30):
                while True:
                    status = await db.status()
                    holders = {r["leaseholder"] for r in status["ranges"]}
                    if {1, 2, 3} <= holders:
                        break
                    await trio.sleep(0.2)
            for i in range(8):  # every range still serves reads and writes after its lease moved
                await db.put(b"s%02dx" % i, b"v")
                assert await db.get(b"s%02dx" % i) == b"v"


async def test_range_splits_automatically_past_the_threshold():
    config = StoreConfig(split_threshold_bytes=20_000, split_check_ticks=2)
    async with EmbeddedCluster(nodes=3, store_config=config) as cluster:
        async with cluster.client() as db:
            for i in range(300):
                await db.put(b"auto%04d" % i, b"x" * 200)
            with trio.fail_after(30):
                while len((await db.status())["ranges"]) < 4:
                    await trio.sleep(0.2)
            rows = await db.scan(b"auto", b"autp")
            assert len(rows) == 300
