"""A SELECT outside BEGIN..COMMIT reads one lock-free snapshot (optionally AS OF SYSTEM TIME)."""

import pytest
import trio

from sql_lite_front.errors import SqlError
from sql_lite_front.executor import Session


async def rows(session, sql):
    return (await session.execute(sql))[-1].rows


async def test_a_lone_select_takes_no_locks_and_pays_no_commit_wait(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE t (k INT PRIMARY KEY, v INT)")
        await s.execute("INSERT INTO t VALUES (1, 10)")
        sent = []
        real_send = db.send

        async def counting_send(request, **kw):
            sent.append(type(request).__name__)
            return await real_send(request, **kw)

        db.send = counting_send
        assert await rows(s, "SELECT v FROM t WHERE k = 1") == [(10,)]
        db.send = real_send
        assert sent and set(sent) == {"ReadAt"}, sent  # snapshot reads only: no locks, no commit


async def test_as_of_system_time_reads_the_past(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE t (k INT PRIMARY KEY, v INT)")
        await s.execute("INSERT INTO t VALUES (1, 10)")
        await trio.sleep(0.6)
        before_update_ns = db.now_ns()
        await s.execute("UPDATE t SET v = 20 WHERE k = 1")
        assert await rows(s, "SELECT v FROM t AS OF SYSTEM TIME '-300ms'") == [(10,)]
        assert await rows(s, f"SELECT v FROM t AS OF SYSTEM TIME {before_update_ns}") == [(10,)]
        assert await rows(s, "SELECT v FROM t") == [(20,)]


@pytest.mark.parametrize("clause", ["'soon'", "'+5s'", "0", "'-100000000h'"])
async def test_as_of_system_time_rejects_what_is_not_a_past_time(spanlite_cluster, clause):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE t (k INT PRIMARY KEY)")
        with pytest.raises(SqlError) as e:
            await s.execute(f"SELECT k FROM t AS OF SYSTEM TIME {clause}")
        assert e.value.sqlstate == "22023"


async def test_as_of_system_time_inside_a_block_fails_the_block(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE t (k INT PRIMARY KEY)")
        await s.execute("BEGIN")
        with pytest.raises(SqlError) as e:
            await s.execute("SELECT k FROM t AS OF SYSTEM TIME '-1s'")
        assert e.value.sqlstate == "0A000"
        assert s.transaction_state == "failed"
        await s.execute("ROLLBACK")


async def test_an_ambiguous_commit_is_40003_not_a_retry(spanlite_cluster):
    from ranges.api import AmbiguousResult

    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE t (k INT PRIMARY KEY, v INT)")
        real_send = db.send

        async def send_losing_the_commit_answer(request, **kw):
            result = await real_send(request, **kw)
            if type(request).__name__ == "PrepareTxnRequest":
                raise AmbiguousResult("the connection broke after the commit was sent")
            return result

        db.send = send_losing_the_commit_answer
        with pytest.raises(SqlError) as e:
            await s.execute("INSERT INTO t VALUES (1, 1)")
        db.send = real_send
        assert e.value.sqlstate == "40003" and "ambiguous" in e.value.message
        assert "may or may not have committed" in e.value.hint
        assert (await s.execute("SELECT v FROM t WHERE k = 1"))[-1].rows == [(1,)]  # it had committed
