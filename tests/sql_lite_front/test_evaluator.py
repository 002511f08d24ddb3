"""Expression evaluation: PostgreSQL semantics of each construct, three-valued logic, errors with
their SQLSTATEs, assignment casts, static types and aggregates (table-driven)."""

import functools
import itertools
import math

import pytest
import sqlglot

from sql_lite_front.encoding import INT_MAX, INT_MIN, SqlType
from sql_lite_front.errors import SqlError
from sql_lite_front.evaluator import (
    AGGREGATES,
    Aggregator,
    aggregate_calls,
    coerce,
    evaluate,
    evaluate_with_aggregates,
    infer_type,
    is_aggregate,
    is_true,
    is_true_with_aggregates,
    sort_key,
    to_text,
)


@functools.lru_cache(maxsize=None)
def expr(sql: str):
    return sqlglot.parse_one(f"SELECT {sql}", read="postgres").expressions[0]


def qualified(table: str, **columns) -> dict:
    return {**columns, **{f"{table}.{name}": value for name, value in columns.items()}}


ROW = qualified(
    "t", i=7, neg=-7, z=0, f=2.5, s="abc", u="ÉtÉ", e="", b=True, fb=False, n=None, by=b"\x01\x02",
    big=INT_MAX, small=INT_MIN, nan=math.nan, inf=math.inf, pct="50%", ns="5",
)


def run(sql: str, row=ROW, ambiguous=frozenset()):
    return evaluate(expr(sql), row, ambiguous)


def same(actual, expected) -> bool:
    """Equal and of the same Python type (1 is not 1.0 nor True); NaN equals NaN."""
    if type(actual) is not type(expected):
        return False
    if isinstance(expected, float) and math.isnan(expected):
        return math.isnan(actual)
    return actual == expected and (not isinstance(expected, float) or math.copysign(1, actual) == math.copysign(1, expected))


