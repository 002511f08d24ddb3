"""The planner (sql_lite_front/select.py): which access path a WHERE clause gets, the key spans
it reads, and that every path returns exactly what a full scan filtered by the evaluator does.

The plan-choice tests need no cluster (plan_access over a hand-made descriptor); the others run
SQL on an embedded cluster, as tests/sql_lite_front/test_executor.py does.
"""

import functools
import math
import random

import pytest
import trio

from ranges.api import ReadAt, TxnAborted, TxnRead
from sql_lite_front import parser
from sql_lite_front.catalog import Column, Index, TableDescriptor
from sql_lite_front.encoding import SqlType, key_prefix, prefix_end
from sql_lite_front.evaluator import is_true
from sql_lite_front.errors import SqlError
from sql_lite_front.executor import Session
from sql_lite_front.rows import concurrently
from sql_lite_front.select import FULL_SCAN, INDEX_LOOKUP, POINT_LOOKUP, RANGE_SCAN, plan_access

INT, FLOAT, TEXT = SqlType.INT, SqlType.FLOAT, SqlType.TEXT
TABLE = TableDescriptor(
    200, "t",
    (Column("a", INT, True), Column("b", TEXT, True), Column("c", FLOAT), Column("d", INT), Column("e", TEXT),
     Column("f", SqlType.BOOL)),
    ("a", "b"),
    (Index(2, "t_d", ("d",), False), Index(3, "t_e", ("e",), True), Index(4, "t_cd", ("c", "d"), False)),
)


def plan(where_sql: str):
    where = parser.parse(f"SELECT * FROM t WHERE {where_sql}")[0].where
    return plan_access(TABLE, where, "t")


def pk(*values):
    return key_prefix(200, 1, list(values), types=[INT, TEXT][: len(values)])


@pytest.mark.parametrize("where, access, index, keys", [
    ("a = 1 AND b = 'x'", POINT_LOOKUP, None, 1),
    ("b = 'x' AND 1 = a", POINT_LOOKUP, None, 1),
    ("t.a = 1 AND t.b = 'x'", POINT_LOOKUP, None, 1),
    ("a IN (1, 2, 2) AND b IN ('x', 'y')", POINT_LOOKUP, None, 4),
    ("a = 2.0 AND b = 'x'", POINT_LOOKUP, None, 1),  # 2.0 equals the INT 2
    ("a = '2' AND b = 'x'", POINT_LOOKUP, None, 1),  # a quoted literal takes the column's type
    ("a = 2.5 AND b = 'x'", POINT_LOOKUP, None, 0),  # no INT equals 2.5
    ("a = 1 AND a = 2 AND b = 'x'", POINT_LOOKUP, None, 0),
    ("e = 'z'", INDEX_LOOKUP, "t_e", 1),  # unique, every column fixed: a get
    ("e IS NULL", INDEX_LOOKUP, "t_e", 0),  # NULLs are distinct: their entries carry the pk, a scan
    ("e = 'z' AND a = 1", INDEX_LOOKUP, "t_e", 1),  # unique index lookup before a pk range scan
    ("a = 1", RANGE_SCAN, None, 0),
    ("a = 1 AND b > 'x'", RANGE_SCAN, None, 0),
    ("a = 1 AND d = 5", RANGE_SCAN, None, 0),  # pk equality prefix before an index lookup
    ("d = 5", INDEX_LOOKUP, "t_d", 0),
    ("d IS NULL", INDEX_LOOKUP, "t_d", 0),
    ("d = 5 AND a > 3", INDEX_LOOKUP, "t_d", 0),  # index equality before pk bounds only
    ("a > 3 AND d > 5", RANGE_SCAN, None, 0),  # pk bounds before index bounds
    ("a BETWEEN 1 AND 3", RANGE_SCAN, None, 0),
    ("a > 2.5", RANGE_SCAN, None, 0),
    ("d > 5", INDEX_LOOKUP, "t_d", 0),
    ("c = 1.5 AND d > 2", INDEX_LOOKUP, "t_cd", 0),  # more columns used wins
    ("c = 1 AND d = 2", INDEX_LOOKUP, "t_cd", 0),
    ("b = 'x'", FULL_SCAN, None, 0),  # not a prefix of any index
    ("a = 1 OR a = 2", FULL_SCAN, None, 0),
    ("a <> 1", FULL_SCAN, None, 0),
    ("NOT a = 1", FULL_SCAN, None, 0),
    ("a = b", FULL_SCAN, None, 0),
    ("a = 'x'", FULL_SCAN, None, 0),  # 22P02 is the filter's to report
    ("a = 'x' || 'y'", FULL_SCAN, None, 0),  # text = integer: 42883, the filter's
    ("a = TRUE", FULL_SCAN, None, 0),
    ("a > 1e300", FULL_SCAN, None, 0),  # too large to turn into an INT bound exactly
    ("a < CAST('NaN' AS FLOAT)", FULL_SCAN, None, 0),
    ("a IN (1, 'x')", FULL_SCAN, None, 0),
    ("a = NULL", FULL_SCAN, None, 0),
    ("other.a = 1", FULL_SCAN, None, 0),
    ("f = TRUE", FULL_SCAN, None, 0),
    ("TRUE", FULL_SCAN, None, 0),
    ("NULL", FULL_SCAN, None, 0),
    ("f", FULL_SCAN, None, 0),
    ("a = 1 AND (b = 'x' AND TRUE)", POINT_LOOKUP, None, 1),
])
def test_access_path_for_where_clauses(where, access, index, keys):
    chosen = plan(where)
    assert (chosen.access, chosen.index and chosen.index.name, len(chosen.keys)) == (access, index, keys), \
        chosen.describe()


