"""Differential test: the SQL front against Python's sqlite3, over random tables and queries.

Hypothesis draws 1-2 tables (INT, FLOAT, TEXT, BOOL columns; single, composite or no primary
key; nullable columns; sometimes a secondary index), well-typed rows (NULLs, negative numbers,
duplicates in non-key columns, text with spaces, quotes, backslashes and non-ASCII letters), and
statements in the subset both engines answer alike, one test per shape: projections and
filters; primary-key point lookups and ranges; ORDER BY (by expression, position or alias)
with LIMIT/OFFSET; aggregates with GROUP BY/HAVING; DISTINCT; INNER JOINs (grouped too);
INSERT/UPDATE/DELETE followed by SELECT *; and BEGIN..COMMIT/ROLLBACK blocks of those. The same
statements run against a spanlite Session over one embedded cluster and against an in-memory
sqlite3 database; the answers must agree. A shape that fails because of a known bug outside
the SQL front's analysis would be a strict xfail naming its repro (none today).

Why a cluster in a thread: pytest-trio runs each Hypothesis example in a fresh trio.run, so an
async fixture would start a cluster per example (about a second each). Instead one cluster runs,
for the whole module, in a thread of its own with its own trio loop, and the (synchronous) tests
hand it statements with `trio.from_thread.run`. Every example creates tables with fresh names
and drops them at its end.

Where the dialects differ, the generator stays on common ground (the brief's list):
- sqlite's LIKE ignores ASCII case: `PRAGMA case_sensitive_like = ON`; patterns hold no
  backslash (sqlite has no default escape character);
- sqlite sorts NULLs first ascending, PostgreSQL last: the sqlite text of every ORDER BY item
  spells out PostgreSQL's NULLS FIRST/LAST (the spanlite text sometimes leaves it implicit, to
  test the default);
- sqlite's types are dynamic: only well-typed values and expressions are generated; no
  arithmetic can overflow 64 bits (multiplication by small constants only), no `%` on floats;
- x / 0 is NULL in sqlite and 22012 in PostgreSQL: divisors are non-zero constants (division by
  zero is tested in test_bad_input.py);
- no ORDER BY ... LIMIT without a total order, and no upper()/lower() (sqlite folds ASCII only).

Comparison: lists when the ORDER BY is total (it always ends with the primary key, or every
column of a table without one), multisets otherwise; floats with a relative tolerance (sums
may add in another order); booleans as 0/1 (sqlite's). When both engines reject a statement
(e.g. NULL into a NOT NULL column) that is agreement; when one does, it is a mismatch. A mismatch
fails with the schema, the data, the statement and both answers.

Run it with many more examples (random, not the fixed derandomized run of `make test`):
    SPANLITE_DIFF_EXAMPLES=2000 .venv/bin/pytest -p no:cacheprovider tests/sql_lite_front/test_differential.py -q
(SPANLITE_DIFF_EXAMPLES is the number of examples per query shape.)
"""

from __future__ import annotations

import itertools
import math
import os
import sqlite3
import threading
from dataclasses import dataclass, field

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.embedded import EmbeddedCluster
from sql_lite_front.errors import SqlError
from sql_lite_front.executor import Session

EXAMPLES = int(os.environ.get("SPANLITE_DIFF_EXAMPLES", "0")) or None
DEFAULT_EXAMPLES = 25  # per shape: the whole file runs in about 30 s
TYPES = ("INT", "FLOAT", "TEXT", "BOOL")


# ---------------------------------------------------------------------------------------------
# One embedded cluster for the module, in a thread with its own trio loop.