VALUES = [
    # literals and columns
    ("1", 1), ("1.5", 1.5), ("1e3", 1000.0), (".5", 0.5), ("'abc'", "abc"), ("'it''s'", "it's"),
    ("TRUE", True), ("FALSE", False), ("NULL", None), ("E'a\\tb\\n'", "a\tb\n"), ("E'\\x41\\101'", "AA"),
    ("i", 7), ("t.i", 7), ("(i)", 7), ("n", None), ("by", b"\x01\x02"),
    ("-9223372036854775808", INT_MIN), ("9223372036854775807", INT_MAX),
    # arithmetic
    ("1 + 2", 3), ("i - 10", -3), ("i * 2", 14), ("7 / 2", 3), ("-7 / 2", -3), ("7 / -2", -3),
    ("7 % 3", 1), ("-7 % 3", -1), ("7 % -3", 1), ("i / 2.0", 3.5), ("i + f", 9.5), ("f * 2", 5.0),
    ("1.0 / 4", 0.25), ("0.1 + 0.2", 0.30000000000000004), ("5.5 % 2", 1.5), ("-i", -7), ("-f", -2.5),
    ("- -i", 7), ("i + '3'", 10), ("f + '0.5'", 3.0), ("small % -1", 0), ("big - 1 + 1", INT_MAX),
    ("n + 1", None), ("1 - NULL", None), ("NULL * NULL", None), ("n / 0", None), ("-n", None),
    ("inf - inf", math.nan), ("nan + 1", math.nan),
    # concatenation
    ("s || 'd'", "abcd"), ("'a' || 1", "a1"), ("1 || 'a'", "1a"), ("s || f", "abc2.5"), ("s || b", "abctrue"),
    ("s || n", None), ("NULL || 'a'", None), ("by || by", b"\x01\x02\x01\x02"), ("by || '\\x03'", b"\x01\x02\x03"),
    ("'x' || 1e20", "x1e+20"), ("s || by", "abc\\x0102"),
    # comparisons
    ("1 = 1", True), ("1 = 2", False), ("1 <> 2", True), ("1 != 1", False), ("1 < 2", True), ("2 <= 2", True),
    ("3 > 2", True), ("2 >= 3", False), ("i = 7.0", True), ("f > 2", True), ("i = '7'", True), ("'7' = i", True),
    ("f = '2.5'", True), ("b = 't'", True), ("by = '\\x0102'", True), ("s = 'abc'", True), ("'a' < 'b'", True),
    ("'B' < 'a'", True), ("'abc' < 'abd'", True), ("'ab' < 'abc'", True), ("u > 'z'", True),
    ("FALSE < TRUE", True), ("by < '\\x03'", True),
    ("i = n", None), ("n = n", None), ("NULL = NULL", None), ("n <> 1", None), ("n < 'x'", None),
    ("nan = nan", True), ("nan > inf", True), ("inf > big", True), ("-0.0 = 0.0", True),
    ("9007199254740993 = 9007199254740992.0", True),  # int compared as float8, as PostgreSQL does
    # IS [NOT] DISTINCT FROM
    ("n IS NOT DISTINCT FROM NULL", True), ("i IS DISTINCT FROM n", True), ("i IS DISTINCT FROM 7", False),
    ("i IS NOT DISTINCT FROM '7'", True), ("n IS DISTINCT FROM n", False),
    # IN
    ("i IN (1, 7)", True), ("i IN (1, 2)", False), ("i IN (1, NULL)", None), ("i IN (7, NULL)", True),
    ("n IN (1, 2)", None), ("i NOT IN (1, 2)", True), ("i NOT IN (1, NULL)", None), ("i IN ('7', '8')", True),
    ("s IN ('abc')", True), ("f IN (2, 2.5)", True),
    # BETWEEN
    ("i BETWEEN 1 AND 10", True), ("i BETWEEN 8 AND 10", False), ("i NOT BETWEEN 8 AND 10", True),
    ("i BETWEEN 7 AND 7", True), ("i BETWEEN n AND 10", None), ("i BETWEEN n AND 5", False),
    ("n BETWEEN 1 AND 2", None), ("s BETWEEN 'a' AND 'b'", True),
    # LIKE / ILIKE
    ("s LIKE 'abc'", True), ("s LIKE 'a%'", True), ("s LIKE '%c'", True), ("s LIKE '%'", True),
    ("s LIKE 'a_c'", True), ("s LIKE 'a_'", False), ("s LIKE 'A%'", False), ("s ILIKE 'A%'", True),
    ("s NOT LIKE 'a%'", False), ("s NOT ILIKE 'x%'", True), ("e LIKE ''", True), ("e LIKE '%'", True),
    ("pct LIKE '50\\%'", True), ("'500' LIKE '50\\%'", False), ("pct LIKE '50!%' ESCAPE '!'", True),
    ("'a\\b' LIKE 'a\\b' ESCAPE ''", True), ("'a.c' LIKE 'a.c'", True), ("'abc' LIKE 'a.c'", False),
    ("'a\nb' LIKE 'a_b'", True), ("n LIKE 'a'", None), ("s LIKE n", None), ("u ILIKE 'été'", True),
    # IS
    ("n IS NULL", True), ("i IS NULL", False), ("n IS NOT NULL", False), ("i IS NOT NULL", True),
    ("NULL IS NULL", True), ("b IS TRUE", True), ("fb IS TRUE", False), ("NULL IS TRUE", False),
    ("NULL IS NOT TRUE", True), ("fb IS FALSE", True), ("NULL IS FALSE", False), ("b IS NOT FALSE", True),
    ("(i > 1) IS TRUE", True), ("n IS NULL IS NULL", False),
    # CASE, COALESCE, NULLIF
    ("CASE WHEN i > 5 THEN 'big' ELSE 'small' END", "big"), ("CASE WHEN i > 9 THEN 'big' END", None),
    ("CASE WHEN n THEN 1 WHEN b THEN 2 END", 2), ("CASE WHEN i > 9 THEN 1 ELSE 2.5 END", 2.5),
    ("CASE i WHEN 1 THEN 'one' WHEN 7 THEN 'seven' END", "seven"), ("CASE n WHEN NULL THEN 1 ELSE 0 END", 0),
    ("CASE i WHEN '7' THEN 1 END", 1), ("CASE WHEN 't' THEN 1 END", 1),
    ("COALESCE(n, 3)", 3), ("COALESCE(n, NULL)", None), ("COALESCE(i, 1 / 0)", 7), ("COALESCE(s)", "abc"),
    ("NULLIF(i, 7)", None), ("NULLIF(i, 8)", 7), ("NULLIF(n, 1)", None), ("NULLIF('5', i)", 5),
    # CAST and ::
    ("CAST(i AS TEXT)", "7"), ("CAST('12' AS INT)", 12), ("' -12 '::int", -12), ("'+5'::bigint", 5),
    ("CAST(2.5 AS INT)", 3), ("CAST(-2.5 AS INT)", -3), ("(3.5)::int", 4),
    ("f::int", 2), ("(f + 1)::int", 4), ("CAST(i AS FLOAT)", 7.0), ("'1e3'::float", 1000.0),
    ("'NaN'::float", math.nan), ("'-Infinity'::float8", -math.inf), ("' inf '::real", math.inf),
    ("'yes'::bool", True), ("'off'::boolean", False), ("'T'::bool", True), ("' 0 '::bool", False),
    ("1::bool", True), ("0::bool", False), ("TRUE::int", 1), ("b::text", "true"), ("f::text", "2.5"),
    ("nan::text", "NaN"), ("inf::text", "Infinity"), ("(-0.0)::text", "-0"), ("1e15::text", "1e+15"),
    ("123456789012345.0::text", "123456789012345"), ("0.0001::text", "0.0001"), ("0.00001::text", "1e-05"),
    ("100.0::text", "100"), ("1.5e300::text", "1.5e+300"), ("(1.0/3)::text", "0.3333333333333333"),
    ("'abcdef'::varchar(3)", "abc"), ("'abc'::char", "a"), ("'abc'::text", "abc"), ("n::int", None),
    ("'\\x0102'::bytea", b"\x01\x02"), ("'\\x01 02'::bytea", b"\x01\x02"), ("'a\\\\b'::bytea", b"a\\b"),
    ("'\\101b'::bytea", b"Ab"), ("'abc'::bytea", b"abc"), ("by::text", "\\x0102"), ("s::bytea", b"abc"),
    ("CAST(i AS INTEGER)", 7), ("i::int8", 7), ("i::smallint", 7), ("i::double precision", 7.0), ("s::string", "abc"),
    # functions
    ("lower('AbC')", "abc"), ("upper(s)", "ABC"), ("lower(n)", None), ("upper(u)", "ÉTÉ"),
    ("length(s)", 3), ("length(u)", 3), ("length(by)", 2), ("char_length(e)", 0), ("length(n)", None),
    ("abs(-3)", 3), ("abs(neg)", 7), ("abs(-2.5)", 2.5), ("abs(n)", None),
    ("round(f)", 2.0), ("round(3.5::float)", 4.0), ("round(2.5)", 3.0), ("round(-2.5)", -3.0), ("round(i)", 7),
    ("round(2.675, 2)", 2.68), ("round(1234.5, -2)", 1200.0), ("round(1250, -2)", 1300), ("round(-1250, -2)", -1300),
    ("round(i, 2)", 7), ("round(f, n)", None), ("round(1.23456, '2')", 1.23), ("round(nan)", math.nan),
    ("substr(s, 2)", "bc"), ("substr(s, 2, 1)", "b"), ("substring(s, 0, 2)", "a"), ("substring(s from 2 for 5)", "bc"),
    ("substr(s, -5, 3)", ""), ("substr(s, 10)", ""), ("substr(u, 2, 1)", "t"), ("substr(by, 2)", b"\x02"),
    ("substr(s, n)", None), ("substr(n, 1)", None), ("substr(s, 1, 0)", ""), ("substring(s for 2)", "ab"),
    # logic with values
    ("i > 1 AND s = 'abc'", True), ("i > 1 OR 1 / z = 1", True), ("i < 1 AND 1 / z = 1", False),
    ("NOT b", False), ("NOT n", None), ("NOT (i > 10)", True), ("'t' AND TRUE", True), ("n OR TRUE", True),
    # Alias (a projection as the parser gives it)
    ("i + 1 AS j", 8),
]


