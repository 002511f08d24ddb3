"""The SQL parsing front: SQL text -> statement model, errors with SQLSTATE and positions."""

from __future__ import annotations

import pickle

import pytest
from sqlglot import exp

from sql_lite_front import errors
from sql_lite_front.encoding import SqlType
from sql_lite_front.errors import MAX_STATEMENT_BYTES, SqlError
from sql_lite_front.parser import (
    AlterTableSplitAt,
    Begin,
    ColumnDef,
    Commit,
    CreateIndex,
    CreateTable,
    Delete,
    DropIndex,
    DropTable,
    Explain,
    Insert,
    Rollback,
    Select,
    ShowRanges,
    ShowTables,
    TableRef,
    Update,
    parse,
    parse_one,
)


def sql(node: exp.Expression) -> str:
    return node.sql(dialect="postgres")


def rows_sql(rows) -> list[list[str]]:
    return [[sql(value) for value in row] for row in rows]


def error_of(text: str) -> SqlError:
    with pytest.raises(SqlError) as caught:
        parse(text)
    return caught.value


# --- DDL


def test_create_table_maps_types_and_column_options():
    stmt = parse_one(
        "CREATE TABLE IF NOT EXISTS Accounts (id BIGINT PRIMARY KEY, owner VARCHAR(20) NOT NULL, "
        "code CHAR(3), flag CHAR, note TEXT, s STRING, i INT, j INTEGER, k SMALLINT, f FLOAT, "
        "r REAL, d DOUBLE PRECISION, b BOOL, bb BOOLEAN, raw BYTES, raw2 BYTEA, "
        "balance INT DEFAULT 0 + 1)"
    )
    assert isinstance(stmt, CreateTable)
    assert stmt.name == "accounts" and stmt.if_not_exists
    assert stmt.primary_key == ("id",)
    types = {c.name: (c.type, c.max_length) for c in stmt.columns}
    assert types == {
        "id": (SqlType.INT, None), "owner": (SqlType.TEXT, 20), "code": (SqlType.TEXT, 3),
        "flag": (SqlType.TEXT, 1), "note": (SqlType.TEXT, None), "s": (SqlType.TEXT, None),
        "i": (SqlType.INT, None), "j": (SqlType.INT, None), "k": (SqlType.INT, None),
        "f": (SqlType.FLOAT, None), "r": (SqlType.FLOAT, None), "d": (SqlType.FLOAT, None),
        "b": (SqlType.BOOL, None), "bb": (SqlType.BOOL, None), "raw": (SqlType.BYTES, None),
        "raw2": (SqlType.BYTES, None), "balance": (SqlType.INT, None),
    }  # fmt: skip
    by_name = {c.name: c for c in stmt.columns}
    assert by_name["id"] == ColumnDef("id", SqlType.INT, not_null=True, primary_key=True)
    assert by_name["owner"].not_null and not by_name["owner"].primary_key
    assert not by_name["note"].not_null
    assert sql(by_name["balance"].default_expr) == "0 + 1"


def test_create_table_composite_primary_key_as_table_constraint():
    stmt = parse_one("CREATE TABLE t (a INT, b TEXT, c INT, PRIMARY KEY (b, a))")
    assert stmt.primary_key == ("b", "a")
    assert [(c.name, c.primary_key, c.not_null) for c in stmt.columns] == [
        ("a", True, True), ("b", True, True), ("c", False, False),
    ]  # fmt: skip
    named = parse_one("CREATE TABLE t (a INT, b INT, CONSTRAINT t_pk PRIMARY KEY (a, b))")
    assert named.primary_key == ("a", "b") and not named.if_not_exists


def test_create_table_without_primary_key():
    stmt = parse_one("CREATE TABLE t (a INT)")
    assert stmt.primary_key is None and not stmt.columns[0].primary_key