def test_spans_use_prefix_successors_for_exclusive_bounds_and_skip_nulls():
    whole = prefix_end(key_prefix(200, 1))
    assert plan("a > 2.5").spans == [(pk(3), whole)]
    assert plan("a >= -2.5").spans == [(pk(-2), whole)]
    assert plan("a < 2.5").spans == [(prefix_end(key_prefix(200, 1, [None])), pk(3))]
    assert plan("a = 1 AND b > 'x'").spans == [(prefix_end(pk(1, "x")), prefix_end(pk(1)))]
    assert plan("a = 1 AND b <= 'x'").spans == [(prefix_end(key_prefix(200, 1, [1, None], types=[INT, TEXT])),
                                                 prefix_end(pk(1, "x")))]
    assert plan("a = 1 AND b >= 'x' AND b < 'y'").spans == [(pk(1, "x"), pk(1, "y"))]
    assert plan("a IN (3, 1) AND b > 'x' AND b > 'w'").spans == [(prefix_end(pk(1, "x")), prefix_end(pk(1))),
                                                                 (prefix_end(pk(3, "x")), prefix_end(pk(3)))]
    assert plan("a > 3 AND a < 2").spans == []
    assert plan("a > 3 AND a <= 3").spans == []
    null_d = key_prefix(200, 2, [None], types=[INT])
    assert plan("d < 0").spans == [(prefix_end(null_d), key_prefix(200, 2, [0], types=[INT]))]


def test_explain_text_names_the_condition_and_the_keys():
    assert plan("a = 7 AND b = 'x'").describe() == "point lookup on t (primary key: a = 7 AND b = 'x')"
    assert plan("a = 53 AND b >= 'k' AND b < 'p'").describe() == \
        "primary-key range scan of t (a = 53 AND b >= 'k' AND b < 'p') [/t/1/53/'k', /t/1/53/'p')"
    assert plan("a = 53").describe() == "primary-key range scan of t (a = 53) [/t/1/53, /t/1/54)"
    assert plan("e = 'a@b'").describe() == "index lookup on t@t_e (e = 'a@b'), then a get per row"
    assert plan("d = 5").describe() == "index lookup on t@t_d (d = 5) [/t/2/5, /t/2/6), then a get per row"
    assert plan("e > 'a' AND e < 'b'").describe() == \
        "index lookup on t@t_e (e > 'a' AND e < 'b') [/t/3/'a'/PrefixEnd, /t/3/'b'), then a get per row"
    assert plan("b = 'x'").describe() == "full scan of t"