class ClusterThread:
    """An embedded cluster and a client, served by a trio loop in a background thread."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="differential-cluster", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the embedded cluster did not start within 60 s")
        if self._failure is not None:
            raise RuntimeError("the embedded cluster failed to start") from self._failure

    def _serve(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # reported to the test thread, which waits on _ready
            self._failure = e
            self._ready.set()

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with EmbeddedCluster(nodes=1) as cluster, cluster.client() as db:
            self.db = db
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()

    def execute(self, session: Session, sql: str):
        return trio.from_thread.run(session.execute, sql, trio_token=self._token)

    def close(self) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)


@pytest.fixture(scope="module")
def cluster():
    served = ClusterThread()
    yield served
    served.close()


# ---------------------------------------------------------------------------------------------
# The model: tables with their rows, and statements in both dialects.


@dataclass
class ColumnSpec:
    name: str
    type: str
    not_null: bool


@dataclass
class TableSpec:
    name: str
    columns: list[ColumnSpec]
    primary_key: list[str]  # empty: no PRIMARY KEY (spanlite adds a hidden rowid)
    index: str | None  # a column with a secondary index
    rows: list[tuple] = field(default_factory=list)
    unique: bool = False  # the index is UNIQUE

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)

    def total_order(self) -> list[str]:
        """Columns whose values order the rows totally (up to identical rows)."""
        return self.primary_key or [c.name for c in self.columns]

    def create_sql(self) -> str:
        parts = [f"{c.name} {c.type}{' NOT NULL' if c.not_null else ''}" for c in self.columns]
        if self.primary_key:
            parts.append(f"PRIMARY KEY ({', '.join(self.primary_key)})")
        return f"CREATE TABLE {self.name} ({', '.join(parts)})"

    def setup_sql(self) -> list[str]:
        statements = [self.create_sql()]
        if self.index:
            kind = "UNIQUE INDEX" if self.unique else "INDEX"
            statements.append(f"CREATE {kind} {self.name}_{self.index}_idx ON {self.name} ({self.index})")
        if self.rows:
            values = ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in self.rows)
            statements.append(f"INSERT INTO {self.name} VALUES {values}")
        return statements


@dataclass
class Statement:
    pg: str  # for spanlite
    lite: str  # for sqlite: the same, with PostgreSQL's defaults spelled out
    ordered: bool = False  # the result is a list in a total order
    names: bool = False  # compare the column names too (SELECT *: the table's)
    check_table: TableSpec | None = None  # DML: compare this table's rows afterwards


def literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float):
        return repr(value) if value >= 0 else f"({value!r})"
    return str(value) if value >= 0 else f"({value})"  # `- -5` would start a comment


# ---------------------------------------------------------------------------------------------
# Values.

TEXT_SAMPLES = ["", "a", "b", "A", "ab", "a b", "it's", "ü", "日本", "a%b", "a_b", " lead", "trail ", "x\\y", "\\"]
TEXT_ALPHABET = "abAB _%'üé日\\"


def values_of(sql_type: str) -> st.SearchStrategy:
    if sql_type == "INT":
        return st.one_of(st.integers(-5, 20), st.integers(-10**6, 10**6))
    if sql_type == "FLOAT":
        return st.one_of(st.sampled_from([0.0, 0.5, -1.25, 2.0, 100.75]),
                         st.integers(-10**6, 10**6).map(lambda i: i / 100))
    if sql_type == "TEXT":
        return st.one_of(st.sampled_from(TEXT_SAMPLES), st.text(alphabet=TEXT_ALPHABET, max_size=6))
    return st.booleans()


def column_values(column: ColumnSpec) -> st.SearchStrategy:
    values = values_of(column.type)
    return values if column.not_null else st.one_of(st.none(), values, values)


@st.composite
def tables(draw, name: str, max_rows: int = 12, first_type: str | None = None) -> TableSpec:
    count = draw(st.integers(1, 4))
    columns = [ColumnSpec(f"c{i}", draw(st.sampled_from(TYPES)), draw(st.booleans())) for i in range(count)]
    if first_type is not None:
        columns[0].type = first_type  # a join needs a column of a type the other table has
    key_size = draw(st.sampled_from([0, 1, 1, 1, 2, 2]))
    key_size = min(key_size, count)
    primary_key = [c.name for c in columns[:key_size]]
    for c in columns[:key_size]:
        c.not_null = True
    non_key = [c.name for c in columns if c.name not in primary_key]
    index = draw(st.sampled_from(non_key)) if non_key and draw(st.booleans()) else None
    table = TableSpec(name, columns, primary_key, index)
    rows = draw(st.lists(st.tuples(*(column_values(c) for c in columns)), max_size=max_rows))
    positions = [i for i, c in enumerate(columns) if c.name in primary_key]
    seen = set()
    for row in rows:
        key = tuple(row[i] for i in positions)
        if primary_key and key in seen:
            continue  # both engines would reject the INSERT: keep the first row of a key
        seen.add(key)
        table.rows.append(row)
    return table


@st.composite
def unique_index_tables(draw, name: str) -> TableSpec:
    """A UNIQUE index on a nullable column holding distinct values and several NULLs, which
    SQL allows: NULL is distinct from NULL."""
    sql_type = draw(st.sampled_from(["INT", "TEXT"]))
    columns = [ColumnSpec("c0", "INT", True), ColumnSpec("c1", sql_type, False), ColumnSpec("c2", "INT", False)]
    table = TableSpec(name, columns, ["c0"], "c1", unique=True)
    values = draw(st.lists(values_of(sql_type), unique=True, max_size=5)) + [None, None]
    table.rows = [(key, value, draw(column_values(columns[2]))) for key, value in enumerate(values)]
    return table


# ---------------------------------------------------------------------------------------------
# Expressions: typed, so that both engines accept them; parenthesized, so precedence is moot.


@dataclass
class Ref:
    sql: str  # t.c0
    type: str
    pool: list  # the column's non-NULL values, for literals that hit


class Expressions:
    """Draws SQL expressions of a given type over the columns `refs`."""

    def __init__(self, draw, refs: list[Ref]) -> None:
        self.draw = draw
        self.refs = refs

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def columns_of(self, *types: str) -> list[Ref]:
        return [r for r in self.refs if r.type in types]

    def constant(self, sql_type: str, ref: Ref | None = None) -> str:
        if ref is not None and ref.pool and self.draw(st.booleans()):
            return literal(self.pick(ref.pool))
        return literal(self.draw(values_of(sql_type)))

    def of(self, sql_type: str, depth: int = 2) -> str:
        return {"INT": self.integer, "FLOAT": self.float, "TEXT": self.text, "BOOL": self.condition}[sql_type](depth)

    def leaf(self, sql_type: str) -> str:
        columns = self.columns_of(sql_type)
        if columns and self.draw(st.integers(0, 3)):
            return self.pick(columns).sql
        return self.constant(sql_type)

    def integer(self, depth: int = 2) -> str:
        if depth <= 0:
            return self.leaf("INT")
        kind = self.pick(["leaf", "leaf", "add", "sub", "mul", "div", "mod", "abs", "neg", "coalesce", "length",
                          "case"])
        sub = depth - 1
        if kind == "add":
            return f"({self.integer(sub)} + {self.integer(sub)})"
        if kind == "sub":
            return f"({self.integer(sub)} - {self.integer(sub)})"
        if kind == "mul":
            return f"({self.integer(sub)} * {literal(self.draw(st.integers(-3, 3)))})"
        if kind in ("div", "mod"):
            divisor = self.pick([-7, -2, -1, 1, 2, 3, 10])
            return f"({self.integer(sub)} {'/' if kind == 'div' else '%'} {literal(divisor)})"
        if kind == "abs":
            return f"abs({self.integer(sub)})"
        if kind == "neg":
            return f"(-{self.integer(sub)})"
        if kind == "coalesce":
            return f"coalesce({self.integer(sub)}, {self.integer(0)})"
        if kind == "length":
            return f"length({self.text(sub)})"
        if kind == "case":
            return f"(CASE WHEN {self.condition(sub)} THEN {self.integer(sub)} ELSE {self.integer(sub)} END)"
        return self.leaf("INT")

    def number(self, depth: int) -> str:
        return self.integer(depth) if self.draw(st.booleans()) else self.float(depth)

    def float(self, depth: int = 2) -> str:
        if depth <= 0:
            return self.leaf("FLOAT")
        kind = self.pick(["leaf", "leaf", "add", "sub", "mul", "div", "abs", "coalesce"])
        sub = depth - 1
        if kind in ("add", "sub"):
            left, right = self.float(sub), self.number(sub)
            if self.draw(st.booleans()):
                left, right = right, left
            return f"({left} {'+' if kind == 'add' else '-'} {right})"
        if kind == "mul":
            return f"({self.float(sub)} * {literal(self.pick([-2.5, -1, 0.5, 2, 3.0]))})"
        if kind == "div":
            return f"({self.number(sub)} / {literal(self.pick([-4.0, 0.5, 2.0, 3.0]))})"
        if kind == "abs":
            return f"abs({self.float(sub)})"
        if kind == "coalesce":
            return f"coalesce({self.float(sub)}, {self.float(0)})"
        return self.leaf("FLOAT")

    def text(self, depth: int = 2) -> str:
        if depth <= 0:
            return self.leaf("TEXT")
        kind = self.pick(["leaf", "leaf", "concat", "concat_int", "substr", "coalesce"])
        sub = depth - 1
        if kind == "concat":
            return f"({self.text(sub)} || {self.text(sub)})"
        if kind == "concat_int":
            return f"({self.text(sub)} || {self.integer(sub)})"
        if kind == "substr":
            return f"substr({self.text(sub)}, {self.draw(st.integers(1, 3))}, {self.draw(st.integers(0, 4))})"
        if kind == "coalesce":
            return f"coalesce({self.text(sub)}, {self.text(0)})"
        return self.leaf("TEXT")

    def condition(self, depth: int = 2) -> str:
        kinds = ["compare", "compare", "in", "between", "is_null", "like", "bool_column", "constant"]
        if depth > 0:
            kinds += ["and", "or", "not"]
        kind = self.pick(kinds)
        sub = max(depth - 1, 0)
        if kind == "and":
            return f"({self.condition(sub)} AND {self.condition(sub)})"
        if kind == "or":
            return f"({self.condition(sub)} OR {self.condition(sub)})"
        if kind == "not":
            return f"(NOT {self.condition(sub)})"
        if kind == "constant":
            return self.pick(["TRUE", "FALSE"])
        if kind == "is_null":
            operand = self.pick(self.refs).sql if self.refs else self.integer(sub)
            return f"({operand} IS {self.pick(['NULL', 'NOT NULL'])})"
        if kind == "like" and self.columns_of("TEXT"):
            pattern = self.draw(st.text(alphabet="ab %_'ü", max_size=4))
            return f"({self.pick(self.columns_of('TEXT')).sql} {self.pick(['LIKE', 'NOT LIKE'])} {literal(pattern)})"
        if kind == "bool_column" and self.columns_of("BOOL"):
            return self.pick(self.columns_of("BOOL")).sql
        ref = self.pick(self.refs) if self.refs else None
        if ref is None or ref.type == "BOOL":
            return self.comparison(ref, sub, ["=", "<>"])
        if kind == "in":
            items = [self.constant(ref.type, ref) for _ in range(self.draw(st.integers(1, 4)))]
            if self.draw(st.integers(0, 5)) == 0:
                items.append("NULL")
            return f"({ref.sql} {self.pick(['IN', 'NOT IN'])} ({', '.join(items)}))"
        if kind == "between":
            low, high = self.constant(ref.type, ref), self.constant(ref.type, ref)
            return f"({ref.sql} {self.pick(['BETWEEN', 'NOT BETWEEN'])} {low} AND {high})"
        return self.comparison(ref, sub, ["=", "<>", "<", "<=", ">", ">="])

    def comparison(self, ref: Ref | None, depth: int, operators: list[str]) -> str:
        sql_type = ref.type if ref is not None else "INT"
        if sql_type == "BOOL":  # no deeper: a condition inside a comparison inside a condition...
            left = ref.sql if ref is not None else self.leaf("BOOL")
        else:
            left = ref.sql if ref is not None and self.draw(st.integers(0, 2)) else self.of(sql_type, min(depth, 1))
        if sql_type in ("INT", "FLOAT") and self.draw(st.booleans()):
            right = self.constant(self.pick(["INT", "FLOAT"]))  # INT with FLOAT compares as FLOAT
        elif self.draw(st.booleans()) or sql_type == "BOOL":
            right = self.constant(sql_type, ref)
        else:
            right = self.of(sql_type, min(depth, 1))
        return f"({left} {self.pick(operators)} {right})"


def refs_of(table: TableSpec, alias: str | None = None) -> list[Ref]:
    prefix = f"{alias}." if alias else ""
    return [Ref(prefix + c.name, c.type, sorted({r[i] for r in table.rows if r[i] is not None}, key=repr))
            for i, c in enumerate(table.columns)]


# ---------------------------------------------------------------------------------------------
# Statements of each shape.


def order_item(draw, expr: str) -> tuple[str, str]:
    """One ORDER BY item in both dialects: the spanlite text may leave NULLS to the default."""
    descending = draw(st.booleans())
    direction = " DESC" if descending else ""
    nulls = draw(st.sampled_from(["", " NULLS FIRST", " NULLS LAST"]))
    explicit = nulls or (" NULLS FIRST" if descending else " NULLS LAST")  # PostgreSQL's defaults
    return f"{expr}{direction}{nulls}", f"{expr}{direction}{explicit}"


def order_by(draw, leading: list[str], total: list[str]) -> tuple[str, str]:
    if not leading + total:
        return "", ""
    items = [order_item(draw, e) for e in leading] + [order_item(draw, e) for e in total]
    return " ORDER BY " + ", ".join(i[0] for i in items), " ORDER BY " + ", ".join(i[1] for i in items)


def projection(draw, exprs: Expressions, count: int | None = None) -> list[str]:
    count = count or draw(st.integers(1, 3))
    return [exprs.of(draw(st.sampled_from(TYPES)), draw(st.integers(0, 2))) for _ in range(count)]


def filter_query(draw, table: TableSpec) -> Statement:
    exprs = Expressions(draw, refs_of(table))
    select = "*" if draw(st.integers(0, 3)) == 0 else ", ".join(projection(draw, exprs))
    where = f" WHERE {exprs.condition()}" if draw(st.integers(0, 4)) else ""
    sql = f"SELECT {select} FROM {table.name}{where}"
    return Statement(sql, sql, names=select == "*")


def key_condition(draw, table: TableSpec) -> str:
    """Point lookups and ranges on the primary key (or its first column)."""
    exprs = Expressions(draw, refs_of(table))
    refs = {r.sql: r for r in exprs.refs}
    key = table.total_order()
    if table.rows and draw(st.booleans()):
        row = draw(st.sampled_from(table.rows))  # a key that exists
        fixed = [f"{c} = {literal(row[table.columns.index(table.column(c))])}" for c in key]
    else:
        fixed = [f"{c} = {exprs.constant(refs[c].type, refs[c])}" for c in key]
    prefix = draw(st.integers(0, len(key)))
    conditions = fixed[:prefix]
    if prefix < len(key):
        ref = refs[key[prefix]]
        shape = draw(st.sampled_from(["range", "between", "in", "open", "none"]))
        if shape == "range":
            conditions.append(f"{ref.sql} {draw(st.sampled_from(['>', '>=']))} {exprs.constant(ref.type, ref)}")
            conditions.append(f"{ref.sql} {draw(st.sampled_from(['<', '<=']))} {exprs.constant(ref.type, ref)}")
        elif shape == "between":
            conditions.append(f"{ref.sql} BETWEEN {exprs.constant(ref.type, ref)} AND {exprs.constant(ref.type, ref)}")
        elif shape == "in":
            items = ", ".join(exprs.constant(ref.type, ref) for _ in range(draw(st.integers(1, 3))))
            conditions.append(f"{ref.sql} IN ({items})")
        elif shape == "open":
            if ref.type in ("INT", "FLOAT") and draw(st.booleans()):
                bound = literal(draw(st.sampled_from([-0.5, 2.5, 3.0, 7.25])))  # a FLOAT bound on any number
            else:
                bound = exprs.constant(ref.type, ref)
            conditions.append(f"{ref.sql} {draw(st.sampled_from(['<', '<=', '>', '>=', '<>']))} {bound}")
    if draw(st.integers(0, 3)) == 0:
        conditions.append(exprs.condition(1))  # a residual filter the access path must apply
    return " AND ".join(conditions) or exprs.condition(1)


def key_query(draw, table: TableSpec) -> Statement:
    sql = f"SELECT * FROM {table.name} WHERE {key_condition(draw, table)}"
    if draw(st.booleans()):
        pg, lite = order_by(draw, [], table.total_order())
        return Statement(sql + pg, sql + lite, ordered=True)
    return Statement(sql, sql)


def sort_expression(draw, exprs: Expressions) -> str:
    """An ORDER BY expression with a column in it (a bare integer would be a position)."""
    expr = exprs.of(draw(st.sampled_from(TYPES)), 1)
    return expr if any(r.sql in expr for r in exprs.refs) else draw(st.sampled_from(exprs.refs)).sql


def ordered_query(draw, table: TableSpec) -> Statement:
    exprs = Expressions(draw, refs_of(table))
    columns = projection(draw, exprs)
    aliased = [draw(st.booleans()) for _ in columns]
    select = ", ".join(f"{c} AS o{i}" if a else c for i, (c, a) in enumerate(zip(columns, aliased)))
    where = f" WHERE {exprs.condition(1)}" if draw(st.booleans()) else ""
    leading = []
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(columns) - 1))
        how = draw(st.sampled_from(["expression", "position", "alias"]))
        if how == "position":
            leading.append(str(i + 1))  # ORDER BY 2: the second output column
        elif how == "alias" and aliased[i]:
            leading.append(f"o{i}")
        else:
            leading.append(sort_expression(draw, exprs))
    pg, lite = order_by(draw, leading, table.total_order())
    limit = ""
    if draw(st.booleans()):
        limit = f" LIMIT {draw(st.integers(0, 8))}"
        if draw(st.booleans()):
            limit += f" OFFSET {draw(st.integers(0, 5))}"
    head = f"SELECT {select} FROM {table.name}{where}"
    return Statement(head + pg + limit, head + lite + limit, ordered=True)


AGGREGATES_OF = {
    "INT": ["count({})", "sum({})", "min({})", "max({})", "avg({})", "count(DISTINCT {})"],
    "FLOAT": ["count({})", "sum({})", "min({})", "max({})", "avg({})"],
    "TEXT": ["count({})", "min({})", "max({})", "count(DISTINCT {})"],
    "BOOL": ["count({})"],
}


def aggregate(draw, exprs: Expressions) -> str:
    if draw(st.integers(0, 4)) == 0:
        return "count(*)"
    sql_type = draw(st.sampled_from(TYPES))
    argument = exprs.of(sql_type, draw(st.integers(0, 1)))
    return draw(st.sampled_from(AGGREGATES_OF[sql_type])).format(argument)


def having(draw, exprs: Expressions) -> str:
    sql_type = draw(st.sampled_from(TYPES))
    call = draw(st.sampled_from([a for a in AGGREGATES_OF[sql_type] if not a.startswith("avg")] + ["count(*)"]))
    result_type = "INT" if call.startswith("count") else sql_type
    threshold = literal(draw(st.integers(0, 3))) if result_type == "INT" else exprs.constant(result_type)
    operator = draw(st.sampled_from([">", "<=", "<>"]))
    return f"{call.format(exprs.of(sql_type, 1))} {operator} {threshold}"


def group_item(draw, exprs: Expressions) -> str:
    ref = draw(st.sampled_from(exprs.refs))
    if ref.type == "INT" and draw(st.integers(0, 3)) == 0:
        return f"({ref.sql} % 3)"
    if ref.type == "TEXT" and draw(st.integers(0, 3)) == 0:
        return f"length({ref.sql})"
    return ref.sql


def aggregate_query(draw, table: TableSpec) -> Statement:
    return grouped_query(draw, Expressions(draw, refs_of(table)), table.name)


def grouped_query(draw, exprs: Expressions, source: str) -> Statement:
    """SELECT keys..., aggregates... FROM source [WHERE] [GROUP BY keys [HAVING]] [ORDER BY]; keys
    are referred to in GROUP BY / ORDER BY by expression, position or alias."""
    keys = list(dict.fromkeys(group_item(draw, exprs) for _ in range(draw(st.integers(0, 2)))))
    aliased = [draw(st.booleans()) for _ in keys]
    aggregates = [aggregate(draw, exprs) for _ in range(draw(st.integers(1, 3)))]
    if draw(st.integers(0, 3)) == 0:
        call = draw(st.sampled_from(["count({})", "sum({})", "max({})"])).format(exprs.integer(1))
        aggregates.append(f"(count(*) + {call})")  # arithmetic over aggregates
    outputs = [f"{k} AS g{i}" if a else k for i, (k, a) in enumerate(zip(keys, aliased))] + aggregates
    where = f" WHERE {exprs.condition(1)}" if draw(st.booleans()) else ""
    sql = f"SELECT {', '.join(outputs)} FROM {source}{where}"

    def reference(i: int) -> str:
        how = draw(st.sampled_from(["expression", "position", "alias"]))
        if how == "position":
            return str(i + 1)
        return f"g{i}" if how == "alias" and aliased[i] else keys[i]

    if keys:
        sql += f" GROUP BY {', '.join(reference(i) for i in range(len(keys)))}"
    if draw(st.integers(0, 2)) == 0:
        sql += f" HAVING {having(draw, exprs)}"
    if keys and draw(st.booleans()):
        leading = []
        if draw(st.booleans()):  # an aggregate first: exact values, so both engines tie alike
            leading.append(draw(st.sampled_from(["count(*)", f"max({draw(st.sampled_from(exprs.refs)).sql})"])))
        pg, lite = order_by(draw, leading, [reference(i) for i in range(len(keys))])  # unique per group: total
        return Statement(sql + pg, sql + lite, ordered=True)
    return Statement(sql, sql)


def distinct_query(draw, table: TableSpec) -> Statement:
    exprs = Expressions(draw, refs_of(table))
    columns = projection(draw, exprs)
    where = f" WHERE {exprs.condition(1)}" if draw(st.booleans()) else ""
    sql = f"SELECT DISTINCT {', '.join(columns)} FROM {table.name}{where}"
    if draw(st.booleans()):
        # Every output column (but constants, which would be positions): a total order.
        pg, lite = order_by(draw, [], [c for c in columns if any(r.sql in c for r in exprs.refs)])
        return Statement(sql + pg, sql + lite, ordered=True)
    return Statement(sql, sql)


def join_query(draw, left: TableSpec, right: TableSpec) -> Statement:
    left_refs, right_refs = refs_of(left, "l"), refs_of(right, "r")
    pairs = [(a, b) for a in left_refs for b in right_refs
             if a.type == b.type or {a.type, b.type} == {"INT", "FLOAT"}]  # INT = FLOAT compares as FLOAT
    a, b = draw(st.sampled_from(pairs))
    on = f"{a.sql} = {b.sql}"
    extra = [(x, y) for x, y in pairs if (x, y) != (a, b)]
    if extra and draw(st.integers(0, 3)) == 0:
        x, y = draw(st.sampled_from(extra))
        on += f" AND {x.sql} = {y.sql}"
    exprs = Expressions(draw, left_refs + right_refs)
    source = f"{left.name} l JOIN {right.name} r ON {on}"
    if draw(st.integers(0, 3)) == 0:
        return grouped_query(draw, exprs, source)
    select = "*" if draw(st.integers(0, 3)) == 0 else ", ".join(projection(draw, exprs))
    where = f" WHERE {exprs.condition(1)}" if draw(st.booleans()) else ""
    sql = f"SELECT {select} FROM {source}{where}"
    if draw(st.booleans()):
        total = [f"l.{c}" for c in left.total_order()] + [f"r.{c}" for c in right.total_order()]
        pg, lite = order_by(draw, [], total)
        return Statement(sql + pg, sql + lite, ordered=True)
    return Statement(sql, sql)


def insert(draw, table: TableSpec) -> Statement:
    """INSERT of new rows (a duplicate key fails the whole statement in both engines), with a
    column list (the others NULL), ON CONFLICT DO NOTHING, or from a SELECT of the table."""
    on_conflict = " ON CONFLICT DO NOTHING" if table.primary_key and draw(st.booleans()) else ""
    if draw(st.integers(0, 3)) == 0:
        exprs = Expressions(draw, refs_of(table))
        shifted = [f"({c.name} + 1)" if c.type == "INT" and c.name in table.primary_key else c.name
                   for c in table.columns]  # new keys, some colliding
        sql = f"INSERT INTO {table.name} SELECT {', '.join(shifted)} FROM {table.name} WHERE {exprs.condition(1)}"
        return Statement(sql + on_conflict, sql + on_conflict, check_table=table)
    columns = [c for c in table.columns if c.name in table.primary_key or draw(st.integers(0, 3))] or table.columns[:1]
    rows = draw(st.lists(st.tuples(*(column_values(c) for c in columns)), min_size=1, max_size=3))
    if table.rows and draw(st.booleans()):
        existing = draw(st.sampled_from(table.rows))  # a key that may already be there
        rows.append(tuple(existing[table.columns.index(c)] for c in columns))
    values = ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)
    sql = f"INSERT INTO {table.name} ({', '.join(c.name for c in columns)}) VALUES {values}{on_conflict}"
    return Statement(sql, sql, check_table=table)


def dml(draw, table: TableSpec) -> Statement:
    if draw(st.integers(0, 3)) == 0:
        return insert(draw, table)
    exprs = Expressions(draw, refs_of(table))
    where = f" WHERE {exprs.condition(1)}" if draw(st.integers(0, 3)) else ""
    targets = [c for c in table.columns if c.name not in table.primary_key]
    if targets and draw(st.integers(0, 2)):
        chosen = draw(st.lists(st.sampled_from(targets), min_size=1, max_size=2, unique_by=lambda c: c.name))
        sets = ", ".join(f"{c.name} = {exprs.of(c.type, 1)}" for c in chosen)
        sql = f"UPDATE {table.name} SET {sets}{where}"
    else:
        sql = f"DELETE FROM {table.name}{where}"
    return Statement(sql, sql, check_table=table)


def snapshot(table: TableSpec) -> Statement:
    """SELECT * in a total order: the table's state, after a DML statement."""
    columns = table.total_order()
    return Statement(f"SELECT * FROM {table.name} ORDER BY {', '.join(columns)}",
                     f"SELECT * FROM {table.name} ORDER BY {', '.join(c + ' NULLS LAST' for c in columns)}",
                     ordered=True, names=True)