@pytest.mark.parametrize(
    "text, sqlstate, fragment",
    [
        ("CREATE TABLE t (a DECIMAL)", "0A000", "DECIMAL"),
        ("CREATE TABLE t (a NUMERIC(10, 2))", "0A000", "DECIMAL"),
        ("CREATE TABLE t (a TIMESTAMP)", "0A000", "TIMESTAMP"),
        ("CREATE TABLE t (a INT UNIQUE)", "0A000", "UNIQUE"),
        ("CREATE TABLE t (a INT REFERENCES u (x))", "0A000", "REFERENCES"),
        ("CREATE TABLE t (a INT, CHECK (a > 0))", "0A000", "CHECK"),
        ("CREATE TABLE t AS SELECT 1", "0A000", "AS query"),
        ("CREATE TEMP TABLE t (a INT)", "0A000", "table option"),
        ("CREATE TABLE s.t (a INT)", "0A000", "schema-qualified"),
        ("CREATE TABLE t (a INT DEFAULT (SELECT 1))", "0A000", "subquery"),
        ("CREATE TABLE t (a INT PRIMARY KEY, b INT PRIMARY KEY)", "42P16", "multiple primary keys"),
        ("CREATE TABLE t (a INT, PRIMARY KEY (b))", "42703", 'column "b" named in key'),
        ("CREATE TABLE t (a INT, PRIMARY KEY (a, a))", "42701", "appears twice"),
        ("CREATE TABLE t (a INT, a TEXT)", "42701", "specified more than once"),
        ("CREATE TABLE t (a INT NOT NULL NULL)", "42601", "conflicting NULL/NOT NULL"),
        ("CREATE TABLE t (a VARCHAR(0))", "22023", "at least 1"),
        ("CREATE TABLE t (a)", "42601", 'column "a" has no type'),
    ],
)
def test_create_table_rejections(text, sqlstate, fragment):
    err = error_of(text)
    assert err.sqlstate == sqlstate and fragment in err.message


def test_decimal_rejected_as_feature_not_supported_with_hint():
    err = error_of("CREATE TABLE t (a INT, price DECIMAL(10, 2))")
    assert isinstance(err, errors.FeatureNotSupported)
    assert err.message == "type DECIMAL is not supported" and "INT" in err.hint


def test_drop_table_and_indexes():
    assert parse_one("DROP TABLE t") == DropTable("t", if_exists=False)
    assert parse_one("DROP TABLE IF EXISTS T") == DropTable("t", if_exists=True)
    assert parse_one("CREATE UNIQUE INDEX IF NOT EXISTS t_ab ON t (a, b)") == CreateIndex(
        "t_ab", "t", ("a", "b"), unique=True, if_not_exists=True
    )
    assert parse_one("CREATE INDEX ON t (a)") == CreateIndex(None, "t", ("a",))
    assert parse_one("DROP INDEX IF EXISTS t_ab") == DropIndex("t_ab", if_exists=True)
    assert parse_one("DROP INDEX t_ab") == DropIndex("t_ab", if_exists=False)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("CREATE INDEX i ON t (a DESC)", "descending"),
        ("CREATE INDEX i ON t (lower(a))", "expression"),
        ("CREATE INDEX i ON t (a) WHERE a > 1", "partial index"),
        ("DROP TABLE t CASCADE", "CASCADE"),
        ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
    ],
)
def test_unsupported_ddl(text, fragment):
    err = error_of(text)
    assert err.sqlstate == "0A000" and fragment in err.message


# --- DML


def test_insert_values_with_columns_on_conflict_and_returning():
    stmt = parse_one("INSERT INTO t (a, B) VALUES (1, 'x'), (2 + 3, NULL) ON CONFLICT DO NOTHING RETURNING a")
    assert isinstance(stmt, Insert)
    assert (stmt.table, stmt.columns, stmt.on_conflict) == ("t", ("a", "b"), "nothing")
    assert rows_sql(stmt.rows) == [["1", "'x'"], ["2 + 3", "NULL"]]
    assert [sql(e) for e in stmt.returning] == ["a"]
    assert stmt.select is None


def test_insert_without_columns_and_insert_select():
    plain = parse_one("INSERT INTO t VALUES (1)")
    assert plain.columns is None and plain.on_conflict is None and plain.returning is None
    copy = parse_one("INSERT INTO t (a) SELECT b FROM u WHERE b > 1")
    assert copy.rows is None and isinstance(copy.select, Select)
    assert copy.select.from_table == TableRef("u") and sql(copy.select.where) == "b > 1"


def test_upsert_becomes_an_insert_flagged_upsert():
    stmt = parse_one("UPSERT INTO kv (k, v) VALUES (1, 'a'), (2, 'b')")
    assert isinstance(stmt, Insert) and stmt.on_conflict == "upsert"
    assert stmt.columns == ("k", "v") and rows_sql(stmt.rows) == [["1", "'a'"], ["2", "'b'"]]
    lower = parse_one("upsert into kv select k, v from src")
    assert lower.on_conflict == "upsert" and lower.select is not None