@pytest.mark.parametrize("sql, expected", VALUES, ids=[v[0] for v in VALUES])
def test_value(sql, expected):
    actual = run(sql)
    assert same(actual, expected), f"{sql}: {actual!r} != {expected!r}"


ERRORS = [
    # columns
    ("zz", "42703", 'column "zz" does not exist'), ("t.zz", "42703", "column t.zz does not exist"),
    ("v.i", "42P01", 'missing FROM-clause entry for table "v"'), ("a.b.c", "0A000", "a.b.c"),
    # arithmetic
    ("1 / 0", "22012", "division by zero"), ("i / z", "22012", "division by zero"), ("i % 0", "22012", "division by zero"),
    ("f / 0", "22012", "division by zero"), ("1.5 / 0.0", "22012", "division by zero"), ("f % 0", "22012", "division by zero"),
    ("big + 1", "22003", "bigint out of range"), ("small - 1", "22003", "bigint out of range"),
    ("big * 2", "22003", "bigint out of range"), ("-small", "22003", "bigint out of range"),
    ("small / -1", "22003", "bigint out of range"), ("abs(small)", "22003", "bigint out of range"),
    ("9223372036854775808", "22003", "bigint out of range"), ("-9223372036854775809", "22003", "bigint out of range"),
    ("1e308 * 10", "22003", "value out of range: overflow"), ("1e-308 * 1e-308", "22003", "value out of range: underflow"),
    ("1e308 / 1e-10", "22003", "value out of range: overflow"), ("1e308 + 1e308", "22003", "value out of range: overflow"),
    ("1e400", "22003", "out of range for type double precision"),
    ("s + 1", "42883", "operator does not exist: text + integer"), ("b + 1", "42883", "operator does not exist: boolean + integer"),
    ("by * 2", "42883", "operator does not exist: bytea * integer"), ("-s", "42883", "operator does not exist: - text"),
    ("'1' + '2'", "42725", "operator is not unique: unknown + unknown"), ("i + 'x'", "22P02", 'invalid input syntax for type integer: "x"'),
    ("1 || 2", "42883", "operator does not exist: integer || integer"), ("b || f", "42883", "boolean || double precision"),
    # comparisons
    ("i = s", "42883", "operator does not exist: integer = text"), ("s < 1", "42883", "operator does not exist: text < integer"),
    ("b = 1", "42883", "operator does not exist: boolean = integer"), ("by = s", "42883", "operator does not exist: bytea = text"),
    ("i <> s", "42883", "operator does not exist: integer <> text"), ("i = 'abc'", "22P02", 'invalid input syntax for type integer: "abc"'),
    ("i = '5.5'", "22P02", 'type integer: "5.5"'), ("f = 'x'", "22P02", 'invalid input syntax for type double precision: "x"'),
    ("b = 'maybe'", "22P02", 'invalid input syntax for type boolean: "maybe"'), ("i IN (1, 'a')", "22P02", "integer"),
    ("i IN (1, s)", "42883", "integer = text"), ("i BETWEEN 's' AND 1", "22P02", "integer"), ("i IS DISTINCT FROM s", "42883", "integer = text"),
    ("NULLIF(i, s)", "42883", "integer = text"), ("CASE i WHEN 'x' THEN 1 END", "22P02", "integer"),
    # logic
    ("1 AND TRUE", "42804", "argument of AND must be type boolean, not type integer"),
    ("FALSE OR s", "42804", "argument of OR must be type boolean, not type text"),
    ("NOT i", "42804", "argument of NOT must be type boolean, not type integer"),
    ("CASE WHEN i THEN 1 END", "42804", "argument of CASE/WHEN must be type boolean, not type integer"),
    ("i IS TRUE", "42804", "argument of IS TRUE must be type boolean, not type integer"),
    ("'maybe' AND TRUE", "22P02", "boolean"),
    # LIKE
    ("i LIKE '7'", "42883", "operator does not exist: integer ~~ unknown"), ("s ILIKE 1", "42883", "~~*"),
    ("s LIKE 'a\\'", "22025", "LIKE pattern must not end with escape character"),
    ("s LIKE 'a' ESCAPE '!!'", "22025", "invalid escape string"),
    # casts
    ("'abc'::int", "22P02", 'invalid input syntax for type integer: "abc"'), ("''::int", "22P02", "integer"),
    ("'1.5'::int", "22P02", "integer"), ("'9223372036854775808'::int", "22003", "out of range for type bigint"),
    ("'99999999999999999999999'::int", "22003", "out of range"), ("'1e400'::float", "22003", "out of range for type double precision"),
    ("'1e-400'::float", "22003", "out of range"), ("'abc'::float", "22P02", "double precision"), ("'1_000'::float", "22P02", "double precision"),
    ("'o'::bool", "22P02", 'invalid input syntax for type boolean: "o"'), ("'10'::bool", "22P02", "boolean"),
    ("'\\x0'::bytea", "22023", "hexadecimal"), ("'a\\b'::bytea", "22P02", "bytea"),
    ("f::bool", "42846", "cannot cast type double precision to boolean"), ("by::int", "42846", "cannot cast type bytea to integer"),
    ("b::float", "42846", "cannot cast type boolean to double precision"), ("i::bytea", "42846", "cannot cast type integer to bytea"),
    ("nan::int", "22003", "bigint out of range"), ("1e19::int", "22003", "bigint out of range"), ("inf::int", "22003", "bigint out of range"),
    ("i::numeric", "0A000", "DECIMAL"), ("i::date", "0A000", "DATE"),
    # functions
    ("foo(i)", "42883", "function foo(integer) does not exist"), ("foo()", "42883", "function foo() does not exist"),
    ("bar(s, 'x')", "42883", "function bar(text, unknown) does not exist"),
    ("lower(i)", "42883", "function lower(integer) does not exist"), ("length(b)", "42883", "function length(boolean)"),
    ("abs(s)", "42883", "function abs(text) does not exist"), ("round(s)", "42883", "function round(text)"),
    ("round(f, 1.5)", "42883", "function round(double precision, double precision)"),
    ("substr(i, 1)", "42883", "function substring(integer, integer)"), ("substr(s, 1, -1)", "22011", "negative substring length not allowed"),
    ("substr(s, 'x')", "22P02", "integer"),
    ("sqrt(4)", "0A000", "function sqrt() is not supported"), ("concat(s, s)", "0A000", "function concat()"),
    ("x & 1", "0A000", 'expression "x & 1" is not supported'), ("2 ^ 3", "0A000", "is not supported"),
    ("s SIMILAR TO 'a'", "0A000", "is not supported"), ("s ~ 'a'", "0A000", "is not supported"), ("(1, 2)", "0A000", "is not supported"),
    ("$1", "0A000", "parameters"), ("i = ANY(i)", "0A000", "is not supported"),
    # aggregates outside a group
    ("count(*)", "42803", "aggregate functions are not allowed"), ("sum(i) + 1", "42803", "aggregate functions are not allowed"),
    ("stddev(i)", "0A000", "aggregate function stddev() is not supported"),
]