def test_a_long_in_list_is_read_as_one_span_from_its_smallest_to_its_largest_value():
    values = ", ".join(str(v) for v in range(1500, 0, -1))
    chosen = plan(f"a IN ({values})")
    assert chosen.access == RANGE_SCAN and chosen.spans == [(pk(1), prefix_end(pk(1500)))]


async def test_concurrent_reads_keep_their_order_and_raise_the_first_error_unwrapped():
    """A retryable abort inside concurrent reads must reach run_transaction as itself, not
    inside an ExceptionGroup, or the statement would not be retried."""
    async def value(v):
        await trio.sleep(0.001 * (5 - v))  # later calls finish first
        return v

    async def wounded():
        raise TxnAborted("wounded by an older transaction")

    assert await concurrently([functools.partial(value, v) for v in range(5)], in_flight_max=2) == [0, 1, 2, 3, 4]
    assert await concurrently([functools.partial(value, v) for v in range(3)], first_alone=True) == [0, 1, 2]
    with pytest.raises(TxnAborted):
        await concurrently([functools.partial(value, 1), wounded, wounded])


# ---------------------------------------------------------------------------------------
# On a cluster


async def run(session, sql):
    return (await session.execute(sql))[-1]


def literal(value) -> str:
    """`value` as SQL: E'' strings for control characters, quoted input for NaN and infinities."""
    if value is None:
        return "NULL"
    if isinstance(value, float) and not math.isfinite(value):
        return {"nan": "CAST('NaN' AS FLOAT)", "inf": "CAST('Infinity' AS FLOAT)",
                "-inf": "CAST('-Infinity' AS FLOAT)"}[repr(value)]
    if isinstance(value, str):
        if value.isascii() and value.isprintable():
            return "'" + value.replace("'", "''") + "'"
        return "E'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\x00", "\\x00") + "'"
    return repr(value)


A_VALUES = [-3, -1, 0, 1, 2, 3]
B_VALUES = [-math.inf, -2.5, -1.0, 0.0, 1.0, 2.5, math.inf, math.nan]
C_VALUES = ["", "a", "a\x00", "a\x00b", "ab", "b", "é", "\x00"]
D_VALUES = [-2, -1, 0, 1, 2, None]
E_VALUES = ["", "x", "x\x00", "y", None]
G_VALUES = [-1.5, 0.0, 2.0, math.nan, None]
SCHEMA = ("CREATE TABLE p (a INT, b FLOAT, c TEXT, d INT, e TEXT, g FLOAT, u INT, PRIMARY KEY (a, b, c));"
          "CREATE INDEX p_d ON p (d); CREATE INDEX p_de ON p (d, e); CREATE INDEX p_eg ON p (e, g);"
          "CREATE UNIQUE INDEX p_u ON p (u)")
COLUMNS = {"a": A_VALUES, "b": B_VALUES, "c": C_VALUES, "d": D_VALUES, "e": E_VALUES, "g": G_VALUES,
           "u": list(range(-5, 40)) + [None]}
# Constants of other forms that still compare with the column: floats and quoted numbers next to
# INTs, INTs and quoted specials next to FLOATs.
EXTRA_CONSTANTS = {
    "a": ["2.5", "-0.5", "3.0", "'2'", "1e300", "CAST('NaN' AS FLOAT)"], "d": ["1.5", "-2.0", "'-1'"],
    "u": ["7.5", "'12'"], "b": ["2", "-1", "'NaN'", "'-Infinity'", "-0.0"], "g": ["0", "'NaN'"],
    "c": ["'a'"], "e": ["'x'"],
}