# ---------------------------------------------------------------------------------------------
# Scenarios: tables, then statements of one shape over them.

_table_numbers = itertools.count()


@dataclass
class Scenario:
    tables: list[TableSpec]
    statements: list[Statement]


QUERY_SHAPES = {
    "filter": filter_query,
    "key": key_query,
    "ordered": ordered_query,
    "aggregate": aggregate_query,
    "distinct": distinct_query,
}


@st.composite
def scenarios(draw, shape: str) -> Scenario:
    number = next(_table_numbers)
    table = draw(tables(f"diff{number}_a"))
    if shape == "join":
        other = draw(tables(f"diff{number}_b", first_type=draw(st.sampled_from([c.type for c in table.columns]))))
        return Scenario([table, other], [join_query(draw, table, other) for _ in range(4)])
    if shape == "dml":
        return Scenario([table], [dml(draw, table) for _ in range(3)])
    if shape == "unique":
        table = draw(unique_index_tables(f"diff{number}_u"))
        return Scenario([table], [filter_query(draw, table), dml(draw, table)])
    if shape == "transaction":
        end = draw(st.sampled_from(["COMMIT", "ROLLBACK"]))
        block = [dml(draw, table) for _ in range(draw(st.integers(1, 3)))]
        return Scenario([table], [Statement("BEGIN", "BEGIN"), *block, Statement(end, end), snapshot(table)])
    return Scenario([table], [QUERY_SHAPES[shape](draw, table) for _ in range(4)])