def test_upsert_errors_keep_positions_of_the_original_text():
    err = error_of("UPSERT INTO kv VALUES (1 2)")
    assert err.sqlstate == "42601" and err.position == 26 and err.message == 'syntax error at or near "2"'
    assert error_of("UPSERT INTO kv VALUES (1) ON CONFLICT DO NOTHING").sqlstate == "42601"


@pytest.mark.parametrize(
    "text, sqlstate, fragment",
    [
        ("INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2", "0A000", "DO UPDATE"),
        ("INSERT INTO t VALUES (1) ON CONFLICT (a) DO NOTHING", "0A000", "target"),
        ("INSERT INTO t (a, b) VALUES (1)", "42601", "more target columns than expressions"),
        ("INSERT INTO t (a) VALUES (1, 2)", "42601", "more expressions than target columns"),
        ("INSERT INTO t VALUES (1), (1, 2)", "42601", "same length"),
        ("INSERT INTO t (a, a) VALUES (1, 2)", "42701", "more than once"),
        ("INSERT INTO t VALUES ((SELECT 1))", "0A000", "subquery"),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "0A000", "WITH"),
    ],
)
def test_insert_rejections(text, sqlstate, fragment):
    err = error_of(text)
    assert err.sqlstate == sqlstate and fragment in err.message


def test_update_and_delete():
    update = parse_one("UPDATE T SET a = a + 1, B = 'x' WHERE c = 3 AND d IS NOT NULL")
    assert isinstance(update, Update) and update.table == "t"
    assert [(a.column, sql(a.expr)) for a in update.assignments] == [("a", "a + 1"), ("b", "'x'")]
    assert sql(update.where) == "c = 3 AND NOT d IS NULL"
    assert parse_one("UPDATE t SET a = 1").where is None
    delete = parse_one("DELETE FROM t WHERE a IN (1, 2)")
    assert isinstance(delete, Delete) and delete.table == "t" and sql(delete.where) == "a IN (1, 2)"
    assert parse_one("DELETE FROM t") == Delete("t", None)


@pytest.mark.parametrize(
    "text, sqlstate, fragment",
    [
        ("UPDATE t SET a = 1, a = 2", "42601", "multiple assignments"),
        ("UPDATE t SET (a, b) = (1, 2)", "0A000", "multiple-column"),
        ("UPDATE t SET a = 1 FROM u", "0A000", "FROM in UPDATE"),
        ("UPDATE t SET a = (SELECT 1)", "0A000", "subquery"),
        ("DELETE FROM t USING u WHERE t.a = u.a", "0A000", "USING in DELETE"),
        ("DELETE FROM t RETURNING a", "0A000", "RETURNING in DELETE"),
        ("DELETE FROM t WHERE a IN (SELECT b FROM u)", "0A000", "subquery"),
    ],
)
def test_update_delete_rejections(text, sqlstate, fragment):
    err = error_of(text)
    assert err.sqlstate == sqlstate and fragment in err.message


# --- SELECT


def test_select_clauses_and_convenience_fields():
    stmt = parse_one(
        "SELECT a, b * 2 AS twice FROM t WHERE a >= 1 AND (b < 2 OR NOT c) AND d IN (1, 2) "
        "AND e BETWEEN 1 AND 9 AND f LIKE 'x%' AND g IS NULL ORDER BY a DESC, b LIMIT 10 OFFSET 5"
    )
    assert isinstance(stmt, Select) and isinstance(stmt.tree, exp.Select)
    assert stmt.from_table == TableRef("t") and stmt.joins == ()
    assert [sql(p) for p in stmt.projections] == ["a", "b * 2 AS twice"]
    assert sql(stmt.where) == (
        "a >= 1 AND (b < 2 OR NOT c) AND d IN (1, 2) AND e BETWEEN 1 AND 9 AND f LIKE 'x%' AND g IS NULL"
    )
    assert [(sql(o.expr), o.descending, o.nulls_first) for o in stmt.order_by] == [("a", True, True), ("b", False, False)]
    assert sql(stmt.limit) == "10" and sql(stmt.offset) == "5"
    assert not stmt.distinct and stmt.as_of_system_time is None