async def create_random_table(session, rng: random.Random, rows: int) -> None:
    await session.execute(SCHEMA)
    keys = rng.sample([(a, b, c) for a in A_VALUES for b in B_VALUES for c in C_VALUES], rows)
    values = []
    for u, (a, b, c) in enumerate(keys):
        u = None if u == 4 else u  # one NULL only: a unique index holds one entry per value, NULL too
        row = (a, b, c, rng.choice(D_VALUES), rng.choice(E_VALUES), rng.choice(G_VALUES), u)
        values.append("(" + ", ".join(map(literal, row)) + ")")
    await session.execute(f"INSERT INTO p VALUES {', '.join(values[: rows // 2])}")
    await session.execute(f"INSERT INTO p VALUES {', '.join(values[rows // 2:])}")
    await session.execute("ALTER TABLE p SPLIT AT VALUES (0, -1.0), (1, 2.5)")


def random_term(rng: random.Random) -> str:
    column = rng.choice(list(COLUMNS))
    constants = [literal(v) for v in COLUMNS[column] if v is not None] + EXTRA_CONSTANTS[column]
    op = rng.choice(["=", "=", "<", "<=", ">", ">=", "BETWEEN", "IN", "IN", "IS NULL"])
    if op == "IS NULL":
        return f"{column} IS NULL"
    if op == "BETWEEN":
        return f"{column} BETWEEN {rng.choice(constants)} AND {rng.choice(constants)}"
    if op == "IN":
        return f"{column} IN ({', '.join(rng.choices(constants, k=rng.randint(1, 4)))})"
    if rng.random() < 0.3:
        flipped = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
        return f"{rng.choice(constants)} {flipped} {column}"
    return f"{column} {op} {rng.choice(constants)}"


def key_prefix_terms(rng: random.Random) -> list[str]:
    """Equalities on a prefix of the primary key (often none), so point lookups and range scans
    with an equality prefix come up too."""
    length = rng.choice([0, 0, 1, 2, 3])
    return [f"{column} = {literal(rng.choice(COLUMNS[column]))}" for column in ("a", "b", "c")[:length]]


def reference(all_rows: list[tuple], names: list[str], where_sql: str) -> list[str]:
    """The rows a full scan filtered by the evaluator returns, as sorted reprs (NaN != NaN)."""
    where = parser.parse(f"SELECT * FROM p WHERE {where_sql}")[0].where
    rows = [dict(zip(names, r)) | {f"p.{n}": v for n, v in zip(names, r)} for r in all_rows]
    return sorted(repr(tuple(r[n] for n in names)) for r in rows if is_true(where, r))


async def test_every_access_path_returns_what_a_filtered_full_scan_returns(spanlite_cluster):
    rng = random.Random(20240611)
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await create_random_table(s, rng, 90)
        everything = await run(s, "SELECT * FROM p")
        table = await db.run_transaction(lambda txn: _table(txn, "p"))
        seen = set()
        for _ in range(300):
            terms = [random_term(rng) for _ in range(rng.randint(1, 3))]
            where_sql = " AND ".join(key_prefix_terms(rng) + terms)
            result = await run(s, f"SELECT * FROM p WHERE {where_sql}")
            expected = reference(everything.rows, everything.columns, where_sql)
            assert sorted(map(repr, result.rows)) == expected, where_sql
            seen.add(plan_access(table, parser.parse(f"SELECT * FROM p WHERE {where_sql}")[0].where).access)
        assert seen == {POINT_LOOKUP, INDEX_LOOKUP, RANGE_SCAN, FULL_SCAN}


async def _table(txn, name):
    from sql_lite_front.catalog import require_table
    return await require_table(txn, name)