@pytest.mark.parametrize("sql, sqlstate, fragment", ERRORS, ids=[e[0] for e in ERRORS])
def test_error(sql, sqlstate, fragment):
    with pytest.raises(SqlError) as caught:
        run(sql)
    assert caught.value.sqlstate == sqlstate, f"{sql}: {caught.value!r}"
    assert fragment in caught.value.message


def test_operator_error_has_a_hint():
    with pytest.raises(SqlError) as caught:
        run("i = s")
    assert "explicit type casts" in caught.value.hint


def test_default_in_values_is_rejected_by_the_evaluator():
    values = sqlglot.parse_one("INSERT INTO t VALUES (DEFAULT)", read="postgres").expression.expressions[0]
    with pytest.raises(SqlError) as caught:
        evaluate(values.expressions[0], {})
    assert caught.value.sqlstate == "42601" and "DEFAULT" in caught.value.message


def test_ambiguous_column():
    row = {"a.x": 1, "b.x": 2}
    with pytest.raises(SqlError) as caught:
        run("x + 1", row, frozenset({"x"}))
    assert (caught.value.sqlstate, caught.value.message) == ("42702", 'column reference "x" is ambiguous')
    assert run("a.x + b.x", row, frozenset({"x"})) == 3


# ---------------------------------------------------------------------------------------------
# Three-valued logic.

