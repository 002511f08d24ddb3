"""SQL sessions over an embedded cluster: statements, transactions, errors (PostgreSQL's)."""

import pytest

from sql_lite_front.errors import SqlError
from sql_lite_front.executor import Session


async def run(session, sql):
    results = await session.execute(sql)
    return results[-1]


async def test_create_insert_select_update_delete(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await run(s, "CREATE TABLE users (id INT PRIMARY KEY, name TEXT NOT NULL, age INT DEFAULT 30)")
        assert (await run(s, "INSERT INTO users (id, name, age) VALUES (1, 'ann', 41), (2, 'bob', NULL)")).status == "INSERT 0 2"
        await run(s, "INSERT INTO users (id, name) VALUES (3, 'cy')")
        result = await run(s, "SELECT id, name, age FROM users ORDER BY id")
        assert result.columns == ["id", "name", "age"]
        assert result.rows == [(1, "ann", 41), (2, "bob", None), (3, "cy", 30)]
        assert (await run(s, "SELECT name FROM users WHERE id = 2")).rows == [("bob",)]
        assert (await run(s, "SELECT COUNT(*), MAX(age) FROM users WHERE age IS NOT NULL")).rows == [(2, 41)]
        assert (await run(s, "UPDATE users SET age = age + 1 WHERE name LIKE '%n%'")).status == "UPDATE 1"
        assert (await run(s, "SELECT age FROM users WHERE id = 1")).rows == [(42,)]
        assert (await run(s, "DELETE FROM users WHERE age < 40")).status == "DELETE 1"
        assert (await run(s, "SELECT id FROM users ORDER BY id DESC LIMIT 5")).rows == [(2,), (1,)]


async def test_errors_carry_postgres_sqlstates(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await run(s, "CREATE TABLE t (k INT PRIMARY KEY, v TEXT NOT NULL)")
        await run(s, "INSERT INTO t VALUES (1, 'a')")
        for sql, code in [("INSERT INTO t VALUES (1, 'b')", "23505"),
                          ("INSERT INTO t VALUES (2, NULL)", "23502"),
                          ("SELECT * FROM nope", "42P01"),
                          ("SELECT nope FROM t", "42703"),
                          ("SELECT 1 / 0", "22012"),
                          ("SELEC 1", "42601")]:
            with pytest.raises(SqlError) as e:
                await run(s, sql)
            assert e.value.sqlstate == code, sql
        assert (await run(s, "INSERT INTO t VALUES (1, 'b') ON CONFLICT DO NOTHING")).status == "INSERT 0 0"
        assert (await run(s, "UPSERT INTO t VALUES (1, 'b')")).status == "INSERT 0 1"
        assert (await run(s, "SELECT v FROM t")).rows == [("b",)]


async def test_transaction_blocks_commit_rollback_and_fail_like_postgres(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await run(s, "CREATE TABLE t (k INT PRIMARY KEY, v INT)")
        await s.execute("BEGIN; INSERT INTO t VALUES (1, 10); INSERT INTO t VALUES (2, 20); COMMIT")
        await s.execute("BEGIN; UPDATE t SET v = 0; ROLLBACK")
        assert (await run(s, "SELECT SUM(v) FROM t")).rows == [(30,)]
        await run(s, "BEGIN")
        with pytest.raises(SqlError):
            await run(s, "INSERT INTO t VALUES (1, 1)")
        assert s.transaction_state == "failed"
        with pytest.raises(SqlError) as e:
            await run(s, "SELECT 1")
        assert e.value.sqlstate == "25P02"
        assert (await run(s, "COMMIT")).status == "ROLLBACK"
        assert s.transaction_state == "idle"


async def test_indexes_joins_and_group_by(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE emp (id INT PRIMARY KEY, dept INT, name TEXT);"
                        "CREATE TABLE dept (id INT PRIMARY KEY, title TEXT);"
                        "INSERT INTO dept VALUES (1, 'eng'), (2, 'ops');"
                        "INSERT INTO emp VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c')")
        await run(s, "CREATE UNIQUE INDEX emp_name ON emp (name)")
        with pytest.raises(SqlError) as e:
            await run(s, "INSERT INTO emp VALUES (4, 2, 'a')")
        assert e.value.sqlstate == "23505"
        result = await run(s, "SELECT d.title, COUNT(*) FROM emp e JOIN dept d ON e.dept = d.id "
                              "GROUP BY d.title ORDER BY d.title")
        assert result.rows == [("eng", 2), ("ops", 1)]
        assert (await run(s, "SHOW TABLES")).rows == [("dept",), ("emp",)]


async def test_scripts_go_on_after_errors_and_render_as_psql_csv_and_json(spanlite_cluster):
    from sql_lite_front.output import render
    from sql_lite_front.shell import run_script

    async with spanlite_cluster.client() as db:
        s = Session(db)
        out, err = [], []
        errors = await run_script(s, "CREATE TABLE t (k INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');"
                                     "INSERT INTO t VALUES (1, 'dup'); INSERT INTO t VALUES (2, NULL);"
                                     "SELECT * FROM t ORDER BY k", "table", out.append, err.append)
        assert errors == 1 and "23505" in err[0]
        assert out[-1] == " k | v\n---+---\n 1 | a\n 2 |\n(2 rows)"
        result = (await s.execute("SELECT k, v FROM t ORDER BY k"))[0]
        assert render(result, "csv") == "k,v\n1,a\n2,"
        assert render(result, "json") == '{"k": 1, "v": "a"}\n{"k": 2, "v": null}'


async def test_split_at_show_ranges_and_explain(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE t (k INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (150, 'b')")
        result = await run(s, "ALTER TABLE t SPLIT AT VALUES (100)")
        assert result.rows == [("/t/1/100",)]
        await run(s, "ALTER TABLE t SPLIT AT VALUES (100)")  # again: already split there, no error
        ranges = (await run(s, "SHOW RANGES FROM TABLE t")).rows
        assert ranges[-1][1] == "/t/1/100" and ranges[-2][2] == "/t/1/100"
        assert all(r[4] is not None for r in ranges)
        point = (await run(s, "EXPLAIN SELECT v FROM t WHERE k = 150")).rows
        assert point[0][0].startswith("select: point lookup on t") and "," not in point[1][0]
        assert point[1][0] != "ranges: r2"  # the right-hand range of the split, not the old one
        scan = (await run(s, "EXPLAIN SELECT v FROM t WHERE v = 'a'")).rows
        assert "full scan of t" in scan[0][0] and scan[1][0].count(",") == 1  # two ranges
        assert (await run(s, "SELECT v FROM t WHERE k = 150")).rows == [("b",)]


async def test_concurrent_update_transfers_keep_the_sum(spanlite_cluster):
    """Sessions move money between rows of different ranges in BEGIN..COMMIT blocks; a
    conflict surfaces as 40001 and is retried; the sum never changes."""
    import random

    import trio

    async with spanlite_cluster.client() as db:
        setup = Session(db)
        await setup.execute("CREATE TABLE acct (id INT PRIMARY KEY, bal INT NOT NULL);"
                            "INSERT INTO acct VALUES (1, 100), (2, 100), (3, 100), (4, 100), (5, 100), (6, 100);"
                            "ALTER TABLE acct SPLIT AT VALUES (3), (5)")

        async def worker(seed):
            rng = random.Random(seed)
            session = Session(db)
            done = 0
            while done < 8:
                a, b = rng.sample(range(1, 7), 2)
                try:
                    await session.execute(f"BEGIN; UPDATE acct SET bal = bal - 5 WHERE id = {a};"
                                          f"UPDATE acct SET bal = bal + 5 WHERE id = {b}; COMMIT")
                    done += 1
                except SqlError as e:
                    assert e.sqlstate in ("40001", "25P02"), e.format()
                    await session.execute("ROLLBACK")

        async with trio.open_nursery() as nursery:
            for seed in range(4):
                nursery.start_soon(worker, seed)
        assert (await run(setup, "SELECT SUM(bal), COUNT(*) FROM acct")).rows == [(600, 6)]