async def test_bound_edges_keep_every_matching_row(spanlite_cluster):
    """Each query's bound sits right at stored values: an off-by-one span (a wrong successor,
    an inclusive bound made exclusive, NaN or -0.0 misplaced) would drop rows named here."""
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE e (i INT, f FLOAT, s TEXT, n INT, PRIMARY KEY (i, f, s)); CREATE INDEX e_n ON e (n);"
                        "INSERT INTO e VALUES (2, 0.0, 'a', NULL), (3, -0.0 + 1, 'a' || E'\\x00', -1),"
                        "(3, CAST('NaN' AS FLOAT), 'ab', 0), (3, CAST('Infinity' AS FLOAT), 'a', 3),"
                        "(-3, -2.5, '', 2), (4, 2.5, 'b', NULL)")
        cases = {
            "i > 2.5": [3, 3, 3, 4], "i >= 2.0": [2, 3, 3, 3, 4], "i < -2.5": [-3], "i <= -3.0": [-3],
            "i < 2.5": [-3, 2], "i > -3.5 AND i < -2.5": [-3], "i >= -2.5 AND i <= 2.5": [2],
            "n > -1.5 AND n < 0.5": [3, 3], "n >= -0.5": [-3, 3, 3],
            "i = 3 AND f > 1": [3, 3], "i = 3 AND f >= 1": [3, 3, 3], "i = 3 AND f < 'NaN'": [3, 3],
            "i = 2 AND f = -0.0": [2], "i = 2 AND f = 0 AND s > ''": [2],
            "i = 3 AND f = 1 AND s > 'a'": [3], "i IN (3, 3.0, 2.5) AND f IN (1, 'Infinity')": [3, 3],
            "n < 1": [3, 3], "n > -2 AND n <= 0": [3, 3], "n IS NULL": [2, 4], "n BETWEEN '-1' AND 3.5": [-3, 3, 3, 3],
        }
        for where_sql, expected in cases.items():
            result = await run(s, f"SELECT i FROM e WHERE {where_sql} ORDER BY i")
            assert [r[0] for r in result.rows] == expected, where_sql


async def test_range_scan_with_order_by_desc_and_limit(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE o (c INT, id INT, v TEXT, PRIMARY KEY (c, id));"
                        "INSERT INTO o VALUES " + ", ".join(f"({c}, {i}, 'v{c}.{i}')" for c in (1, 2, 3) for i in range(10)))
        await s.execute("ALTER TABLE o SPLIT AT VALUES (2, 5)")
        explained = (await run(s, "EXPLAIN SELECT id FROM o WHERE c = 2 AND id > 3 ORDER BY id DESC LIMIT 3")).rows
        assert explained[0][0].startswith("select: primary-key range scan of o (c = 2 AND id > 3) [/o/1/2/4, /o/1/3)")
        assert explained[1][0].count(",") == 1  # both sides of the split at (2, 5)
        result = await run(s, "SELECT id, v FROM o WHERE c = 2 AND id > 3 ORDER BY id DESC LIMIT 3")
        assert result.rows == [(9, "v2.9"), (8, "v2.8"), (7, "v2.7")]
        result = await run(s, "SELECT id FROM o WHERE c = 2 AND id BETWEEN 1 AND 4.5 ORDER BY id DESC LIMIT 2 OFFSET 1")
        assert result.rows == [(3,), (2,)]


def count_reads(db, table_prefix: bytes) -> list:
    """Record every read of the table's keys the client sends (wrapping its `send`): locking
    reads of read-write transactions and snapshot reads, one request per range either way."""
    reads: list = []
    send = db.send

    async def recording_send(request, **kwargs):
        if isinstance(request, (TxnRead, ReadAt)) and request.start.startswith(table_prefix):
            reads.append(request)
        return await send(request, **kwargs)

    db.send = recording_send
    return reads