TRUTH = {"TRUE": True, "FALSE": False, "NULL": None}


def kleene_and(a, b):
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def kleene_or(a, b):
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


@pytest.mark.parametrize("left, right", list(itertools.product(TRUTH, repeat=2)))
def test_truth_tables(left, right):
    a, b = TRUTH[left], TRUTH[right]
    assert run(f"{left} AND {right}") is kleene_and(a, b)
    assert run(f"{left} OR {right}") is kleene_or(a, b)
    # The same through columns (NULL of no type) and through comparisons.
    row = {"p": a, "q": b}
    assert run("p AND q", row) is kleene_and(a, b)
    assert run("p OR q", row) is kleene_or(a, b)
    assert run("NOT (p AND q) = (NOT p OR NOT q)", row) is (None if kleene_and(a, b) is None else True)


@pytest.mark.parametrize("value", TRUTH)
def test_not_and_is(value):
    v = TRUTH[value]
    assert run(f"NOT {value}") is (None if v is None else not v)
    assert run(f"{value} IS TRUE") is (v is True)
    assert run(f"{value} IS NOT TRUE") is (v is not True)
    assert run(f"{value} IS FALSE") is (v is False)
    assert run(f"{value} IS NULL") is (v is None)


# ---------------------------------------------------------------------------------------------
# is_true (WHERE / ON / HAVING).

WHERE = [
    ("i > 5", True), ("i > 50", False), ("n > 5", False), ("NULL", False), ("TRUE", True), ("b", True),
    ("'true'", True), ("'f'", False), ("i IN (1, NULL)", False), ("NOT (i IN (1, NULL))", False),
]


@pytest.mark.parametrize("sql, expected", WHERE, ids=[w[0] for w in WHERE])
def test_is_true(sql, expected):
    assert is_true(expr(sql), ROW) is expected


@pytest.mark.parametrize("sql, type_name", [("i", "integer"), ("s", "text"), ("1.5", "double precision"), ("by", "bytea")])
def test_is_true_rejects_non_booleans(sql, type_name):
    with pytest.raises(SqlError) as caught:
        is_true(expr(sql), ROW)
    assert caught.value.sqlstate == "42804"
    assert caught.value.message == f"argument of WHERE must be type boolean, not type {type_name}"
    with pytest.raises(SqlError, match="argument of JOIN/ON must be type boolean"):
        is_true(expr(sql), ROW, clause="JOIN/ON")


def test_aggregate_in_where():
    with pytest.raises(SqlError) as caught:
        is_true(expr("count(*) > 1"), ROW)
    assert (caught.value.sqlstate, caught.value.message) == ("42803", "aggregate functions are not allowed in WHERE")