# ---------------------------------------------------------------------------------------------
# Running a scenario on both engines and comparing.


@dataclass
class Outcome:
    rows: list[tuple] | None = None  # None for an error
    columns: list[str] | None = None
    count: int | None = None  # rows changed by UPDATE / DELETE
    error: str | None = None

    def __str__(self) -> str:
        if self.error is not None:
            return f"error: {self.error}"
        head = f"{self.count} rows changed; " if self.count is not None else ""
        head += f"columns {self.columns}; " if self.columns else ""
        return head + f"{len(self.rows or [])} rows:\n    " + "\n    ".join(map(repr, self.rows or []))


def spanlite_outcome(cluster: ClusterThread, session: Session, sql: str) -> Outcome:
    try:
        result = cluster.execute(session, sql)[-1]
    except SqlError as e:
        return Outcome(error=f"{e.sqlstate} {e.message}")
    except Exception as e:  # a crash: never agrees with anything
        return Outcome(error=f"CRASH {type(e).__name__}: {e}")
    if result is None:
        return Outcome(error="CRASH: no result")
    verb, _, count = result.status.rpartition(" ")
    if verb in ("UPDATE", "DELETE"):
        return Outcome(rows=[], count=int(count))
    return Outcome(rows=[tuple(int(v) if isinstance(v, bool) else v for v in row) for row in result.rows],
                   columns=list(result.columns))