async def test_point_select_on_a_split_table_reads_one_range(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE t (k INT PRIMARY KEY, v TEXT);"
                        "INSERT INTO t VALUES " + ", ".join(f"({k}, 'v{k}')" for k in range(0, 40, 3)))
        await s.execute("ALTER TABLE t SPLIT AT VALUES (10), (20), (30)")
        table = await db.run_transaction(lambda txn: _table(txn, "t"))
        reads = count_reads(db, key_prefix(table.table_id))
        assert (await run(s, "SELECT v FROM t WHERE k = 21")).rows == [("v21",)]
        assert len(reads) == 1
        db.forget_descriptor(reads[0].start)  # the client's cache may predate the splits
        descriptor = await db.descriptor_for(reads[0].start)
        assert descriptor.start_key <= reads[0].start and reads[0].end <= descriptor.end_key
        explained = (await run(s, "EXPLAIN SELECT v FROM t WHERE k = 21")).rows
        assert explained[1][0] == f"ranges: r{descriptor.range_id}"

        reads.clear()
        assert (await run(s, "SELECT k FROM t WHERE k > 11 AND k < 19 ORDER BY k")).rows == [(12,), (15,), (18,)]
        assert len(reads) == 1  # inside [10, 20): one range
        reads.clear()
        assert len((await run(s, "SELECT k FROM t WHERE v = 'v21'")).rows) == 1
        assert len(reads) == 4  # the full scan crosses every range of the table
        reads.clear()
        assert (await run(s, "SELECT k FROM t WHERE k IN (1, 3, 4) ORDER BY k")).rows == [(3,)]
        assert len(reads) == 3  # a get per key


async def test_index_lookups_update_delete_and_own_writes(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE u (id INT PRIMARY KEY, email TEXT, team INT);"
                        "CREATE UNIQUE INDEX u_email ON u (email); CREATE INDEX u_team ON u (team);"
                        "INSERT INTO u VALUES (1, 'a@b', 1), (2, 'c@d', 1), (3, 'e@f', 2), (4, NULL, NULL)")
        explained = (await run(s, "EXPLAIN SELECT id FROM u WHERE email = 'a@b'")).rows
        assert explained[0][0] == "select: index lookup on u@u_email (email = 'a@b'), then a get per row"
        assert (await run(s, "SELECT id FROM u WHERE email = 'c@d'")).rows == [(2,)]
        assert (await run(s, "SELECT id FROM u WHERE team = 1 ORDER BY id")).rows == [(1,), (2,)]
        assert (await run(s, "SELECT id FROM u WHERE team IS NULL")).rows == [(4,)]
        assert (await run(s, "EXPLAIN UPDATE u SET team = 3 WHERE team = 1")).rows[0][0].startswith(
            "update: index lookup on u@u_team (team = 1)")
        assert (await run(s, "UPDATE u SET team = 3 WHERE team = 1")).status == "UPDATE 2"
        assert (await run(s, "SELECT id FROM u WHERE team = 3 ORDER BY id")).rows == [(1,), (2,)]
        assert (await run(s, "SELECT id FROM u WHERE team = 1")).rows == []
        assert (await run(s, "DELETE FROM u WHERE email = 'e@f'")).status == "DELETE 1"
        assert (await run(s, "SELECT COUNT(*) FROM u WHERE team = 2")).rows == [(0,)]
        await s.execute("BEGIN; INSERT INTO u VALUES (5, 'g@h', 7)")
        assert (await run(s, "SELECT id FROM u WHERE team = 7")).rows == [(5,)]  # its own, uncommitted write
        assert (await run(s, "SELECT id FROM u WHERE email = 'g@h'")).rows == [(5,)]
        await s.execute("ROLLBACK")
        assert (await run(s, "SELECT id FROM u WHERE team = 7")).rows == []