def test_select_aggregates_group_by_having_distinct():
    stmt = parse_one("SELECT k, COUNT(*), SUM(v), MIN(v), MAX(v), AVG(v) FROM t GROUP BY k HAVING COUNT(*) > 1")
    assert [type(p) for p in stmt.projections] == [exp.Column, exp.Count, exp.Sum, exp.Min, exp.Max, exp.Avg]
    assert [sql(g) for g in stmt.group_by] == ["k"] and sql(stmt.having) == "COUNT(*) > 1"
    assert parse_one("SELECT DISTINCT a FROM t").distinct


def test_select_without_from():
    stmt = parse_one("SELECT 1 + 2")
    assert stmt.from_table is None and [sql(p) for p in stmt.projections] == ["1 + 2"]


def test_inner_join_on_equalities():
    stmt = parse_one("SELECT o.id, c.name FROM orders AS o INNER JOIN Customers c ON o.cust = c.id AND (o.region = c.region)")
    assert stmt.from_table == TableRef("orders", "o") and stmt.from_table.ref_name == "o"
    [join] = stmt.joins
    assert join.table == TableRef("customers", "c")
    assert [(sql(a), sql(b)) for a, b in join.equalities] == [("o.cust", "c.id"), ("o.region", "c.region")]
    assert len(parse_one("SELECT * FROM a JOIN b ON a.x = b.x JOIN c ON b.y = c.y").joins) == 2


def test_identifiers_fold_to_lower_case_unless_quoted():
    stmt = parse_one('SELECT Foo, "MiXed" FROM "Tab" WHERE BAR = 1')
    assert stmt.from_table == TableRef("Tab")
    assert [sql(p) for p in stmt.projections] == ["foo", '"MiXed"'] and sql(stmt.where) == "bar = 1"


def test_as_of_system_time_is_cut_out_and_kept():
    stmt = parse_one("SELECT * FROM t AS OF SYSTEM TIME '-10s' WHERE a = 1 ORDER BY a")
    assert sql(stmt.as_of_system_time) == "'-10s'" and sql(stmt.where) == "a = 1"
    assert "SYSTEM" not in sql(stmt.tree)
    assert sql(parse_one("SELECT a FROM t AS OF SYSTEM TIME follower_read_timestamp()").as_of_system_time) == (
        "FOLLOWER_READ_TIMESTAMP()"
    )
    assert error_of("DELETE FROM t AS OF SYSTEM TIME '-1s'").sqlstate == "0A000"
    err = error_of("SELECT * FROM t AS OF SYSTEM TIME WHERE a = 1")
    assert err.sqlstate == "42601" and err.position == 35