# ---------------------------------------------------------------------------------------------
# coerce (assignment casts).

COERCE = [
    (None, SqlType.INT, None, None), (5, SqlType.INT, None, 5), (INT_MIN, SqlType.INT, None, INT_MIN),
    (2.4, SqlType.INT, None, 2), (2.5, SqlType.INT, None, 2), (3.5, SqlType.INT, None, 4), (-2.6, SqlType.INT, None, -3),
    ("12", SqlType.INT, None, 12), (" -3 ", SqlType.INT, None, -3),
    (5, SqlType.FLOAT, None, 5.0), (2.5, SqlType.FLOAT, None, 2.5), ("1.5", SqlType.FLOAT, None, 1.5),
    ("NaN", SqlType.FLOAT, None, math.nan), (math.inf, SqlType.FLOAT, None, math.inf),
    (True, SqlType.BOOL, None, True), ("t", SqlType.BOOL, None, True), ("no", SqlType.BOOL, None, False),
    ("abc", SqlType.TEXT, None, "abc"), ("abc", SqlType.TEXT, 3, "abc"), ("ab  ", SqlType.TEXT, 2, "ab"),
    (12, SqlType.TEXT, None, "12"), (1.5, SqlType.TEXT, None, "1.5"), (True, SqlType.TEXT, None, "true"),
    (b"\x01", SqlType.TEXT, None, "\\x01"), ("été", SqlType.TEXT, 3, "été"),
    (b"\x00\xff", SqlType.BYTES, None, b"\x00\xff"), ("\\x00ff", SqlType.BYTES, None, b"\x00\xff"), ("ab", SqlType.BYTES, None, b"ab"),
]


@pytest.mark.parametrize("value, sql_type, max_length, expected", COERCE)
def test_coerce(value, sql_type, max_length, expected):
    assert same(coerce(value, sql_type, "x", max_length), expected)


COERCE_ERRORS = [
    ("abc", SqlType.INT, None, "22P02", 'invalid input syntax for type integer: "abc"'),
    ("1.5", SqlType.INT, None, "22P02", 'invalid input syntax for type integer: "1.5"'),
    (True, SqlType.INT, None, "42804", 'column "x" is of type integer but expression is of type boolean'),
    (b"1", SqlType.INT, None, "42804", 'column "x" is of type integer but expression is of type bytea'),
    (INT_MAX + 1, SqlType.INT, None, "22003", "integer out of range"),
    (1e19, SqlType.INT, None, "22003", "integer out of range"), (math.nan, SqlType.INT, None, "22003", "integer out of range"),
    ("99999999999999999999", SqlType.INT, None, "22003", "out of range"),
    (True, SqlType.FLOAT, None, "42804", 'column "x" is of type double precision but expression is of type boolean'),
    ("x", SqlType.FLOAT, None, "22P02", "double precision"),
    (1, SqlType.BOOL, None, "42804", 'column "x" is of type boolean but expression is of type integer'),
    (1.0, SqlType.BOOL, None, "42804", "boolean"), ("maybe", SqlType.BOOL, None, "22P02", "boolean"),
    ("abcd", SqlType.TEXT, 3, "22001", "value too long for type character varying(3)"),
    ("ab c", SqlType.TEXT, 2, "22001", "character varying(2)"), (1234, SqlType.TEXT, 3, "22001", "character varying(3)"),
    (1, SqlType.BYTES, None, "42804", 'column "x" is of type bytea but expression is of type integer'),
]


@pytest.mark.parametrize("value, sql_type, max_length, sqlstate, fragment", COERCE_ERRORS)
def test_coerce_errors(value, sql_type, max_length, sqlstate, fragment):
    with pytest.raises(SqlError) as caught:
        coerce(value, sql_type, "x", max_length)
    assert caught.value.sqlstate == sqlstate
    assert fragment in caught.value.message


# ---------------------------------------------------------------------------------------------
# infer_type.

TYPES = {"i": SqlType.INT, "f": SqlType.FLOAT, "s": SqlType.TEXT, "b": SqlType.BOOL, "by": SqlType.BYTES,
         "t.i": SqlType.INT, "t.s": SqlType.TEXT}