async def test_joins_look_up_the_inner_table_per_outer_row(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE emp (id INT PRIMARY KEY, dept INT, boss FLOAT, name TEXT);"
                        "CREATE TABLE dept (id INT PRIMARY KEY, title TEXT); CREATE INDEX emp_name ON emp (name);"
                        "INSERT INTO dept VALUES (1, 'eng'), (2, 'ops'), (3, 'x');"
                        "INSERT INTO emp VALUES (1, 1, NULL, 'a'), (2, 1, 1.0, 'b'), (3, 2, 2.5, 'a'), (4, NULL, 1, 'c'),"
                        "(5, 9, 3, 'b')")
        sql = "SELECT e.id, d.title FROM emp e JOIN dept d ON e.dept = d.id ORDER BY e.id"
        explained = [r[0] for r in (await run(s, "EXPLAIN " + sql)).rows]
        assert explained[2] == "index nested-loop join with dept d: point lookup on dept (primary key: id = e.dept) per outer row"
        assert (await run(s, sql)).rows == [(1, "eng"), (2, "eng"), (3, "ops")]
        # A FLOAT outer value against the INT key: 2.5 matches nothing, 1.0 and 3 do.
        sql = "SELECT e.id, b.id FROM emp e JOIN emp b ON e.boss = b.id ORDER BY e.id"
        assert (await run(s, sql)).rows == [(2, 1), (4, 1), (5, 3)]
        sql = "SELECT x.id, y.id FROM emp x JOIN emp y ON x.name = y.name WHERE x.id < 3 ORDER BY x.id, y.id"
        explained = [r[0] for r in (await run(s, "EXPLAIN " + sql)).rows]
        assert explained[0].startswith("select: primary-key range scan of emp (x.id < 3)")
        assert explained[2].startswith("index nested-loop join with emp y: index lookup on emp@emp_name (name = x.name)")
        assert (await run(s, sql)).rows == [(1, 1), (1, 3), (2, 2), (2, 5)]
        sql = "SELECT x.id, y.id FROM emp x JOIN emp y ON x.name = y.name WHERE y.id < 3 ORDER BY x.id, y.id"
        assert (await run(s, "EXPLAIN " + sql)).rows[0][0] == "select: full scan of emp"  # y's bound is not x's
        assert (await run(s, sql)).rows == [(1, 1), (2, 2), (3, 1), (5, 2)]
        sql = "SELECT d.title, e.id FROM dept d JOIN emp e ON e.dept = d.id ORDER BY e.id"
        assert (await run(s, "EXPLAIN " + sql)).rows[2][0] == "nested loop join with emp e (full scan)"
        assert (await run(s, sql)).rows == [("eng", 1), ("eng", 2), ("ops", 3)]


async def test_a_unique_index_holds_several_nulls_and_finds_them(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        s = Session(db)
        await s.execute("CREATE TABLE un (k INT PRIMARY KEY, u INT, v TEXT)")
        await s.execute("CREATE UNIQUE INDEX un_u ON un (u)")
        await s.execute("INSERT INTO un VALUES (1, NULL, 'a'), (2, NULL, 'b'), (3, 7, 'c')")
        with pytest.raises(SqlError) as e:
            await s.execute("INSERT INTO un VALUES (4, 7, 'd')")
        assert e.value.sqlstate == "23505"
        assert (await s.execute("SELECT k FROM un WHERE u IS NULL ORDER BY k"))[-1].rows == [(1,), (2,)]
        assert (await s.execute("SELECT k FROM un WHERE u = 7"))[-1].rows == [(3,)]
        explain = (await s.execute("EXPLAIN SELECT k FROM un WHERE u IS NULL"))[-1].rows
        assert "index lookup on un@un_u" in explain[0][0]
        await s.execute("UPDATE un SET u = 8 WHERE k = 1")
        assert (await s.execute("SELECT k FROM un WHERE u IS NULL"))[-1].rows == [(2,)]
        await s.execute("DELETE FROM un WHERE u IS NULL")
        assert (await s.execute("SELECT k, u FROM un ORDER BY k"))[-1].rows == [(1, 8), (3, 7)]
        await s.execute("INSERT INTO un VALUES (5, NULL, 'e'), (6, NULL, 'f')")
        await s.execute("CREATE UNIQUE INDEX un_v ON un (u, v)")  # backfill: NULLs do not collide