@pytest.mark.parametrize(
    "text, construct",
    [
        ("SELECT a FROM t WHERE a IN (SELECT b FROM u)", "subquery"),
        ("SELECT * FROM (SELECT 1) AS s", "subquery"),
        ("SELECT (SELECT 1)", "subquery"),
        ("SELECT EXISTS (SELECT 1)", "EXISTS"),
        ("SELECT a FROM t LEFT JOIN u ON t.a = u.a", "LEFT JOIN"),
        ("SELECT a FROM t RIGHT OUTER JOIN u ON t.a = u.a", "RIGHT JOIN"),
        ("SELECT a FROM t FULL OUTER JOIN u ON t.a = u.a", "FULL JOIN"),
        ("SELECT a FROM t CROSS JOIN u", "cross join"),
        ("SELECT a FROM t, u", "cross join"),
        ("SELECT a FROM t JOIN u USING (a)", "USING"),
        ("SELECT a FROM t NATURAL JOIN u", "NATURAL JOIN"),
        ("SELECT a FROM t JOIN u ON t.a < u.a", "join condition"),
        ("SELECT row_number() OVER (ORDER BY a) FROM t", "window function"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH"),
        ("SELECT 1 UNION SELECT 2", "UNION"),
        ("SELECT 1 EXCEPT SELECT 2", "EXCEPT"),
        ("SELECT DISTINCT ON (a) a FROM t", "DISTINCT ON"),
        ("SELECT a FROM t FOR UPDATE", "FOR UPDATE"),
        ("SELECT a FROM t FETCH FIRST 1 ROWS ONLY", "FETCH FIRST"),
        ("SELECT a FROM t GROUP BY ROLLUP (a)", "ROLLUP"),
        ("SELECT a FROM s.t", "schema-qualified"),
    ],
)
def test_unsupported_select_constructs_are_0A000_and_named(text, construct):
    err = error_of(text)
    assert isinstance(err, errors.FeatureNotSupported), err
    assert construct in err.message and err.message.endswith("is not supported")


# --- transactions, SHOW, SPLIT AT, EXPLAIN


@pytest.mark.parametrize(
    "text, expected",
    [
        ("BEGIN", Begin()), ("begin transaction", Begin()), ("BEGIN WORK", Begin()),
        ("START TRANSACTION", Begin()), ("BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE", Begin()),
        ("COMMIT", Commit()), ("COMMIT WORK", Commit()), ("END", Commit()), ("END TRANSACTION", Commit()),
        ("ROLLBACK", Rollback()), ("ROLLBACK TRANSACTION", Rollback()), ("ABORT", Rollback()),
    ],
)  # fmt: skip
def test_transaction_control(text, expected):
    assert parse(text) == [expected]


@pytest.mark.parametrize(
    "text", ["ROLLBACK TO SAVEPOINT s", "BEGIN ISOLATION LEVEL READ COMMITTED", "COMMIT AND CHAIN"]
)
def test_unsupported_transaction_forms(text):
    err = error_of(text)
    assert err.sqlstate == "0A000" and text in err.message


def test_show_statements():
    assert parse("SHOW TABLES; SHOW RANGES; show ranges from table Users") == [
        ShowTables(), ShowRanges(None), ShowRanges("users"),
    ]  # fmt: skip
    assert error_of("SHOW DATABASES").sqlstate == "0A000"
    err = error_of("SHOW RANGES FROM INDEX i")
    assert err.sqlstate == "42601" and err.position == len("SHOW RANGES FROM ") + 1
    assert error_of("SHOW RANGES FROM TABLE").message == "syntax error at end of input"


def test_alter_table_split_at_values():
    stmt = parse_one("ALTER TABLE Kv SPLIT AT VALUES (1), (100), (-5 * 2)")
    assert isinstance(stmt, AlterTableSplitAt) and stmt.table == "kv"
    assert rows_sql(stmt.rows) == [["1"], ["100"], ["-5 * 2"]]
    composite = parse_one("ALTER TABLE t SPLIT AT VALUES ('a', 1), ('m', 2)")
    assert rows_sql(composite.rows) == [["'a'", "1"], ["'m'", "2"]]


@pytest.mark.parametrize(
    "text, sqlstate, position",
    [
        ("ALTER TABLE t SPLIT AT VALUES (1), (2 3)", "42601", 39),  # validated by sqlglot
        ("ALTER TABLE t SPLIT AT VALUES (1), (1, 2)", "42601", None),
        ("ALTER TABLE t SPLIT AT", "42601", 23),
        ("ALTER TABLE t SPLIT AT SELECT 1", "0A000", None),
        ("ALTER TABLE t SPLIT AT VALUES ((SELECT 1))", "0A000", None),
        ("ALTER TABLE t ADD COLUMN x INT", "0A000", None),
    ],
)
def test_alter_table_rejections(text, sqlstate, position):
    err = error_of(text)
    assert (err.sqlstate, err.position) == (sqlstate, position)


def test_explain_wraps_the_statement():
    stmt = parse_one("EXPLAIN SELECT a FROM t WHERE a = 1")
    assert isinstance(stmt, Explain) and isinstance(stmt.statement, Select)
    assert sql(stmt.statement.where) == "a = 1"
    upsert = parse_one("EXPLAIN UPSERT INTO t VALUES (1)")
    assert upsert.statement.on_conflict == "upsert"
    assert error_of("EXPLAIN ANALYZE SELECT 1").sqlstate == "0A000"
    assert error_of("EXPLAIN BEGIN").sqlstate == "0A000"


def test_unknown_and_unsupported_statements():
    err = error_of("FOO BAR")
    assert (err.sqlstate, err.position, err.message) == ("42601", 1, 'syntax error at or near "FOO"')
    for text, name in [("GRANT ALL ON t TO u", "GRANT"), ("TRUNCATE t", "TRUNCATE"), ("VACUUM", "VACUUM")]:
        err = error_of(text)
        assert err.sqlstate == "0A000" and err.message == f"{name} is not supported"


# --- syntax errors, positions, format()


def test_syntax_error_position_and_psql_format():
    err = error_of("SELECT a FROM t WHERE a = = 1")
    assert isinstance(err, errors.SqlSyntaxError) and err.sqlstate == "42601"
    assert err.message == 'syntax error at or near "="' and err.position == 27
    assert err.format() == (
        'ERROR:  syntax error at or near "="\n'
        "LINE 1: SELECT a FROM t WHERE a = = 1\n"
        "                                  ^\n"
        "SQLSTATE: 42601"
    )


def test_misspelled_keyword_gets_a_hint():
    err = error_of("SELECT * FORM t")
    assert err.sqlstate == "42601" and err.position == 15  # sqlglot stops at "t", after the alias FORM
    assert err.hint == '"FORM" is not a keyword; did you mean FROM?'
    assert err.format().splitlines() == [
        'ERROR:  syntax error at or near "t"',
        "LINE 1: SELECT * FORM t",
        "                      ^",
        'HINT:  "FORM" is not a keyword; did you mean FROM?',
        "SQLSTATE: 42601",
    ]


def test_syntax_error_on_a_later_line_of_a_later_statement():
    text = "SELECT 1;\nSELECT a\n  FROM t\n WHERE abc dfe"
    err = error_of(text)
    assert err.position == text.index("dfe") + 1 and err.statement == text
    assert err.format().splitlines()[1:3] == ["LINE 4:  WHERE abc dfe", " " * len("LINE 4:  WHERE abc ") + "^"]


def test_syntax_error_at_end_of_input():
    err = error_of("SELECT a FROM t WHERE")
    assert err.message == "syntax error at end of input" and err.position == len("SELECT a FROM t WHERE") + 1
    assert err.format().splitlines()[2] == " " * len("LINE 1: SELECT a FROM t WHERE") + "^"


def test_statement_cut_short_by_a_semicolon_points_at_it():
    err = error_of("INSERT INTO t VALUES (1, ; SELECT 1")
    assert err.message == 'syntax error at or near ";"' and err.position == len("INSERT INTO t VALUES (1, ") + 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("SELECT 'abc", "unterminated quoted string at or near \"'abc\""),
        ("SELECT E'abc", "unterminated quoted string at or near \"E'abc\""),
        ('SELECT "abc', 'unterminated quoted identifier at or near ""abc"'),
        ("SELECT $$abc", 'unterminated dollar-quoted string at or near "$$abc"'),
        ("SELECT 1 /* abc", 'unterminated /* comment at or near "/* abc"'),
    ],
)
def test_unterminated_literals(text, message):
    err = error_of(text)
    assert err.sqlstate == "42601" and err.message == message
    assert err.position == len("SELECT ") + 1 + (2 if "/*" in text else 0)