def sqlite_outcome(lite: sqlite3.Connection, sql: str) -> Outcome:
    try:
        cursor = lite.execute(sql)
        rows = cursor.fetchall()
    except sqlite3.Error as e:
        return Outcome(error=f"sqlite: {e}")
    if sql.startswith(("UPDATE", "DELETE")):
        return Outcome(rows=[], count=cursor.rowcount)
    return Outcome(rows=[tuple(row) for row in rows], columns=[d[0] for d in cursor.description or ()])


def values_match(a: object, b: object) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers):
        if isinstance(a, float) or isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        return a == b
    return type(a) is type(b) and a == b


def rows_match(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(values_match(u, v) for u, v in zip(x, y)) for x, y in zip(a, b)
    )


def multiset_key(row: tuple) -> tuple:
    return tuple((0, 0) if v is None else (1, float(v)) if isinstance(v, (int, float)) else (2, v) for v in row)


def outcomes_agree(statement: Statement, ours: Outcome, theirs: Outcome) -> bool:
    if ours.error is not None or theirs.error is not None:
        crashed = ours.error is not None and ours.error.startswith(("CRASH", "XX000"))  # a bug, not a refusal
        return ours.error is not None and theirs.error is not None and not crashed
    if ours.count != theirs.count or (statement.names and ours.columns != theirs.columns):
        return False
    if statement.ordered:
        return rows_match(ours.rows, theirs.rows)
    return rows_match(sorted(ours.rows, key=multiset_key), sorted(theirs.rows, key=multiset_key))