INFER = [
    ("1", SqlType.INT), ("1.5", SqlType.FLOAT), ("'a'", SqlType.TEXT), ("NULL", SqlType.NULL), ("TRUE", SqlType.BOOL),
    ("i", SqlType.INT), ("t.s", SqlType.TEXT), ("zz", None), ("i + 1", SqlType.INT), ("i + f", SqlType.FLOAT),
    ("i / 2", SqlType.INT), ("i + '1'", SqlType.INT), ("-f", SqlType.FLOAT), ("i + zz", None), ("s || i", SqlType.TEXT),
    ("by || by", SqlType.BYTES), ("i = 1", SqlType.BOOL), ("i = zz", SqlType.BOOL), ("s LIKE 'a'", SqlType.BOOL),
    ("i IN (1, 2)", SqlType.BOOL), ("i BETWEEN 1 AND 2", SqlType.BOOL), ("i IS NULL", SqlType.BOOL),
    ("NOT b AND i > 1", SqlType.BOOL), ("CAST(i AS TEXT)", SqlType.TEXT), ("s::int", SqlType.INT),
    ("CASE WHEN b THEN 1 ELSE 2.5 END", SqlType.FLOAT), ("CASE WHEN b THEN 'a' END", SqlType.TEXT),
    ("CASE WHEN b THEN s ELSE 'x' END", SqlType.TEXT), ("CASE WHEN b THEN i ELSE NULL END", SqlType.INT),
    ("COALESCE(i, 0)", SqlType.INT), ("COALESCE(i, f)", SqlType.FLOAT), ("NULLIF(s, 'a')", SqlType.TEXT),
    ("lower(s)", SqlType.TEXT), ("length(s)", SqlType.INT), ("abs(f)", SqlType.FLOAT), ("round(i)", SqlType.INT),
    ("substr(by, 1)", SqlType.BYTES), ("substr(s, 1)", SqlType.TEXT),
    ("count(*)", SqlType.INT), ("count(s)", SqlType.INT), ("sum(i)", SqlType.INT), ("sum(f)", SqlType.FLOAT),
    ("avg(i)", SqlType.FLOAT), ("max(s)", SqlType.TEXT), ("min(DISTINCT i)", SqlType.INT), ("sum(i) + 1", SqlType.INT),
    ("i AS j", SqlType.INT), ("foo(i)", None),
]


@pytest.mark.parametrize("sql, expected", INFER, ids=[i[0] for i in INFER])
def test_infer_type(sql, expected):
    assert infer_type(expr(sql), TYPES) is expected


INFER_ERRORS = [
    ("i = s", "42883"), ("i + s", "42883"), ("s + 1", "42883"), ("i || i", "42883"), ("i AND b", "42804"),
    ("NOT s", "42804"), ("CASE WHEN b THEN 1 ELSE s END", "42804"), ("COALESCE(i, b)", "42804"),
    ("sum(s)", "42883"), ("avg(b)", "42883"), ("i IN (1, s)", "42883"), ("-s", "42883"), ("'1' + '1'", "42725"),
]


@pytest.mark.parametrize("sql, sqlstate", INFER_ERRORS, ids=[i[0] for i in INFER_ERRORS])
def test_infer_type_errors(sql, sqlstate):
    """Errors PostgreSQL raises at plan time, whatever the rows (even none)."""
    with pytest.raises(SqlError) as caught:
        infer_type(expr(sql), TYPES)
    assert caught.value.sqlstate == sqlstate


# ---------------------------------------------------------------------------------------------
# Aggregates.

GROUP = [qualified("t", k=1, x=1, y=1.5, s="b", n=None), qualified("t", k=1, x=3, y=None, s="a", n=None),
         qualified("t", k=1, x=None, y=2.5, s="c", n=None), qualified("t", k=1, x=3, y=0.5, s=None, n=None)]

AGGREGATE_VALUES = [
    ("count(*)", 4, 0), ("count(x)", 3, 0), ("count(n)", 0, 0), ("count(DISTINCT x)", 2, 0), ("count(1)", 4, 0),
    ("sum(x)", 7, None), ("sum(y)", 4.5, None), ("sum(n)", None, None), ("sum(DISTINCT x)", 4, None), ("sum(x + y)", 6.0, None),
    ("avg(x)", 7 / 3, None), ("avg(y)", 1.5, None), ("avg(DISTINCT x)", 2.0, None), ("avg(n)", None, None),
    ("min(x)", 1, None), ("max(x)", 3, None), ("min(y)", 0.5, None), ("max(s)", "c", None), ("min(s)", "a", None),
    ("max(n)", None, None), ("max(x > 1)", True, None),
    ("sum(x) + 1", 8, None), ("count(*) > 2", True, False), ("sum(x) / count(x)", 2, None),
    ("COALESCE(sum(n), 0)", 0, 0), ("k", 1, None), ("k + count(*)", 5, None), ("max(x) - min(x)", 2, None),
    ("CASE WHEN count(*) > 3 THEN 'many' ELSE 'few' END", "many", "few"),
]