def test_unterminated_string_in_a_later_statement_points_into_the_script():
    text = "INSERT INTO t VALUES (1);\nINSERT INTO t VALUES ('oops)"
    err = error_of(text)
    assert err.position == text.index("'oops") + 1
    assert err.format().splitlines()[1:3] == ["LINE 2: INSERT INTO t VALUES ('oops)", " " * 30 + "^"]


def test_semicolon_inside_strings_does_not_split():
    [stmt] = parse("INSERT INTO t VALUES ('a;b'); ")
    assert rows_sql(stmt.rows) == [["'a;b'"]]
    [explain] = parse("EXPLAIN SELECT 'x;y'")
    assert sql(explain.statement.projections[0]) == "'x;y'"


# --- size limit, scripts, cache


def test_oversized_statement_is_54000():
    padding = " " * (MAX_STATEMENT_BYTES - len("SELECT 1"))
    assert len(parse("SELECT 1" + padding)) == 1  # exactly at the limit
    err = error_of("SELECT 1" + padding + " ")
    assert isinstance(err, errors.ProgramLimitExceeded) and err.sqlstate == "54000"
    assert str(MAX_STATEMENT_BYTES) in err.message


def test_size_limit_counts_utf8_bytes():
    text = "SELECT '" + "é" * (MAX_STATEMENT_BYTES // 2) + "'"  # fewer characters than the limit
    assert len(text) < MAX_STATEMENT_BYTES
    assert error_of(text).sqlstate == "54000"


def test_multi_statement_scripts_skip_empty_statements():
    statements = parse("BEGIN;; INSERT INTO t VALUES (1);\n-- a comment\n; UPDATE t SET a = 2; COMMIT;")
    assert [type(s) for s in statements] == [Begin, Insert, Update, Commit]
    assert parse("") == [] and parse("  ;  ; ") == [] and parse("-- nothing") == []


def test_parse_one_requires_exactly_one_statement():
    assert parse_one("COMMIT") == Commit()
    assert error_of_one("SELECT 1; SELECT 2").sqlstate == "42601"
    assert error_of_one("").sqlstate == "42601"


def error_of_one(text: str) -> SqlError:
    with pytest.raises(SqlError) as caught:
        parse_one(text)
    return caught.value


def test_cache_returns_the_same_statement_objects():
    text = "SELECT a FROM cached_t WHERE a = 1; COMMIT"
    first, second = parse(text), parse(text)
    assert first is not second  # each caller gets its own list...
    assert all(a is b for a, b in zip(first, second, strict=True))  # ...of the shared statements
    assert parse(text + " ")[0] is not first[0]
    first.clear()
    assert len(parse(text)) == 2


def test_errors_are_not_cached_and_carry_the_text():
    text = "SELECT * FORM t"
    assert error_of(text) is not error_of(text)
    assert error_of(text).statement == text


def test_statements_are_immutable():
    stmt = parse_one("DROP TABLE t")
    with pytest.raises(AttributeError):
        stmt.name = "u"  # type: ignore[misc]


# --- errors module


def test_error_format_with_hint_and_detail_and_no_position():
    err = errors.unique_violation("t_pkey", ["a", "b"], ["1", "'x'"])
    assert err.format().splitlines() == [
        'ERROR:  duplicate key value violates unique constraint "t_pkey"',
        "DETAIL:  Key (a, b)=(1, 'x') already exists.",
        "SQLSTATE: 23505",
    ]
    retry = errors.serialization_failure("write too old")
    assert retry.sqlstate == "40001" and retry.format().splitlines()[1].startswith("HINT:  ")


@pytest.mark.parametrize(
    "factory, sqlstate",
    [
        (lambda: errors.syntax_error("x"), "42601"), (lambda: errors.undefined_table("t"), "42P01"),
        (lambda: errors.undefined_column("c"), "42703"), (lambda: errors.duplicate_table("t"), "42P07"),
        (lambda: errors.duplicate_object("i"), "42710"), (lambda: errors.unique_violation("k"), "23505"),
        (lambda: errors.not_null_violation("c", "t"), "23502"),
        (lambda: errors.datatype_mismatch("c", "integer", "text"), "42804"),
        (lambda: errors.invalid_text_representation("integer", "x"), "22P02"),
        (errors.division_by_zero, "22012"), (errors.numeric_value_out_of_range, "22003"),
        (lambda: errors.string_data_right_truncation("character varying(3)"), "22001"),
        (lambda: errors.feature_not_supported("x"), "0A000"),
        (lambda: errors.serialization_failure("x"), "40001"),
        (errors.in_failed_sql_transaction, "25P02"), (errors.no_active_sql_transaction, "25P01"),
        (errors.active_sql_transaction, "25001"), (lambda: errors.statement_too_long(1 << 20), "54000"),
    ],
)  # fmt: skip
def test_error_factories_and_sqlstates(factory, sqlstate):
    err = factory()
    assert isinstance(err, SqlError) and err.sqlstate == sqlstate
    assert type(errors.error_for_sqlstate(sqlstate, err.message)) is type(err)
    assert err.format().splitlines()[-1] == f"SQLSTATE: {sqlstate}"


def test_plain_sql_error_and_pickling():
    err = SqlError('column "x" does not exist', "42703", hint="h", position=3, statement="abc")
    assert err.sqlstate == "42703" and str(err) == 'column "x" does not exist'
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.message, copy.sqlstate, copy.hint, copy.position) == (err.message, "42703", "h", 3)
    assert SqlError("boom").sqlstate == "XX000"
    assert errors.error_for_sqlstate("99999", "m").sqlstate == "99999"


def test_caret_on_a_long_line_is_windowed_like_psql():
    text = "SELECT " + ", ".join(f"column_{i}" for i in range(30)) + " FROM t WHERE a = = 1 AND " + "b = 2 AND " * 9
    err = error_of(text)
    line, caret = err.format().splitlines()[1:3]
    assert line.startswith("LINE 1: ...") and line.endswith("...") and len(line) == len("LINE 1: ") + 66
    assert line[caret.index("^") :].startswith("= 1 AND")


def test_error_not_at_the_end_of_a_complete_looking_statement():
    err = error_of("SELECT a FROM t WHERE = 1")
    assert err.sqlstate == "42601" and err.message != "syntax error at end of input"