def report(scenario: Scenario, done: list[str], statement: Statement, ours: Outcome, theirs: Outcome) -> str:
    schema = "\n".join(f"  {sql};" for t in scenario.tables for sql in t.setup_sql())
    history = "".join(f"  {sql};\n" for sql in done)
    return (f"spanlite and sqlite disagree.\nschema and data:\n{schema}\n"
            + (f"statements before:\n{history}" if history else "")
            + f"statement:\n  {statement.pg}\n"
            + (f"  (sqlite: {statement.lite})\n" if statement.lite != statement.pg else "")
            + f"spanlite: {ours}\nsqlite:   {theirs}")


class Run:
    """A scenario on both engines, statement by statement, with PostgreSQL's transaction blocks:
    after an error inside BEGIN..COMMIT spanlite must refuse every statement (25P02) until the
    block ends, and its COMMIT rolls back; sqlite goes on after an error, so there the block
    ends with a ROLLBACK instead."""

    def __init__(self, cluster: ClusterThread, scenario: Scenario) -> None:
        self.cluster = cluster
        self.scenario = scenario
        self.session = Session(cluster.db)
        self.lite = sqlite3.connect(":memory:", isolation_level=None)  # autocommit, like the session
        self.lite.execute("PRAGMA case_sensitive_like = ON")
        self.done: list[str] = []
        self.in_block = False
        self.failed = False

    def ours(self, sql: str) -> Outcome:
        return spanlite_outcome(self.cluster, self.session, sql)

    def check(self, statement: Statement, ours: Outcome, theirs: Outcome) -> None:
        if not outcomes_agree(statement, ours, theirs):
            pytest.fail(report(self.scenario, self.done, statement, ours, theirs), pytrace=False)

    def setup(self) -> None:
        for table in self.scenario.tables:
            for sql in table.setup_sql():
                self.check(Statement(sql, sql), self.ours(sql), sqlite_outcome(self.lite, sql))

    def step(self, statement: Statement) -> None:
        word = statement.pg.split()[0]
        ends_block = word in ("COMMIT", "ROLLBACK")
        if self.failed and not ends_block:
            ours = self.ours(statement.pg)
            if not (ours.error or "").startswith("25P02"):
                self.check(statement, ours, Outcome(error="(PostgreSQL: 25P02, the block failed before)"))
        elif self.failed:
            self.check(statement, self.ours(statement.pg), sqlite_outcome(self.lite, "ROLLBACK"))
        else:
            ours, theirs = self.ours(statement.pg), sqlite_outcome(self.lite, statement.lite)
            self.check(statement, ours, theirs)
            self.failed = self.in_block and ours.error is not None
        self.done.append(statement.pg)
        if word == "BEGIN":
            self.in_block = True
        if ends_block:
            self.in_block = self.failed = False
        if statement.check_table is not None and not self.failed:
            state = snapshot(statement.check_table)
            self.check(state, self.ours(state.pg), sqlite_outcome(self.lite, state.lite))

    def close(self) -> None:
        self.lite.close()
        if self.in_block:
            self.cluster.execute(self.session, "ROLLBACK")
        for table in self.scenario.tables:
            self.cluster.execute(self.session, f"DROP TABLE IF EXISTS {table.name}")