@pytest.mark.parametrize("sql, expected, expected_empty", AGGREGATE_VALUES, ids=[a[0] for a in AGGREGATE_VALUES])
def test_evaluate_with_aggregates(sql, expected, expected_empty):
    assert same(evaluate_with_aggregates(expr(sql), GROUP), expected)
    assert same(evaluate_with_aggregates(expr(sql), []), expected_empty)


def test_aggregator_streaming_and_special_values():
    count, total = Aggregator(expr("count(*)")), Aggregator(expr("sum(v)"))
    assert (count.result(), total.result()) == (0, None)
    for v in (1, None, 2):
        count.add({"v": v})
        total.add({"v": v})
    assert (count.result(), total.result()) == (3, 3)
    biggest = Aggregator(expr("max(v)"))
    for v in (1.0, math.nan, math.inf):
        biggest.add({"v": v})
    assert math.isnan(biggest.result())  # NaN sorts above every number
    distinct = Aggregator(expr("count(DISTINCT v)"))
    for v in (math.nan, math.nan, 0.0, -0.0, 1.0):
        distinct.add({"v": v})
    assert distinct.result() == 3  # NaN = NaN and -0.0 = 0.0, as in PostgreSQL
    mixed = Aggregator(expr("sum(v)"))
    for v in (1, 2.5):
        mixed.add({"v": v})
    assert same(mixed.result(), 3.5)


AGGREGATE_ERRORS = [
    ("sum(s)", "42883", "function sum(text) does not exist"), ("avg(b)", "42883", "function avg(boolean) does not exist"),
    ("sum(count(*))", "42803", "aggregate function calls cannot be nested"), ("count()", "42809", "count(*)"),
    ("sum(*)", "42601", "sum(*)"), ("count(DISTINCT x, y)", "0A000", "DISTINCT"),
    ("stddev(x)", "0A000", "aggregate function stddev() is not supported"),
    ("count(x) FILTER (WHERE x > 1)", "0A000", "is not supported"),
]


@pytest.mark.parametrize("sql, sqlstate, fragment", AGGREGATE_ERRORS, ids=[a[0] for a in AGGREGATE_ERRORS])
def test_aggregate_errors(sql, sqlstate, fragment):
    group = [{"x": 1, "y": 2, "s": "a", "b": True}]
    with pytest.raises(SqlError) as caught:
        evaluate_with_aggregates(expr(sql), group)
    assert caught.value.sqlstate == sqlstate
    assert fragment in caught.value.message


def test_sum_past_64_bits():
    total = Aggregator(expr("sum(v)"))
    total.add({"v": INT_MAX})
    total.add({"v": -1})
    total.add({"v": 1})  # an intermediate sum past INT_MAX is fine: only the result is checked
    assert total.result() == INT_MAX
    total.add({"v": 1})
    with pytest.raises(SqlError, match="bigint out of range"):
        total.result()


def test_aggregate_helpers():
    assert AGGREGATES == {"count", "sum", "min", "max", "avg"}
    assert is_aggregate(expr("sum(x) + 1")) and is_aggregate(expr("COALESCE(max(x), 0)"))
    assert not is_aggregate(expr("x + 1")) and not is_aggregate(expr("lower(s)"))
    assert [c.sql() for c in aggregate_calls(expr("sum(x) / count(*) + x"))] == ["COUNT(*)", "SUM(x)"]


def test_having():
    assert is_true_with_aggregates(expr("count(*) > 2"), GROUP) is True
    assert is_true_with_aggregates(expr("sum(n) > 0"), GROUP) is False
    with pytest.raises(SqlError, match="argument of HAVING must be type boolean, not type integer"):
        is_true_with_aggregates(expr("count(*)"), GROUP)


# ---------------------------------------------------------------------------------------------
# Text output and order.

TEXTS = [
    (None, None), (True, "true"), (False, "false"), (-12, "-12"), (1.0, "1"), (2.5, "2.5"), (1e15, "1e+15"),
    (1e14, "100000000000000"), (1.5e-5, "1.5e-05"), (0.0001, "0.0001"), (-0.0, "-0"), (math.nan, "NaN"),
    (-math.inf, "-Infinity"), (1.2345678901234568e17, "1.2345678901234568e+17"), (5e-324, "5e-324"),
    ("é", "é"), (b"\x00\xab", "\\x00ab"),
]


@pytest.mark.parametrize("value, text", TEXTS)
def test_to_text(value, text):
    assert to_text(value) == text


def test_sort_key_orders_like_postgresql():
    values = [math.nan, 2, -math.inf, 1.5, math.inf, -3]
    assert [str(v) for v in sorted(values, key=sort_key)] == ["-inf", "-3", "1.5", "2", "inf", "nan"]
    assert sorted(["b", "B", "a", "é", "z"], key=sort_key) == ["B", "a", "b", "z", "é"]  # "C" collation
