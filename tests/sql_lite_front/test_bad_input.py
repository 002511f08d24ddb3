"""Bad input: each mistake gets PostgreSQL's SQLSTATE and a message that says what was wrong, and
leaves the session as PostgreSQL would, with no partial write.

Every case runs twice over a table with two rows:
- alone (autocommit): the error; the table unchanged; the session idle; the next statement works;
- inside BEGIN, after a write of its own: the error; the block failed, so every statement
  is refused with 25P02 until it ends; COMMIT then rolls back (its tag says ROLLBACK); the
  table unchanged, the block's earlier write included; the next statement works.

One embedded cluster serves the module from a thread (as in test_differential.py); each case
creates its own table.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from sql_lite_front.errors import MAX_STATEMENT_BYTES, SqlError
from sql_lite_front.executor import Session
from tests.sql_lite_front.test_differential import ClusterThread

_numbers = itertools.count()


@pytest.fixture(scope="module")
def cluster():
    served = ClusterThread()
    yield served
    served.close()


class Client:
    """A session and a fresh table `{t}` (k INT PRIMARY KEY, i INT, s TEXT NOT NULL, f FLOAT)."""

    def __init__(self, cluster: ClusterThread, setup: tuple[str, ...] = ()) -> None:
        self.cluster = cluster
        self.session = Session(cluster.db)
        self.table = f"bad{next(_numbers)}"
        self.run(f"CREATE TABLE {{t}} (k INT PRIMARY KEY, i INT, s TEXT NOT NULL, f FLOAT)")
        self.run("INSERT INTO {t} VALUES (1, 10, 'a', 1.5), (2, 20, 'b', 2.5)")
        for sql in setup:
            self.run(sql)

    def sql(self, text: str) -> str:
        return text.replace("{t}", self.table)

    def run(self, text: str):
        results = self.cluster.execute(self.session, self.sql(text))
        return results[-1] if results else None

    def error(self, text: str) -> SqlError:
        with pytest.raises(SqlError) as caught:
            self.run(text)
        return caught.value

    def state(self) -> list[tuple]:
        # length(s): a case may hold a long text; the whole row would clutter a failure message.
        return self.run("SELECT k, i, length(s), s, f FROM {t} ORDER BY k").rows


@dataclass(frozen=True)
class Case:
    id: str
    statement: str
    sqlstate: str
    says: tuple[str, ...]  # fragments of the message, the hint or the detail
    setup: tuple[str, ...] = ()
    position: int | None = None


LONG_TEXT = "x" * 60_000  # a row of 60 KB; 18 copies are over the 1 MiB value limit
OVERSIZED_UPDATE = "UPDATE {t} SET s = " + " || ".join(["s"] * 18) + " WHERE k = 3"

CASES = [
    # wrong types
    Case("text into an INT column", "INSERT INTO {t} (k, i, s) VALUES (3, 'abc', 'c')", "22P02",
         ("invalid input syntax for type integer", '"abc"')),
    Case("text compared with an INT", "SELECT k FROM {t} WHERE s = 1", "42883",
         ("operator does not exist: text = integer",)),
    Case("an INT compared with a literal that is no integer", "SELECT k FROM {t} WHERE i = 'abc'", "22P02",
         ("invalid input syntax for type integer", '"abc"')),
    Case("a TEXT expression into an INT column", "UPDATE {t} SET i = s", "42804",
         ('column "i" is of type integer but expression is of type text',)),
    Case("a WHERE that is no boolean", "DELETE FROM {t} WHERE i", "42804",
         ("argument of WHERE must be type boolean, not type integer",)),
    # missing tables and columns
    Case("SELECT from a missing table", "SELECT * FROM nope", "42P01", ('relation "nope" does not exist',)),
    Case("INSERT into a missing table", "INSERT INTO nope VALUES (1)", "42P01", ('relation "nope" does not exist',)),
    Case("UPDATE of a missing table", "UPDATE nope SET a = 1", "42P01", ('relation "nope" does not exist',)),
    Case("DELETE from a missing table", "DELETE FROM nope", "42P01", ('relation "nope" does not exist',)),
    Case("a missing column in the select list", "SELECT nope FROM {t}", "42703", ('column "nope" does not exist',)),
    Case("a missing column in WHERE, no row matching", "DELETE FROM {t} WHERE nope = 1 AND k = 99", "42703",
         ('column "nope" does not exist',)),
    Case("a missing column in an INSERT's column list", "INSERT INTO {t} (k, nope) VALUES (3, 1)", "42703",
         ('column "nope" does not exist',)),
    Case("a missing column in SET", "UPDATE {t} SET nope = 1", "42703", ('column "nope" does not exist',)),
    # keys and constraints
    Case("a duplicate primary key", "INSERT INTO {t} VALUES (1, 0, 'z', 0.0)", "23505",
         ('duplicate key value violates unique constraint', "Key (k)=(1) already exists")),
    Case("a multi-row INSERT whose third row is a duplicate: none is written",
         "INSERT INTO {t} VALUES (3, 0, 'c', 0.0), (4, 0, 'd', 0.0), (2, 0, 'e', 0.0), (5, 0, 'f', 0.0)", "23505",
         ('duplicate key value violates unique constraint', "Key (k)=(2) already exists")),
    Case("two rows of one INSERT with the same key", "INSERT INTO {t} VALUES (3, 0, 'c', 0.0), (3, 0, 'd', 0.0)",
         "23505", ('duplicate key value violates unique constraint',)),
    Case("an UPDATE onto an existing key", "UPDATE {t} SET k = 1 WHERE k = 2", "23505",
         ('duplicate key value violates unique constraint',)),
    Case("a duplicate in a unique index", "INSERT INTO {t} VALUES (3, 10, 'c', 0.0)", "23505",
         ('duplicate key value violates unique constraint "{t}_i_key"',),
         setup=("CREATE UNIQUE INDEX {t}_i_key ON {t} (i)",)),
    Case("NULL into a NOT NULL column", "INSERT INTO {t} (k, i) VALUES (3, 1)", "23502",
         ('null value in column "s"', "violates not-null constraint")),
    Case("an explicit NULL into a NOT NULL column", "INSERT INTO {t} VALUES (3, 1, NULL, 1.0)", "23502",
         ('null value in column "s"',)),
    Case("an UPDATE setting a NOT NULL column to NULL", "UPDATE {t} SET s = NULL WHERE k = 2", "23502",
         ('null value in column "s"',)),
    Case("NULL into the primary key", "INSERT INTO {t} VALUES (NULL, 1, 'c', 1.0)", "23502",
         ('null value in column "k"',)),
    # arithmetic
    Case("an INT division by zero", "SELECT i / 0 FROM {t}", "22012", ("division by zero",)),
    Case("a FLOAT division by zero", "SELECT f / 0.0 FROM {t}", "22012", ("division by zero",)),
    Case("a modulo by zero", "SELECT i % (k - k) FROM {t}", "22012", ("division by zero",)),
    Case("a division by zero in an UPDATE, after a row was changed", "UPDATE {t} SET i = 100 / (k - 2)", "22012",
         ("division by zero",)),
    Case("INT overflow in arithmetic", "SELECT i * 9223372036854775807 FROM {t}", "22003", ("bigint out of range",)),
    Case("an integer literal over 64 bits", "INSERT INTO {t} VALUES (3, 9223372036854775808, 'c', 0.0)", "22003",
         ("out of range",)),
    Case("text over 64 bits into an INT column", "INSERT INTO {t} VALUES (3, '99999999999999999999', 'c', 0.0)",
         "22003", ("out of range for type bigint",)),
    # syntax and names
    Case("an unterminated string", "SELECT 'abc", "42601", ("unterminated quoted string",), position=8),
    Case("an unterminated string after a statement", "INSERT INTO {t} VALUES (3, 1, 'c', 1.0); SELECT 'oops",
         "42601", ("unterminated quoted string",)),
    Case("an unknown function", "SELECT nope(i) FROM {t}", "42883", ("function nope(integer) does not exist",)),
    Case("an ambiguous column in a join", "SELECT s FROM {t} a JOIN {t} b ON a.k = b.k", "42702",
         ('column reference "s" is ambiguous',)),
    Case("a column neither grouped nor aggregated", "SELECT i, count(*) FROM {t}", "42803",
         ('column "{t}.i" must appear in the GROUP BY clause or be used in an aggregate function',)),
    Case("an aggregate in WHERE", "SELECT k FROM {t} WHERE count(*) > 1", "42803",
         ("aggregate functions are not allowed in WHERE",)),
    Case("too many values", "INSERT INTO {t} VALUES (3, 1, 'c', 1.0, 99)", "42601",
         ("INSERT has more expressions than target columns",)),
    Case("too few values for the column list", "INSERT INTO {t} (k, i, s) VALUES (3, 1)", "42601",
         ("INSERT has more target columns than expressions",)),
    Case("CREATE of an existing table", "CREATE TABLE {t} (a INT)", "42P07", ('relation "{t}" already exists',)),
    Case("DROP of a missing table", "DROP TABLE nope", "42P01", ('table "nope" does not exist',)),
    Case("an ORDER BY position out of range", "SELECT k FROM {t} ORDER BY 2", "42P10",
         ("ORDER BY position 2 is not in select list",)),
    # limits
    Case("a statement over the size limit", "SELECT '" + "x" * MAX_STATEMENT_BYTES + "'", "54000",
         ("statement is too long", f"the limit is {MAX_STATEMENT_BYTES} bytes", "Split it into several statements")),
    Case("a row over the KV value size limit", OVERSIZED_UPDATE, "54000",
         ("row is too big", "1048576 bytes", "Store large values in several rows"),
         setup=(f"INSERT INTO {{t}} VALUES (3, 30, '{LONG_TEXT}', 0.0)",)),
    Case("an index entry over the KV key size limit", "INSERT INTO {t} VALUES (3, 30, '" + "y" * 5000 + "', 0.0)",
         "54000", ("index row is too big", "4096 bytes", "Keep primary key and indexed values short"),
         setup=("CREATE INDEX {t}_s ON {t} (s)",)),
    # garbage
    Case("control characters and Latin-1", "\x01\x02\xff\xfe garbage", "42601", ("syntax error",)),
    Case("a lone surrogate (invalid UTF-8 decoded with surrogateescape)", "SELECT 'a\udcff'", "22021",
         ('invalid byte sequence for encoding "UTF8": 0xff',), position=10),
    Case("half a statement", "SELECT k FROM {t} WHERE", "42601", ("syntax error at end of input",)),
    Case("a misspelled keyword", "SELEC k FROM {t}", "42601", ("syntax error",)),
    Case("an empty column list", "INSERT INTO {t} () VALUES ()", "42601", ("an empty column list",)),
    Case("an empty VALUES row", "INSERT INTO {t} VALUES (3, 1, 'c', 1.0), ()", "42601", ("an empty VALUES row",)),
]


def check_error(client: Client, case: Case) -> None:
    error = client.error(case.statement)
    assert error.sqlstate == case.sqlstate, error.format()
    text = " ".join(filter(None, [error.message, error.hint, error.detail]))
    for fragment in case.says:
        assert client.sql(fragment) in text, error.format()
    if case.position is not None:
        assert error.position == case.position, error.format()


def check_usable(client: Client, before: list[tuple]) -> None:
    """Nothing was written, and the session takes the next statement."""
    assert client.state() == before
    assert client.run("SELECT 1 + 1").rows == [(2,)]
    assert client.run("INSERT INTO {t} VALUES (99, 0, 'next', 0.0)").status == "INSERT 0 1"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_alone_the_error_leaves_nothing_written(cluster, case):
    client = Client(cluster, case.setup)
    before = client.state()
    check_error(client, case)
    assert client.session.transaction_state == "idle"
    check_usable(client, before)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_in_a_block_the_error_fails_it_until_rollback(cluster, case):
    client = Client(cluster, case.setup)
    before = client.state()
    client.run("BEGIN")
    client.run("INSERT INTO {t} VALUES (50, 0, 'written in the block', 0.0)")
    check_error(client, case)
    assert client.session.transaction_state == "failed"
    for statement in ("SELECT 1", "INSERT INTO {t} VALUES (51, 0, 'refused', 0.0)"):
        refused = client.error(statement)
        assert refused.sqlstate == "25P02", refused.format()
        assert "current transaction is aborted" in refused.message
    assert client.run("COMMIT").status == "ROLLBACK"
    assert client.session.transaction_state == "idle"
    check_usable(client, before)


def test_drop_table_if_exists_and_then_drop_fails(cluster):
    client = Client(cluster)
    assert client.run("DROP TABLE IF EXISTS nope").status == "DROP TABLE"
    assert client.run("DROP TABLE {t}").status == "DROP TABLE"
    assert client.run("DROP TABLE IF EXISTS {t}").status == "DROP TABLE"
    assert client.error("SELECT * FROM {t}").sqlstate == "42P01"
    assert client.run(f"CREATE TABLE {{t}} (a INT)").status == "CREATE TABLE"  # the name is free again


@pytest.mark.parametrize("text", ["", ";", " ; ;\n", "-- only a comment", "/* a comment */"])
def test_an_empty_statement_does_nothing(cluster, text):
    client = Client(cluster)
    before = client.state()
    assert client.cluster.execute(client.session, text) == []
    client.run("BEGIN")
    assert client.cluster.execute(client.session, text) == []
    assert client.session.transaction_state == "open"  # PostgreSQL's empty query fails nothing
    client.run("COMMIT")
    check_usable(client, before)


def test_fewer_values_without_a_column_list_take_the_defaults(cluster):
    """As in PostgreSQL: `INSERT INTO t VALUES (3, 30, 'c')` fills the first columns, the rest
    get their defaults (NULL here); only an explicit column list must be matched."""
    client = Client(cluster)
    assert client.run("INSERT INTO {t} VALUES (3, 30, 'c')").status == "INSERT 0 1"
    assert client.run("SELECT k, i, s, f FROM {t} WHERE k = 3").rows == [(3, 30, "c", None)]
    error = client.error("INSERT INTO {t} VALUES (4)")
    assert error.sqlstate == "23502" and 'column "s"' in error.message


def test_errors_on_an_empty_table_are_those_of_a_full_one(cluster):
    """PostgreSQL checks names and types while planning, so an empty table (or one where no row
    reaches the mistake) gives the same error."""
    client = Client(cluster)
    client.run("DELETE FROM {t}")
    for sql, sqlstate in [("SELECT k FROM {t} WHERE s = 1", "42883"), ("SELECT k FROM {t} WHERE i = 'abc'", "22P02"),
                          ("SELECT nope FROM {t}", "42703"), ("SELECT nope(k) FROM {t}", "42883"),
                          ("SELECT i, count(*) FROM {t}", "42803"), ("UPDATE {t} SET i = 'x'", "22P02"),
                          ("SELECT sum(s) FROM {t}", "42883")]:
        assert client.error(sql).sqlstate == sqlstate, sql