def run_scenario(cluster: ClusterThread, scenario: Scenario) -> None:
    run = Run(cluster, scenario)
    try:
        run.setup()
        for statement in scenario.statements:
            run.step(statement)
    finally:
        run.close()


# ---------------------------------------------------------------------------------------------
# The tests: one per statement shape, so that a known failure of one shape leaves the others on.


def shape_settings(default: int = DEFAULT_EXAMPLES):
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        derandomize=EXAMPLES is None,  # `make test` runs a fixed set; the env var explores
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@shape_settings()
@given(scenario=scenarios("filter"))
def test_projections_and_filters(cluster, scenario):
    run_scenario(cluster, scenario)


@shape_settings()
@given(scenario=scenarios("key"))
def test_primary_key_lookups_and_ranges(cluster, scenario):
    run_scenario(cluster, scenario)


@shape_settings()
@given(scenario=scenarios("ordered"))
def test_order_by_limit_offset(cluster, scenario):
    run_scenario(cluster, scenario)


@shape_settings()
@given(scenario=scenarios("aggregate"))
def test_aggregates_group_by_having(cluster, scenario):
    run_scenario(cluster, scenario)


@shape_settings()
@given(scenario=scenarios("distinct"))
def test_distinct(cluster, scenario):
    run_scenario(cluster, scenario)


@shape_settings()
@given(scenario=scenarios("join"))
def test_inner_joins(cluster, scenario):
    run_scenario(cluster, scenario)


@shape_settings()
@given(scenario=scenarios("dml"))
def test_update_and_delete_leave_the_same_rows(cluster, scenario):
    run_scenario(cluster, scenario)


@shape_settings()
@given(scenario=scenarios("transaction"))
def test_transaction_blocks_commit_roll_back_and_fail_like_postgres(cluster, scenario):
    run_scenario(cluster, scenario)


# Unique indexes with NULLs: NULLs are distinct (several rows may hold NULL), as in PostgreSQL
# and sqlite (a row with a NULL gets the non-unique entry layout, rows.py).
@shape_settings()
@given(scenario=scenarios("unique"))
def test_unique_index_allows_several_nulls(cluster, scenario):
    run_scenario(cluster, scenario)
