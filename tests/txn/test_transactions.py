"""Read-write transactions over an embedded cluster: one-phase, two-phase, conflicts."""

import pytest
import trio

from cluster.embedded import EmbeddedCluster
from txn.transaction import TxnClosed


async def test_single_range_transaction_commits_in_one_phase(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        await db.put(b"a", b"1")
        async with db.transaction() as txn:
            assert await txn.get(b"a") == b"1"
            txn.put(b"a", b"2")
            txn.put(b"b", b"new")
            assert await txn.get(b"b") == b"new"  # reads its own writes
        assert txn.commit_ts is not None
        assert await db.get(b"a") == b"2" and await db.get(b"b") == b"new"


async def test_cross_range_transaction_commits_atomically(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        await db.admin_split(b"m")
        await db.put(b"a", b"100")
        await db.put(b"z", b"0")
        async with db.transaction() as txn:
            a = int(await txn.get(b"a"))
            z = int(await txn.get(b"z"))
            txn.put(b"a", str(a - 30).encode())
            txn.put(b"z", str(z + 30).encode())
        assert txn.commit_ts is not None
        # The participants are resolved in the background: the values appear.
        with trio.fail_after(5):
            while await db.get(b"z") != b"30":
                await trio.sleep(0.01)
        assert await db.get(b"a") == b"70"


async def test_exception_in_the_block_aborts_and_writes_nothing(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        with pytest.raises(RuntimeError):
            async with db.transaction() as txn:
                txn.put(b"k", b"v")
                raise RuntimeError("changed my mind")
        assert await db.get(b"k") is None
        with pytest.raises(TxnClosed):
            await txn.get(b"k")


async def test_transaction_scan_sees_buffered_writes_across_ranges(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        await db.admin_split(b"m")
        for key in (b"b", b"d", b"p", b"x"):
            await db.put(key, b"v" + key)
        async with db.transaction() as txn:
            txn.delete(b"d")
            txn.put(b"q", b"new")
            rows = await txn.scan(b"a", b"z")
        assert [k for k, _ in rows] == [b"b", b"p", b"q", b"x"]


async def test_concurrent_transfers_conserve_the_total():
    """The bank: concurrent cross-range transfers; every snapshot sees the same total."""
    accounts = [b"acct%02d" % i for i in range(8)]
    async with EmbeddedCluster(nodes=3) as cluster:
        async with cluster.client() as db:
            for key in (b"acct02", b"acct04", b"acct06"):
                await db.admin_split(key)
            for key in accounts:
                await db.put(key, b"100")

            async def transfer(txn, src, dst, amount):
                a = int(await txn.get(src))
                b = int(await txn.get(dst))
                txn.put(src, str(a - amount).encode())
                txn.put(dst, str(b + amount).encode())

            async def worker(seed):
                import random
                rng = random.Random(seed)
                for _ in range(15):
                    src, dst = rng.sample(accounts, 2)
                    await db.run_transaction(lambda txn: transfer(txn, src, dst, rng.randrange(1, 20)))

            totals = []

            async def auditor():
                for _ in range(20):
                    rows, _ = await db.read_at(b"acct", b"acct99")
                    totals.append(sum(int(v) for _, v in rows))
                    await trio.sleep(0.02)

            async with trio.open_nursery() as nursery:
                for seed in range(4):
                    nursery.start_soon(worker, seed)
                nursery.start_soon(auditor)
            rows, _ = await db.read_at(b"acct", b"acct99")
            assert sum(int(v) for _, v in rows) == 800
            assert totals and all(total == 800 for total in totals), totals


async def test_external_consistency_under_clock_skew():
    """T1 acknowledged before T2 starts => T2.commit_ts > T1.commit_ts, with node clocks
    skewed within max offset (one node 45 ms ahead, one 45 ms behind, max offset 100 ms)."""
    async with EmbeddedCluster(nodes=3, max_offset_ns=100_000_000) as cluster:
        cluster.skew(0, 45_000_000)
        cluster.skew(1, -45_000_000)
        async with cluster.client() as db:
            for key in (b"g", b"n", b"t"):
                await db.admin_split(key)
            await trio.sleep(2.5)  # Let the lease balancer spread the leases over the nodes.
            keys = [b"c", b"h", b"p", b"w"]
            previous = None
            for i in range(24):
                async with db.transaction() as txn:
                    txn.put(keys[i % 4], b"%d" % i)
                    if i % 3:
                        txn.put(keys[(i + 1) % 4], b"%d" % i)  # two ranges: two-phase commit
                assert txn.commit_ts is not None
                if previous is not None:
                    assert txn.commit_ts > previous, f"transaction {i} committed at {txn.commit_ts}, before {previous}"
                previous = txn.commit_ts


async def test_bank_total_holds_while_nodes_are_killed_and_restarted():
    """Concurrent cross-range transfers while a node at a time is killed and restarted
    (disk stores): no transaction is half-applied, the total never changes."""
    import random

    accounts = [b"acct%02d" % i for i in range(6)]
    async with EmbeddedCluster(nodes=3, store="disk") as cluster:
        async with cluster.client(timeout_s=30) as db:
            for key in (b"acct02", b"acct04"):
                await db.admin_split(key)
            for key in accounts:
                await db.put(key, b"100")
            stop = trio.Event()

            async def transfer(txn, src, dst, amount):
                a = int(await txn.get(src))
                b = int(await txn.get(dst))
                txn.put(src, str(a - amount).encode())
                txn.put(dst, str(b + amount).encode())

            async def worker(seed):
                rng = random.Random(seed)
                while not stop.is_set():
                    src, dst = rng.sample(accounts, 2)
                    try:
                        await db.run_transaction(lambda txn: transfer(txn, src, dst, rng.randrange(1, 20)),
                                                 max_attempts=4)
                    except Exception:  # noqa: BLE001 - aborted or unknown: the totals judge it
                        await trio.sleep(0.05)

            totals = []

            async def auditor():
                while not stop.is_set():
                    try:
                        rows, _ = await db.read_at(b"acct", b"acct99")
                        totals.append(sum(int(v) for _, v in rows))
                    except Exception:  # noqa: BLE001 - unavailable during a kill
                        pass
                    await trio.sleep(0.05)

            async with trio.open_nursery() as nursery:
                for seed in range(4):
                    nursery.start_soon(worker, seed)
                nursery.start_soon(auditor)
                for victim in (2, 0):
                    await trio.sleep(1.5)
                    cluster.kill(victim)
                    await trio.sleep(2.0)
                    await cluster.restart(victim)
                await trio.sleep(2.0)
                stop.set()
            with trio.fail_after(30):
                while True:  # Recovery resolves whatever was left prepared.
                    try:
                        rows, _ = await db.read_at(b"acct", b"acct99")
                        break
                    except Exception:  # noqa: BLE001
                        await trio.sleep(0.2)
            assert sum(int(v) for _, v in rows) == 600
            assert totals and all(total == 600 for total in totals), totals


async def test_node_with_a_clock_too_far_off_stops_serving_and_the_cluster_carries_on():
    async with EmbeddedCluster(nodes=3, max_offset_ns=100_000_000) as cluster:
        async with cluster.client(timeout_s=20) as db:
            await db.put(b"x", b"1")
            cluster.skew(0, 90_000_000)  # beyond 80% of max offset from both other nodes
            with trio.fail_after(10):
                while cluster.nodes[0].store.clock.serving:
                    await trio.sleep(0.1)
            assert cluster.nodes[1].store.clock.serving and cluster.nodes[2].store.clock.serving
            await db.put(b"x", b"2")  # served by the others (node 0's leases expire)
            assert await db.get(b"x") == b"2"
            cluster.skew(0, 0)
            with trio.fail_after(10):
                while not cluster.nodes[0].store.clock.serving:
                    await trio.sleep(0.1)


async def test_read_only_transaction_reads_one_snapshot_across_ranges(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        await db.admin_split(b"m")
        await db.put(b"a", b"1")
        await db.put(b"z", b"1")
        async with db.read_only() as snap:
            assert await snap.get(b"a") == b"1"
            first_ts = snap.ts
            await db.put(b"z", b"2")  # after the snapshot's timestamp: not in it
            assert await snap.get(b"z") == b"1"
            assert snap.ts == first_ts
        async with db.read_only() as later:
            assert await later.get(b"z") == b"2"
