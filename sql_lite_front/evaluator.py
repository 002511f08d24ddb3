"""Expression evaluation of the SQL layer: sqlglot trees (postgres dialect) over a row, as PostgreSQL would.

    expr = sqlglot.parse_one("SELECT a + 1", read="postgres").expressions[0]
    evaluate(expr, {"a": 41, "t.a": 41})                 # 42
    is_true(parse("... WHERE a > 1").where, row)        # WHERE semantics: only TRUE passes

API
- `Row`: a mapping from column names to values, keyed by both "col" and "table.col". A bare name
  two tables share is left out of the row and passed in `ambiguous` (42702 if referenced).
- `evaluate(expr, row, ambiguous)` -> None (NULL), bool, int, float, str or bytes.
- `is_true(expr, row, ambiguous, clause="WHERE")`: TRUE passes; FALSE and NULL do not; a
  non-boolean is 42804 "argument of WHERE must be type boolean, not type integer".
- `coerce(value, sql_type, column, max_length)`: PostgreSQL's assignment cast for INSERT/UPDATE.
- `infer_type(expr, column_types)`: the static type (None if unknown); raises on what PostgreSQL
  rejects at plan time whatever the data (`int_col = text_col`, `CASE ... 1 ... 'a'::text`).
- Aggregates: `AGGREGATES`, `is_aggregate`, `aggregate_calls`, `Aggregator(call).add(row) /
  .result()`, `evaluate_with_aggregates(expr, group_rows)`, `is_true_with_aggregates` (HAVING).
- `to_text(value)`: PostgreSQL's text output of a value; `sort_key(value)` and
  `compare_values(a, b)`: PostgreSQL's order of non-NULL values (NaN last, text by code point).
- Parse analysis, run before any row is read so that an empty table gives the errors a full
  one does: `analyze_select(select, [(alias, descriptor), ...])` checks names (42703 / 42702 /
  42P01), types (42883 / 42804 / 22P02 for `int_col = 'abc'`), aggregates and grouping (42803:
  PostgreSQL's "must appear in the GROUP BY clause", a table grouped by its whole primary key
  giving all its columns), DISTINCT ... ORDER BY (42P10), and returns the statement with
  ORDER BY / GROUP BY positions and output names (`ORDER BY 2`, `ORDER BY alias`) replaced by
  their expressions; `Scope` resolves column references; `analyze_condition` and
  `analyze_assignment` check UPDATE / DELETE.

Semantics (PostgreSQL's)
- Literals: 12 -> int, 1.5 / 1e3 -> float, 'x' -> str of type "unknown" (see below), TRUE,
  FALSE, NULL, E'..' escapes. A quoted literal takes the type of what it meets, as in
  PostgreSQL: `int_col = '5'` compares 5, `int_col = 'x'` is 22P02, `'1' || 2` is text.
- Arithmetic + - * / % on INT and FLOAT (INT with FLOAT is FLOAT); INT / INT truncates toward
  zero; x / 0 and x % 0 are 22012; INT results outside 64 bits are 22003 "bigint out of range";
  FLOAT overflow/underflow are 22003 "value out of range: overflow/underflow".
- `||` concatenates text (a non-text side is converted to text, as PostgreSQL's anynonarray
  operator does) or bytea with bytea; `1 || 2` is 42883.
- Comparisons between a type and itself, or INT with FLOAT (compared as FLOAT, as PostgreSQL
  does); other pairs are 42883 "operator does not exist: integer = text". NULL gives NULL.
  FLOAT NaN equals NaN and sorts above every number; -0.0 equals 0.0.
- AND / OR / NOT are three-valued; operands must be boolean (42804). IN (list), BETWEEN,
  LIKE / ILIKE with % _ and backslash (or ESCAPE) escapes, IS [NOT] NULL / TRUE / FALSE,
  IS [NOT] DISTINCT FROM, CASE, COALESCE, NULLIF, CAST / :: to INT FLOAT TEXT VARCHAR(n) BOOL
  BYTEA, lower, upper, length, abs, round(x), round(x, n), substr / substring.
- Anything else is 0A000 naming the construct; an unknown function is 42883
  "function foo(integer) does not exist".

HAZARDs
- Types are checked on values, at run time: a NULL value carries no type, so `int_col =
  text_col` is NULL on a row where int_col is NULL and an error on other rows, where PostgreSQL
  rejects the query at plan time. Call infer_type when planning to get PostgreSQL's errors.
- Decimal literals are FLOAT (PostgreSQL: NUMERIC): 0.1 + 0.2 is 0.30000000000000004 and a FLOAT
  rounds half to even when stored into an INT column (`INSERT ... VALUES (2.5)` stores 2;
  PostgreSQL, rounding the NUMERIC, stores 3). CAST(2.5 AS INT) and round(2.5) on a literal
  round half away from zero like PostgreSQL's NUMERIC.
- Collation: text compares by code point, which is the byte order of its UTF-8, as PostgreSQL's
  "C" collation; a database created with en_US.UTF-8 would order 'a' < 'B'. lower/upper use
  Python's Unicode case mapping (a "C" ctype would change ASCII letters only).
- FLOAT text (`to_text`, `'x' || 1.5`, CAST(f AS TEXT)) is PostgreSQL 12+'s shortest round-trip
  form: 1e+15, 1e-05, 100, -0, NaN, Infinity; INT and FLOAT values that are equal print alike.
- CASE and COALESCE return the chosen branch's value as is: `CASE WHEN c THEN 1 ELSE 2.5 END`
  gives the int 1 on some rows (PostgreSQL: numeric 1); infer_type gives the common type, FLOAT.
- AND / OR evaluate left to right and stop early (PostgreSQL promises no order): `x <> 0 AND
  10 / x > 1` never divides by zero, and a type error on the right of a FALSE goes unseen.
- Leniencies: FLOAT % FLOAT works (PostgreSQL has no float8 %); round(FLOAT, n) works
  (PostgreSQL: numeric only); round(INT) stays INT; MIN/MAX take BOOL and BYTEA; `coerce` parses
  every str, also one from a TEXT column (PostgreSQL rejects a text expression into an INT column).
- Strictness: integer literals and SUM results outside 64 bits are 22003 (PostgreSQL makes
  them NUMERIC); text -> INT accepts decimal digits only (PostgreSQL 16 also takes 0x1F, 1_000).
- Messages name INT "integer" (the column type clients see) but its range errors say "bigint
  out of range" (the range is bigint's), except coerce's "integer out of range".
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlglot import exp

from sql_lite_front import errors
from sql_lite_front.catalog import Column, TableDescriptor
from sql_lite_front.encoding import INT_MAX, INT_MIN, SqlType
from sql_lite_front.errors import SqlError

# The DDL's mapping of type names, so that CAST(x AS <type>) accepts exactly the column types.
from sql_lite_front.parser import OrderItem, Select, _column_type

__all__ = [
    "AGGREGATES", "Aggregator", "Row", "Scope", "aggregate_calls", "analyze_assignment", "analyze_condition",
    "analyze_select", "coerce", "compare_values", "evaluate",
    "evaluate_with_aggregates", "infer_type", "is_aggregate", "is_true", "is_true_with_aggregates",
    "sort_key", "to_text",
]

Row = Mapping[str, object]


class _Unknown:
    """PostgreSQL's type "unknown": a quoted literal, typed by where it is used ('5' = int_col)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()
NULL, BOOL, INT, FLOAT, TEXT, BYTES = (SqlType.NULL, SqlType.BOOL, SqlType.INT, SqlType.FLOAT, SqlType.TEXT,
                                       SqlType.BYTES)
_NUMERIC = frozenset({INT, FLOAT})
_TYPE_NAMES = {
    NULL: "unknown", BOOL: "boolean", INT: "integer", FLOAT: "double precision", TEXT: "text",
    BYTES: "bytea", UNKNOWN: "unknown",
}  # fmt: skip
_TYPE_OF_PYTHON: dict[type, SqlType] = {
    type(None): NULL, bool: BOOL, int: INT, float: FLOAT, str: TEXT, bytes: BYTES,
}  # fmt: skip

Typed = tuple  # (value, type): type is a SqlType or UNKNOWN; NULL for a value of no known type


def _type_name(sql_type: object) -> str:
    return _TYPE_NAMES.get(sql_type, str(sql_type))


def _type_of(value: object) -> SqlType:
    try:
        return _TYPE_OF_PYTHON[type(value)]
    except KeyError:
        raise SqlError(f"internal error: a row holds a Python {type(value).__name__}, which no SQL type has") from None


# ---------------------------------------------------------------------------------------------
# Errors PostgreSQL words thus; errors.py has factories for the common ones.

_OPERATOR_HINT = "No operator matches the given name and argument types. You might need to add explicit type casts."
_FUNCTION_HINT = "No function matches the given name and argument types. You might need to add explicit type casts."


def _no_operator(symbol: str, left: object, right: object = None) -> SqlError:
    if right is None:  # a prefix operator
        operands = f"{symbol} {_type_name(left)}"
    else:
        operands = f"{_type_name(left)} {symbol} {_type_name(right)}"
    return SqlError(f"operator does not exist: {operands}", "42883", hint=_OPERATOR_HINT)


def _no_function(name: str, arg_types: Iterable[object]) -> SqlError:
    args = ", ".join(map(_type_name, arg_types))
    return SqlError(f"function {name}({args}) does not exist", "42883", hint=_FUNCTION_HINT)


def _not_boolean(what: str, sql_type: object) -> SqlError:
    return errors.DatatypeMismatch(f"argument of {what} must be type boolean, not type {_type_name(sql_type)}")


def _bigint_out_of_range() -> SqlError:
    return errors.numeric_value_out_of_range("bigint")


def _float_out_of_range(kind: str) -> SqlError:
    return errors.NumericValueOutOfRange(f"value out of range: {kind}")


def _not_supported(node: exp.Expression) -> SqlError:
    if isinstance(node, exp.AggFunc):
        return errors.feature_not_supported(f"aggregate function {node.sql_name().lower()}()")
    if isinstance(node, exp.Func):
        return errors.feature_not_supported(f"function {node.sql_name().lower()}()")
    try:
        text = node.sql(dialect="postgres")
    except Exception:  # sqlglot cannot print every node it can parse; the node kind names it then
        text = node.key
    return errors.feature_not_supported(f'expression "{text[:60]}"')


# ---------------------------------------------------------------------------------------------
# Public API.


def evaluate(expr: exp.Expression, row: Row, ambiguous: frozenset[str] = frozenset()) -> object:
    """The value of `expr` over `row`: None (NULL), bool, int, float, str or bytes."""
    return _eval(expr, _Context(row, ambiguous))[0]


def is_true(expr: exp.Expression, row: Row, ambiguous: frozenset[str] = frozenset(), clause: str = "WHERE") -> bool:
    """WHERE / ON / HAVING: True only for TRUE; `clause` names the clause in errors ("JOIN/ON")."""
    value, sql_type = _eval(expr, _Context(row, ambiguous, clause))
    return _as_bool(value, sql_type, clause) is True


def evaluate_with_aggregates(
    expr: exp.Expression, group_rows: list[Row], ambiguous: frozenset[str] = frozenset()
) -> object:
    """`expr` (e.g. SUM(x) + 1) over one group: aggregates over all its rows, column references
    from its first row (NULL for an empty group: `SELECT COUNT(*) FROM t` on an empty t)."""
    return _eval_group(expr, group_rows, ambiguous, None)[0]


def is_true_with_aggregates(
    expr: exp.Expression, group_rows: list[Row], ambiguous: frozenset[str] = frozenset(), clause: str = "HAVING"
) -> bool:
    value, sql_type = _eval_group(expr, group_rows, ambiguous, clause)
    return _as_bool(value, sql_type, clause) is True


def to_text(value: object) -> str | None:
    """PostgreSQL's text output of a value (None for NULL): true, 1.5, 1e+20, \\x0102."""
    return None if value is None else _TO_TEXT[type(value)](value)


def sort_key(value: object) -> tuple:
    """A key ordering non-NULL values of one type as PostgreSQL does (NaN above every number)."""
    if type(value) is float and value != value:
        return (1, 0.0)
    return (0, value)


class _Context:
    """What a node needs besides itself: the row, the ambiguous names, the clause (for
    messages), and the values of the aggregate calls when evaluating over a group."""

    __slots__ = ("row", "ambiguous", "clause", "aggregates")

    def __init__(
        self, row: Row, ambiguous: frozenset[str], clause: str | None = None, aggregates: dict[int, Typed] | None = None
    ) -> None:
        self.row = row
        self.ambiguous = ambiguous
        self.clause = clause
        self.aggregates = aggregates


def _eval(node: exp.Expression, ctx: _Context) -> Typed:
    handler = _HANDLERS.get(type(node))
    if handler is None:
        raise _not_supported(node)
    return handler(node, ctx)


# ---------------------------------------------------------------------------------------------
# Leaves: literals and column references.

_INT_LITERAL = re.compile(r"[0-9]+\Z")


def _literal(node: exp.Literal, ctx: _Context) -> Typed:
    if node.is_string:
        return node.this, UNKNOWN
    return _number(node.this, negative=False)


def _number(text: str, negative: bool) -> Typed:
    if _INT_LITERAL.match(text):
        value = -int(text) if negative else int(text)
        if not INT_MIN <= value <= INT_MAX:
            raise _bigint_out_of_range()  # PostgreSQL would make it a NUMERIC, which spanlite has not
        return value, INT
    value = float(text)  # a NUMERIC in PostgreSQL: a FLOAT here (HAZARD in the module docstring)
    if math.isinf(value):
        raise errors.NumericValueOutOfRange(f'"{text}" is out of range for type double precision')
    return (-value if negative else value), FLOAT


_E_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)
_E_LETTERS = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _escape_string(node: exp.ByteString, ctx: _Context) -> Typed:
    """E'a\\nb': sqlglot keeps the backslash escapes (and calls it a ByteString); decode them."""
    raw = bytearray()
    pos = 0
    for match in _E_ESCAPE.finditer(node.this):
        raw += node.this[pos : match.start()].encode("utf-8")
        raw += _e_escape_bytes(match.group(1))
        pos = match.end()
    raw += node.this[pos:].encode("utf-8")
    try:
        return raw.decode("utf-8"), UNKNOWN
    except UnicodeDecodeError:
        raise SqlError('invalid byte sequence for encoding "UTF8"', "22021") from None


def _e_escape_bytes(code: str) -> bytes:
    if code[0] == "x":
        return bytes([int(code[1:], 16)])  # \xhh and \ooo are bytes, as in PostgreSQL
    if code[0] in "01234567":
        return bytes([int(code, 8) & 0xFF])
    if code[0] in "uU" and len(code) > 1:
        return chr(int(code[1:], 16)).encode("utf-8", "surrogatepass")
    return _E_LETTERS.get(code, code).encode("utf-8")


def _boolean(node: exp.Boolean, ctx: _Context) -> Typed:
    return bool(node.this), BOOL


def _null(node: exp.Null, ctx: _Context) -> Typed:
    return None, NULL


def _column(node: exp.Column, ctx: _Context) -> Typed:
    if not isinstance(node.this, exp.Identifier) or node.args.get("db") or node.args.get("catalog"):
        raise errors.feature_not_supported(f"column reference {node.sql(dialect='postgres')}")
    name, table, row = node.name, node.table, ctx.row
    if table:
        try:
            value = row[f"{table}.{name}"]
        except KeyError:
            raise _missing_qualified(row, table, name) from None
    else:
        if name in ctx.ambiguous:
            raise SqlError(f'column reference "{name}" is ambiguous', "42702")
        try:
            value = row[name]
        except KeyError:
            raise errors.undefined_column(name) from None
    return value, _type_of(value)


def _missing_qualified(row: Row, table: str, name: str) -> SqlError:
    if any(key.startswith(f"{table}.") for key in row):
        return errors.UndefinedColumn(f"column {table}.{name} does not exist")
    return errors.UndefinedTable(f'missing FROM-clause entry for table "{table}"')


def _var(node: exp.Var, ctx: _Context) -> Typed:
    if node.name.upper() == "DEFAULT":  # the executor replaces DEFAULT in VALUES before evaluating
        raise errors.syntax_error("DEFAULT is not allowed in this context")
    raise _not_supported(node)


def _inner(node: exp.Expression, ctx: _Context) -> Typed:
    return _eval(node.this, ctx)  # (x) and `x AS name`


def _parameter(node: exp.Expression, ctx: _Context) -> Typed:
    raise errors.feature_not_supported("query parameters ($1)")


# ---------------------------------------------------------------------------------------------
# Text input of each type (for quoted literals, casts and assignments), PostgreSQL's rules.

_SPACE = " \t\n\r\f\v"  # C isspace(), which PostgreSQL's input functions skip
_INT_TEXT = re.compile(rf"[{_SPACE}]*([+-]?)0*([0-9]+)[{_SPACE}]*\Z")
_FLOAT_TEXT = re.compile(
    rf"[{_SPACE}]*[+-]?(?:(?P<mantissa>[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|inf|infinity|nan)[{_SPACE}]*\Z",
    re.IGNORECASE,
)
_BOOL_WORDS = (("true", True, 1), ("false", False, 1), ("yes", True, 1), ("no", False, 1),
               ("on", True, 2), ("off", False, 2), ("1", True, 1), ("0", False, 1))  # (word, value, shortest prefix)


def _parse_int(text: str) -> int:
    match = _INT_TEXT.match(text)
    if not match:
        raise errors.invalid_text_representation("integer", text)
    if len(match.group(2)) > 19:  # too long for 64 bits (and for int() on huge strings)
        raise errors.NumericValueOutOfRange(f'value "{text}" is out of range for type bigint')
    value = int(match.group(1) + match.group(2))
    if not INT_MIN <= value <= INT_MAX:
        raise errors.NumericValueOutOfRange(f'value "{text}" is out of range for type bigint')
    return value


def _parse_float(text: str) -> float:
    match = _FLOAT_TEXT.match(text)
    if not match:
        raise errors.invalid_text_representation("double precision", text)
    value = float(match.group(0).strip(_SPACE))
    mantissa = match.group("mantissa")
    # strtod's range errors, which PostgreSQL reports: 1e400 (inf) and 1e-400 (0 from non-zero digits).
    if mantissa is not None and (math.isinf(value) or (value == 0.0 and re.search("[1-9]", mantissa))):
        raise errors.NumericValueOutOfRange(f'"{text}" is out of range for type double precision')
    return value


def _parse_bool(text: str) -> bool:
    word = text.strip(_SPACE).lower()
    for full, value, shortest in _BOOL_WORDS:
        if len(word) >= shortest and full.startswith(word):
            return value
    raise errors.invalid_text_representation("boolean", text)


def _parse_bytea(text: str) -> bytes:
    if text.startswith("\\x"):  # hex format: \x0102
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise errors.InvalidParameterValue(f'invalid hexadecimal data: "{text[:40]}"') from None
    return _parse_bytea_escape(text)


_BYTEA_ESCAPE = re.compile(r"\\(\\|[0-3][0-7][0-7])?")


def _parse_bytea_escape(text: str) -> bytes:
    """The escape format: \\\\ is a backslash, \\ooo an octal byte, other characters their UTF-8."""
    raw = bytearray()
    pos = 0
    for match in _BYTEA_ESCAPE.finditer(text):
        code = match.group(1)
        if code is None:  # a backslash starting neither escape
            raise errors.InvalidTextRepresentation("invalid input syntax for type bytea")
        raw += text[pos : match.start()].encode("utf-8")
        raw.append(92 if code == "\\" else int(code, 8))
        pos = match.end()
    raw += text[pos:].encode("utf-8")
    return bytes(raw)


_PARSERS: dict[SqlType, Callable[[str], object]] = {
    INT: _parse_int, FLOAT: _parse_float, BOOL: _parse_bool, BYTES: _parse_bytea, TEXT: str,
}  # fmt: skip


def _resolved_type(other: object) -> SqlType:
    """The type a quoted literal takes next to a value of type `other` (text if nothing better)."""
    return other if other in (INT, FLOAT, BOOL, BYTES) else TEXT  # type: ignore[return-value]


def _resolve_unknown(left: Typed, right: Typed) -> tuple[Typed, Typed]:
    """Both operands with a quoted literal cast to the other operand's type, as PostgreSQL does."""
    if left[1] is UNKNOWN:
        target = _resolved_type(right[1])
        left = _PARSERS[target](left[0]), target
    if right[1] is UNKNOWN:
        target = _resolved_type(left[1])
        right = _PARSERS[target](right[0]), target
    return left, right


# ---------------------------------------------------------------------------------------------
# Text output of each type.


def _float_text(value: float) -> str:
    """PostgreSQL 12+'s float8out: shortest round-trip digits, exponent form outside [-4, 15)."""
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0.0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = decimal.Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # where the decimal point falls in `digits`
    digits = digits.rstrip("0")
    scientific = point - 1
    if scientific < -4 or scientific >= 15:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        text = f"{mantissa}e{'-' if scientific < 0 else '+'}{abs(scientific):02d}"
    elif point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return "-" + text if sign else text


_TO_TEXT: dict[type, Callable[[object], str]] = {
    bool: lambda v: "true" if v else "false",
    int: str,
    float: _float_text,  # type: ignore[dict-item]
    str: str,
    bytes: lambda v: "\\x" + v.hex(),  # type: ignore[attr-defined]
}


# ---------------------------------------------------------------------------------------------
# Arithmetic.


def _check_int(value: int) -> int:
    if INT_MIN <= value <= INT_MAX:
        return value
    raise _bigint_out_of_range()


def _int_div(a: int, b: int) -> int:
    if b == 0:
        raise errors.division_by_zero()
    quotient = abs(a) // abs(b)  # truncated toward zero, as C and PostgreSQL do
    return _check_int(quotient if (a < 0) == (b < 0) else -quotient)


def _int_mod(a: int, b: int) -> int:
    if b == 0:
        raise errors.division_by_zero()
    remainder = abs(a) % abs(b)  # the sign of the dividend, as C and PostgreSQL do
    return -remainder if a < 0 else remainder


def _float_checked(result: float, a: float, b: float) -> float:
    """PostgreSQL's float8 overflow check: an infinity from finite operands is an error."""
    if math.isinf(result) and not (math.isinf(a) or math.isinf(b)):
        raise _float_out_of_range("overflow")
    return result


def _float_mul(a: float, b: float) -> float:
    result = _float_checked(a * b, a, b)
    if result == 0.0 and a != 0.0 and b != 0.0:
        raise _float_out_of_range("underflow")
    return result


def _float_div(a: float, b: float) -> float:
    if b == 0.0:
        raise errors.division_by_zero()
    result = a / b
    if math.isinf(result) and not math.isinf(a):
        raise _float_out_of_range("overflow")
    if result == 0.0 and a != 0.0 and not math.isinf(b):
        raise _float_out_of_range("underflow")
    return result


def _float_mod(a: float, b: float) -> float:
    if b == 0.0:
        raise errors.division_by_zero()
    try:
        return math.fmod(a, b)  # the sign of the dividend, like the INT %
    except ValueError:  # fmod(inf, b)
        return math.nan


# symbol, INT operation, FLOAT operation
_ARITHMETIC: dict[type, tuple[str, Callable[[int, int], int], Callable[[float, float], float]]] = {
    exp.Add: ("+", lambda a, b: _check_int(a + b), lambda a, b: _float_checked(a + b, a, b)),
    exp.Sub: ("-", lambda a, b: _check_int(a - b), lambda a, b: _float_checked(a - b, a, b)),
    exp.Mul: ("*", lambda a, b: _check_int(a * b), _float_mul),
    exp.Div: ("/", _int_div, _float_div),
    exp.Mod: ("%", _int_mod, _float_mod),
}


def _arithmetic_type(symbol: str, left: object, right: object) -> SqlType:
    """INT op INT is INT, FLOAT with INT or FLOAT is FLOAT; a NULL of no type takes the other's."""
    if left is UNKNOWN and right is UNKNOWN:
        raise SqlError(f"operator is not unique: unknown {symbol} unknown", "42725", hint=_OPERATOR_HINT)
    left, right = _resolved_pair_types(left, right)
    if left in (INT, FLOAT, NULL) and right in (INT, FLOAT, NULL):
        return FLOAT if FLOAT in (left, right) else INT if INT in (left, right) else NULL
    raise _no_operator(symbol, left, right)


def _resolved_pair_types(left: object, right: object) -> tuple[object, object]:
    if left is UNKNOWN:
        left = _resolved_type(right)
    if right is UNKNOWN:
        right = _resolved_type(left)
    return left, right


def _arithmetic(node: exp.Binary, ctx: _Context) -> Typed:
    symbol, int_op, float_op = _ARITHMETIC[type(node)]
    left, right = _eval(node.this, ctx), _eval(node.expression, ctx)
    result_type = _arithmetic_type(symbol, left[1], right[1])
    (a, _), (b, _) = _resolve_unknown(left, right)
    if a is None or b is None:
        return None, result_type
    if result_type is INT:
        return int_op(a, b), INT  # type: ignore[arg-type]
    return float_op(float(a), float(b)), FLOAT  # type: ignore[arg-type]


def _neg_type(sql_type: object) -> object:
    if sql_type in (INT, FLOAT, NULL):
        return sql_type
    raise _no_operator("-", sql_type)


def _neg(node: exp.Neg, ctx: _Context) -> Typed:
    inner = node.this
    if isinstance(inner, exp.Literal) and not inner.is_string:
        return _number(inner.this, negative=True)  # so that -9223372036854775808 is in range
    value, sql_type = _eval(inner, ctx)
    sql_type = _neg_type(sql_type)
    if value is None:
        return None, sql_type
    return (_check_int(-value) if sql_type is INT else -value), sql_type  # type: ignore[operator]


def _concat_type(left: object, right: object) -> SqlType:
    """bytea || bytea is bytea; text || anything (but a bytea pair) is text; else 42883."""
    pair = {left, right}
    if BYTES in pair and pair <= {BYTES, UNKNOWN, NULL}:
        return BYTES
    if pair & {TEXT, UNKNOWN, NULL}:
        return TEXT
    raise _no_operator("||", left, right)


def _concat(node: exp.DPipe, ctx: _Context) -> Typed:
    left, right = _eval(node.this, ctx), _eval(node.expression, ctx)
    result_type = _concat_type(left[1], right[1])
    if left[0] is None or right[0] is None:
        return None, result_type
    if result_type is BYTES:
        return _as_bytes(left) + _as_bytes(right), BYTES
    return _as_text(left) + _as_text(right), TEXT


def _as_bytes(typed: Typed) -> bytes:
    return _parse_bytea(typed[0]) if typed[1] is UNKNOWN else typed[0]  # type: ignore[return-value]


def _as_text(typed: Typed) -> str:
    return to_text(typed[0])  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Comparisons.


def compare_values(a: object, b: object) -> int:
    """-1, 0 or 1 for two non-NULL values of comparable types, in PostgreSQL's order."""
    if type(a) is float or type(b) is float:
        a, b = float(a), float(b)  # type: ignore[arg-type]
        if a != a or b != b:  # NaN equals NaN and is above every other value, as in PostgreSQL
            return (b == b) - (a == a)
    return (a > b) - (a < b)  # type: ignore[operator]


def _check_comparable(symbol: str, left: object, right: object) -> None:
    if left is right or NULL in (left, right) or (left in _NUMERIC and right in _NUMERIC):
        return
    raise _no_operator(symbol, left, right)


def _compare(left: Typed, right: Typed, symbol: str) -> int | None:
    """compare_values of the operands after PostgreSQL's type resolution; None if one is NULL."""
    (a, left_type), (b, right_type) = _resolve_unknown(left, right)
    _check_comparable(symbol, left_type, right_type)
    if a is None or b is None:
        return None
    return compare_values(a, b)


_COMPARISONS: dict[type, tuple[str, Callable[[int], bool]]] = {
    exp.EQ: ("=", lambda c: c == 0),
    exp.NEQ: ("<>", lambda c: c != 0),
    exp.LT: ("<", lambda c: c < 0),
    exp.LTE: ("<=", lambda c: c <= 0),
    exp.GT: (">", lambda c: c > 0),
    exp.GTE: (">=", lambda c: c >= 0),
}


def _comparison(node: exp.Binary, ctx: _Context) -> Typed:
    symbol, test = _COMPARISONS[type(node)]
    order = _compare(_eval(node.this, ctx), _eval(node.expression, ctx), symbol)
    return (None if order is None else test(order)), BOOL


def _distinct_from(node: exp.Binary, ctx: _Context) -> Typed:
    """IS [NOT] DISTINCT FROM: = where NULL equals NULL and differs from every value."""
    (a, left_type), (b, right_type) = _resolve_unknown(_eval(node.this, ctx), _eval(node.expression, ctx))
    _check_comparable("=", left_type, right_type)
    equal = (a is None and b is None) if a is None or b is None else compare_values(a, b) == 0
    return equal == isinstance(node, exp.NullSafeEQ), BOOL


def _in(node: exp.In, ctx: _Context) -> Typed:
    """TRUE if some item equals; else NULL if the subject or some item is NULL; else FALSE."""
    if any(node.args.get(key) for key in ("query", "unnest", "field")):
        raise errors.feature_not_supported("IN (subquery)")
    if not node.expressions:
        raise errors.syntax_error('syntax error at or near ")"')
    subject = _eval(node.this, ctx)
    saw_null = False
    for item in node.expressions:
        order = _compare(subject, _eval(item, ctx), "=")
        if order == 0:
            return True, BOOL
        saw_null = saw_null or order is None
    return (None if saw_null else False), BOOL


def _between(node: exp.Between, ctx: _Context) -> Typed:
    if node.args.get("symmetric"):
        raise errors.feature_not_supported("BETWEEN SYMMETRIC")
    subject = _eval(node.this, ctx)
    low = _compare(subject, _eval(node.args["low"], ctx), ">=")
    high = _compare(subject, _eval(node.args["high"], ctx), "<=")
    return _and3(None if low is None else low >= 0, None if high is None else high <= 0), BOOL


# ---------------------------------------------------------------------------------------------
# Boolean logic (three-valued).


def _as_bool(value: object, sql_type: object, what: str) -> bool | None:
    if sql_type is BOOL or sql_type is NULL:
        return value  # type: ignore[return-value]
    if sql_type is UNKNOWN:
        return _parse_bool(value)  # type: ignore[arg-type]
    raise _not_boolean(what, sql_type)


def _bool_arg(node: exp.Expression, ctx: _Context, what: str) -> bool | None:
    return _as_bool(*_eval(node, ctx), what)


def _and3(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _and(node: exp.And, ctx: _Context) -> Typed:
    left = _bool_arg(node.this, ctx, "AND")
    if left is False:  # stop early: `x <> 0 AND 1 / x > 0` must not divide (HAZARD)
        return False, BOOL
    return _and3(left, _bool_arg(node.expression, ctx, "AND")), BOOL


def _or(node: exp.Or, ctx: _Context) -> Typed:
    left = _bool_arg(node.this, ctx, "OR")
    if left is True:
        return True, BOOL
    right = _bool_arg(node.expression, ctx, "OR")
    if right is True:
        return True, BOOL
    return (None if left is None or right is None else False), BOOL


def _not(node: exp.Not, ctx: _Context) -> Typed:
    value = _bool_arg(node.this, ctx, "NOT")
    return (None if value is None else not value), BOOL


def _is(node: exp.Is, ctx: _Context) -> Typed:
    target = node.expression
    if isinstance(target, exp.Null):
        return _eval(node.this, ctx)[0] is None, BOOL
    if isinstance(target, exp.Boolean):  # IS TRUE / IS FALSE: never NULL
        value = _bool_arg(node.this, ctx, "IS TRUE" if target.this else "IS FALSE")
        return value is bool(target.this), BOOL
    raise _not_supported(node)


# ---------------------------------------------------------------------------------------------
# LIKE / ILIKE.


_TEXTUAL = (TEXT, UNKNOWN, NULL)


def _like(node: exp.Like | exp.ILike, ctx: _Context, escape: str = "\\") -> Typed:
    ignore_case = isinstance(node, exp.ILike)
    (text, text_type), (pattern, pattern_type) = _eval(node.this, ctx), _eval(node.expression, ctx)
    if text_type not in _TEXTUAL or pattern_type not in _TEXTUAL:  # a quoted literal is text here
        raise _no_operator("~~*" if ignore_case else "~~", text_type, pattern_type)  # PostgreSQL's names
    if text is None or pattern is None:
        return None, BOOL
    return _like_regex(pattern, escape, ignore_case).fullmatch(text) is not None, BOOL  # type: ignore[arg-type]


def _escape(node: exp.Escape, ctx: _Context) -> Typed:
    """`x LIKE p ESCAPE e`: e is one character, or '' for no escape character."""
    if not isinstance(node.this, (exp.Like, exp.ILike)):
        raise _not_supported(node)
    escape, escape_type = _eval(node.expression, ctx)
    if escape_type not in (TEXT, UNKNOWN, NULL):
        raise _no_function("like_escape", [TEXT, escape_type])
    if escape is None:
        return None, BOOL
    if len(escape) > 1:  # type: ignore[arg-type]
        raise SqlError("invalid escape string", "22025", hint="Escape string must be empty or one character.")
    return _like(node.this, ctx, escape)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=256)
def _like_regex(pattern: str, escape: str, ignore_case: bool) -> re.Pattern[str]:
    parts = []
    chars = iter(pattern)
    for char in chars:
        if escape and char == escape:
            escaped = next(chars, None)
            if escaped is None:
                raise SqlError("LIKE pattern must not end with escape character", "22025")
            parts.append(re.escape(escaped))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


# ---------------------------------------------------------------------------------------------
# CASE, COALESCE, NULLIF, CAST.


def _case(node: exp.Case, ctx: _Context) -> Typed:
    operand = _eval(node.this, ctx) if node.this is not None else None  # CASE x WHEN 1 ...
    for branch in node.args.get("ifs") or ():
        if operand is None:
            matched = _bool_arg(branch.this, ctx, "CASE/WHEN") is True
        else:
            matched = _compare(operand, _eval(branch.this, ctx), "=") == 0
        if matched:
            return _eval(branch.args["true"], ctx)
    default = node.args.get("default")
    return _eval(default, ctx) if default is not None else (None, NULL)


def _coalesce(node: exp.Coalesce, ctx: _Context) -> Typed:
    result: Typed = (None, NULL)
    for arg in [node.this, *node.expressions]:
        result = _eval(arg, ctx)
        if result[0] is not None:
            return result
    return result


def _nullif(node: exp.Nullif, ctx: _Context) -> Typed:
    left, right = _resolve_unknown(_eval(node.this, ctx), _eval(node.expression, ctx))
    _check_comparable("=", left[1], right[1])
    if left[0] is not None and right[0] is not None and compare_values(left[0], right[0]) == 0:
        return None, left[1]
    return left


def _float_to_int(value: float, type_name: str = "bigint") -> int:
    """rint(): half to even, as PostgreSQL's float8 -> int8."""
    if not -(2.0**63) <= value < 2.0**63:  # NaN too
        raise errors.numeric_value_out_of_range(type_name)
    return _check_int(round(value))


def _round_half_away(value: float) -> int:
    """NUMERIC's rounding (2.5 -> 3), for decimal literals, which are NUMERIC in PostgreSQL."""
    return int(decimal.Decimal(repr(value)).to_integral_value(rounding=decimal.ROUND_HALF_UP))


def _is_decimal_literal(node: exp.Expression) -> bool:
    while isinstance(node, (exp.Paren, exp.Neg)):
        node = node.this
    return isinstance(node, exp.Literal) and not node.is_string and not _INT_LITERAL.match(node.this)


def _same(value: object) -> object:
    return value


# Explicit casts between non-text types (text and quoted literals go through _PARSERS).
_CASTS: dict[tuple[SqlType, SqlType], Callable[[object], object]] = {
    (INT, INT): _same, (INT, FLOAT): float, (INT, BOOL): lambda v: v != 0, (INT, TEXT): str,  # type: ignore[dict-item]
    (FLOAT, FLOAT): _same, (FLOAT, INT): _float_to_int, (FLOAT, TEXT): _float_text,  # type: ignore[dict-item]
    (BOOL, BOOL): _same, (BOOL, INT): int, (BOOL, TEXT): _TO_TEXT[bool],  # type: ignore[dict-item]
    (BYTES, BYTES): _same, (BYTES, TEXT): _TO_TEXT[bytes],
}  # fmt: skip


def _cast_value(value: object, sql_type: object, target: SqlType, max_length: int | None) -> object:
    if value is None:
        return None
    if sql_type is TEXT or sql_type is UNKNOWN:
        result = _PARSERS[target](value)  # type: ignore[arg-type]
    else:
        convert = _CASTS.get((sql_type, target))  # type: ignore[arg-type]
        if convert is None:
            raise SqlError(f"cannot cast type {_type_name(sql_type)} to {_type_name(target)}", "42846")
        result = convert(value)
    if max_length is not None and len(result) > max_length:  # type: ignore[arg-type]
        result = result[:max_length]  # type: ignore[index]  # an explicit cast truncates, as in PostgreSQL
    return result


def _cast(node: exp.Cast, ctx: _Context) -> Typed:
    target, max_length = _column_type(node.args["to"])
    value, sql_type = _eval(node.this, ctx)
    if target is INT and sql_type is FLOAT and value is not None and _is_decimal_literal(node.this):
        return _check_int(_round_half_away(value)), INT  # type: ignore[arg-type]
    return _cast_value(value, sql_type, target, max_length), target


# ---------------------------------------------------------------------------------------------
# Scalar functions.


def _case_function(name: str, convert: Callable[[str], str]) -> Callable[[exp.Func, _Context], Typed]:
    def handler(node: exp.Func, ctx: _Context) -> Typed:
        value, sql_type = _eval(node.this, ctx)
        if sql_type not in (TEXT, UNKNOWN, NULL):
            raise _no_function(name, [sql_type])
        return (None if value is None else convert(value)), TEXT  # type: ignore[arg-type]

    return handler


def _length(node: exp.Length, ctx: _Context) -> Typed:
    if node.args.get("encoding") is not None:
        raise errors.feature_not_supported("length(bytea, encoding)")
    value, sql_type = _eval(node.this, ctx)
    if sql_type not in (TEXT, UNKNOWN, BYTES, NULL):
        raise _no_function("length", [sql_type])
    return (None if value is None else len(value)), INT  # type: ignore[arg-type]


def _abs(node: exp.Abs, ctx: _Context) -> Typed:
    value, sql_type = _eval(node.this, ctx)
    if sql_type not in (INT, FLOAT, NULL):
        raise _no_function("abs", [sql_type])
    if value is None:
        return None, sql_type
    return (_check_int(abs(value)) if sql_type is INT else abs(value)), sql_type  # type: ignore[arg-type]


def _int_arg(node: exp.Expression, ctx: _Context) -> Typed:
    value, sql_type = _eval(node, ctx)
    if sql_type is UNKNOWN:
        return _parse_int(value), INT  # type: ignore[arg-type]
    return value, sql_type


def _round(node: exp.Round, ctx: _Context) -> Typed:
    value, sql_type = _eval(node.this, ctx)
    places_node = node.args.get("decimals")
    places, places_type = _int_arg(places_node, ctx) if places_node is not None else (0, INT)
    if sql_type not in (INT, FLOAT, NULL) or places_type not in (INT, NULL):
        raise _no_function("round", [sql_type] + ([places_type] if places_node is not None else []))
    if value is None or places is None:
        return None, sql_type
    if sql_type is INT:
        return _round_int(value, places), INT  # type: ignore[arg-type]
    if places_node is None and not _is_decimal_literal(node.this):
        return _round_float(value), FLOAT  # type: ignore[arg-type]
    return _round_places(value, places), FLOAT  # type: ignore[arg-type]


def _round_float(value: float) -> float:
    """round(float8) is rint(): half to even, keeping the sign (round(-0.4) is -0)."""
    if not math.isfinite(value):
        return value
    return math.copysign(float(round(value)), value)


def _round_int(value: int, places: int) -> int:
    if places >= 0:
        return value
    unit = 10 ** min(-places, 20)
    magnitude = (abs(value) + unit // 2) // unit * unit  # half away from zero, as NUMERIC
    return _check_int(magnitude if value >= 0 else -magnitude)


_ROUNDING = decimal.Context(prec=400, rounding=decimal.ROUND_HALF_UP)


def _round_places(value: float, places: int) -> float:
    """round(x, n) as PostgreSQL's NUMERIC rounds x's 15 significant digits (half away from zero)."""
    if not math.isfinite(value):
        return value
    places = max(min(places, 400), -400)
    number = decimal.Decimal(format(value, ".15g"))  # float8 -> numeric keeps DBL_DIG digits
    try:
        return float(number.quantize(decimal.Decimal(1).scaleb(-places), context=_ROUNDING))
    except decimal.InvalidOperation:  # more digits asked than the value has: nothing to round
        return value


def _substring(node: exp.Substring, ctx: _Context) -> Typed:
    value, sql_type = _eval(node.this, ctx)
    sql_type = TEXT if sql_type is UNKNOWN else sql_type
    start_node, length_node = node.args.get("start"), node.args.get("length")
    start, start_type = _int_arg(start_node, ctx) if start_node is not None else (1, INT)
    length, length_type = _int_arg(length_node, ctx) if length_node is not None else (None, INT)
    if start_type is TEXT:
        raise errors.feature_not_supported("substring with a regular expression")
    if sql_type not in (TEXT, BYTES, NULL) or start_type not in (INT, NULL) or length_type not in (INT, NULL):
        raise _no_function("substring", [sql_type, start_type] + ([length_type] if length_node is not None else []))
    if value is None or start is None or (length_node is not None and length is None):
        return None, sql_type
    if length is not None and length < 0:  # type: ignore[operator]
        raise SqlError("negative substring length not allowed", "22011")
    begin = start - 1  # type: ignore[operator]  # 1-based, and may be before the first character
    end = None if length is None else max(begin + length, 0)  # type: ignore[operator]
    return value[max(begin, 0) : end], sql_type  # type: ignore[index]


def _anonymous(node: exp.Anonymous, ctx: _Context) -> Typed:
    arg_types = [_eval(arg, ctx)[1] for arg in node.expressions]
    raise _no_function(str(node.this).lower(), arg_types)


# ---------------------------------------------------------------------------------------------
# Aggregates.

_AGGREGATE_NAMES: dict[type, str] = {exp.Count: "count", exp.Sum: "sum", exp.Min: "min", exp.Max: "max", exp.Avg: "avg"}
AGGREGATES = frozenset(_AGGREGATE_NAMES.values())


def is_aggregate(expr: exp.Expression) -> bool:
    """Whether `expr` contains an aggregate call (an unsupported one too, so that it is reported)."""
    return any(isinstance(node, exp.AggFunc) for node in expr.walk())


def aggregate_calls(expr: exp.Expression) -> list[exp.Expression]:
    """The outermost aggregate calls in `expr`: SUM(x) and COUNT(*) in `SUM(x) / COUNT(*)`."""
    calls, stack = [], [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.AggFunc):
            calls.append(node)
        else:
            stack.extend(node.iter_expressions())
    return calls


def _aggregate_value(node: exp.AggFunc, ctx: _Context) -> Typed:
    if ctx.aggregates is None:
        raise SqlError(f"aggregate functions are not allowed in {ctx.clause or 'this context'}", "42803")
    try:
        return ctx.aggregates[id(node)]
    except KeyError:
        raise SqlError("aggregate function calls cannot be nested", "42803") from None


def _aggregate_argument(call: exp.Expression, name: str) -> tuple[exp.Expression | None, bool]:
    """(argument or None for COUNT(*), DISTINCT?) of an aggregate call."""
    arg = call.this
    distinct = isinstance(arg, exp.Distinct)
    if distinct:
        if len(arg.expressions) != 1:
            raise errors.feature_not_supported(f"{name}(DISTINCT ...) of {len(arg.expressions)} expressions")
        arg = arg.expressions[0]
    if isinstance(arg, exp.Star):
        if name != "count" or distinct:
            raise errors.syntax_error(f"{name}(*) is not allowed; only count(*)")
        return None, False
    if arg is None:
        if name == "count":
            raise SqlError("count(*) must be used to call a parameterless aggregate function", "42809")
        raise _no_function(name, [])
    if call.expressions:
        raise _no_function(name, [UNKNOWN] * (1 + len(call.expressions)))
    if any(isinstance(node, exp.AggFunc) for node in arg.walk()):
        raise SqlError("aggregate function calls cannot be nested", "42803")
    return arg, distinct


def _distinct_key(value: object) -> tuple:
    """Equal values (PostgreSQL's =) get equal keys: NaN equals NaN; True is no 1."""
    if type(value) is float and value != value:
        return ("number", "NaN")
    kind = "number" if type(value) in (int, float) else type(value).__name__
    return (kind, value)


class Aggregator:
    """One aggregate call (COUNT(*), COUNT(x), COUNT(DISTINCT x), SUM, AVG, MIN, MAX) over the
    rows given to add(). NULLs are skipped; over no (non-NULL) input the result is NULL, or 0
    for COUNT. SUM of INTs is an INT (22003 past 64 bits), AVG a FLOAT."""

    def __init__(self, call: exp.Expression, ambiguous: frozenset[str] = frozenset()) -> None:
        name = _AGGREGATE_NAMES.get(type(call))
        if name is None:
            raise _not_supported(call)
        self.name = name
        self._arg, distinct = _aggregate_argument(call, name)
        self._seen: set[tuple] | None = set() if distinct else None
        self._context = _Context({}, ambiguous)
        self._count = 0
        self._state: object = None  # the sum, or the MIN / MAX so far
        self._type: object = NULL  # of the values seen

    def add(self, row: Row) -> None:
        if self._arg is None:  # COUNT(*)
            self._count += 1
            return
        self._context.row = row
        value, sql_type = _eval(self._arg, self._context)
        self._type = self._merged_type(TEXT if sql_type is UNKNOWN else sql_type)
        if value is None:
            return
        if self._seen is not None:
            key = _distinct_key(value)
            if key in self._seen:
                return
            self._seen.add(key)
        self._count += 1
        _STEPS[self.name](self, value)

    def _merged_type(self, sql_type: object) -> object:
        if self.name in ("sum", "avg") and sql_type not in (INT, FLOAT, NULL):
            raise _no_function(self.name, [sql_type])
        if sql_type is NULL:
            return self._type
        if self._type is not NULL:
            _check_comparable("<", self._type, sql_type)
        return FLOAT if FLOAT in (self._type, sql_type) else sql_type

    def _add_to_sum(self, value: object) -> None:
        if self._state is None:
            self._state = value
        elif type(value) is float or type(self._state) is float:
            a, b = float(self._state), float(value)  # type: ignore[arg-type]
            self._state = _float_checked(a + b, a, b)
        else:
            self._state += value  # type: ignore[operator]  # exact; checked in result()

    def _keep_min(self, value: object) -> None:
        if self._state is None or compare_values(value, self._state) < 0:
            self._state = value

    def _keep_max(self, value: object) -> None:
        if self._state is None or compare_values(value, self._state) > 0:
            self._state = value

    def result(self) -> object:
        return self._result()[0]

    def _result(self) -> Typed:
        if self.name == "count":
            return self._count, INT
        if self._state is None:
            return None, FLOAT if self.name == "avg" else self._type
        if self.name == "avg":
            return self._state / self._count, FLOAT  # type: ignore[operator]  # int / int: correctly rounded
        if self.name == "sum" and type(self._state) is int:
            return _check_int(self._state), INT
        if self._type is FLOAT and type(self._state) is int:
            return float(self._state), FLOAT  # MIN/MAX over INTs and FLOATs (CASE branches)
        return self._state, self._type


_STEPS: dict[str, Callable[[Aggregator, object], None]] = {
    "count": lambda aggregator, value: None,
    "sum": Aggregator._add_to_sum,
    "avg": Aggregator._add_to_sum,
    "min": Aggregator._keep_min,
    "max": Aggregator._keep_max,
}


class _NullRow(dict):
    """The row of an empty group: every column is NULL."""

    def __missing__(self, key: str) -> None:
        return None


def _eval_group(expr: exp.Expression, group_rows: list[Row], ambiguous: frozenset[str], clause: str | None) -> Typed:
    results: dict[int, Typed] = {}
    for call in aggregate_calls(expr):
        aggregator = Aggregator(call, ambiguous)
        for row in group_rows:
            aggregator.add(row)
        results[id(call)] = aggregator._result()
    row = group_rows[0] if group_rows else _NullRow()
    return _eval(expr, _Context(row, ambiguous, clause, results))


# ---------------------------------------------------------------------------------------------
# The dispatch table of evaluation.

_HANDLERS: dict[type, Callable[[exp.Expression, _Context], Typed]] = {
    exp.Literal: _literal, exp.ByteString: _escape_string, exp.Boolean: _boolean, exp.Null: _null,
    exp.Column: _column, exp.Var: _var, exp.Paren: _inner, exp.Alias: _inner,
    exp.Parameter: _parameter, exp.Placeholder: _parameter,
    exp.Neg: _neg, exp.DPipe: _concat,
    **{cls: _arithmetic for cls in _ARITHMETIC},
    **{cls: _comparison for cls in _COMPARISONS},
    exp.NullSafeEQ: _distinct_from, exp.NullSafeNEQ: _distinct_from,
    exp.In: _in, exp.Between: _between, exp.Like: _like, exp.ILike: _like, exp.Escape: _escape,
    exp.And: _and, exp.Or: _or, exp.Not: _not, exp.Is: _is,
    exp.Case: _case, exp.Coalesce: _coalesce, exp.Nullif: _nullif, exp.Cast: _cast,
    exp.Lower: _case_function("lower", str.lower), exp.Upper: _case_function("upper", str.upper),
    exp.Length: _length, exp.Abs: _abs, exp.Round: _round, exp.Substring: _substring,
    exp.Anonymous: _anonymous,
    **{cls: _aggregate_value for cls in _AGGREGATE_NAMES},
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Assignment casts (INSERT / UPDATE).


def _assign_int(value: object) -> int:
    if type(value) is int:
        if not INT_MIN <= value <= INT_MAX:
            raise errors.numeric_value_out_of_range("integer")
        return value
    if type(value) is float:
        return _float_to_int(value, "integer")
    return _parse_int(value)  # type: ignore[arg-type]


def _assign_text(value: object, max_length: int | None) -> str:
    text = to_text(value)
    if max_length is not None and len(text) > max_length:  # type: ignore[arg-type]
        # PostgreSQL cuts excess spaces silently and rejects anything else.
        if text[max_length:].strip(" "):  # type: ignore[index]
            raise errors.string_data_right_truncation(f"character varying({max_length})")
        text = text[:max_length]  # type: ignore[index]
    return text  # type: ignore[return-value]


# The Python types each column type accepts on assignment; other values are 42804.
_ASSIGNABLE: dict[SqlType, tuple[type, ...]] = {
    INT: (int, float, str), FLOAT: (int, float, str), BOOL: (bool, str), BYTES: (bytes, str),
    TEXT: (bool, int, float, str, bytes),  # PostgreSQL's I/O conversion casts to text on assignment
}  # fmt: skip


def coerce(value: object, sql_type: SqlType, column: str, max_length: int | None = None) -> object:
    """`value` made a value of column `column` (of `sql_type`, TEXT limited to `max_length`
    characters), as PostgreSQL's assignment cast does; None passes (NOT NULL is not checked)."""
    if value is None:
        return None
    if type(value) not in _ASSIGNABLE.get(sql_type, ()):
        raise errors.datatype_mismatch(column, _type_name(sql_type), _type_name(_type_of(value)))
    if sql_type is INT:
        return _assign_int(value)
    if sql_type is FLOAT:
        return _parse_float(value) if type(value) is str else float(value)  # type: ignore[arg-type]
    if sql_type is TEXT:
        return _assign_text(value, max_length)
    return _PARSERS[sql_type](value) if type(value) is str else value  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Static types.


def infer_type(expr: exp.Expression, column_types: Mapping[str, SqlType]) -> SqlType | None:
    """The type of `expr` with columns of `column_types` (keyed like a Row), None where unknown.

    Raises what PostgreSQL raises at plan time whatever the rows: 42883 for `int_col = text_col`
    or `sum(text_col)`, 42804 for `CASE ... THEN 1 ELSE 'a'::text END` or `WHERE int_col`-like
    misuse of a non-boolean in AND / OR / NOT."""
    sql_type = _infer(expr, column_types)
    return TEXT if sql_type is UNKNOWN else sql_type  # type: ignore[return-value]  # unknown output is text


def _infer(node: exp.Expression, types: Mapping[str, SqlType]) -> object:
    handler = _INFERRERS.get(type(node))
    if handler is not None:
        return handler(node, types)
    for child in node.iter_expressions():  # unknown type, but what is inside is checked
        _infer(child, types)
    return None


def _infer_literal(node: exp.Literal, types: Mapping[str, SqlType]) -> object:
    if node.is_string:
        return UNKNOWN
    return INT if _INT_LITERAL.match(node.this) else FLOAT


def _infer_column(node: exp.Column, types: Mapping[str, SqlType]) -> object:
    return types.get(f"{node.table}.{node.name}" if node.table else node.name)


def _infer_inner(node: exp.Expression, types: Mapping[str, SqlType]) -> object:
    return _infer(node.this, types)


def _infer_neg(node: exp.Neg, types: Mapping[str, SqlType]) -> object:
    sql_type = _infer(node.this, types)
    return None if sql_type is None else _neg_type(sql_type)


def _infer_arithmetic(node: exp.Binary, types: Mapping[str, SqlType]) -> object:
    left, right = _infer(node.this, types), _infer(node.expression, types)
    if left is None or right is None:
        return None
    return _arithmetic_type(_ARITHMETIC[type(node)][0], left, right)


def _infer_concat(node: exp.DPipe, types: Mapping[str, SqlType]) -> object:
    left, right = _infer(node.this, types), _infer(node.expression, types)
    return None if left is None or right is None else _concat_type(left, right)


def _check_pair(symbol: str, left: object, right: object) -> None:
    if left is not None and right is not None:
        _check_comparable(symbol, *_resolved_pair_types(left, right))


def _check_operands(symbol: str, left: exp.Expression, right: exp.Expression, types: Mapping[str, SqlType]) -> None:
    """Comparable types; and a quoted literal compared with a typed value is read as that type
    now, as PostgreSQL does while planning (`int_col = 'abc'` is 22P02 on an empty table too)."""
    left_type, right_type = _infer(left, types), _infer(right, types)
    _check_pair(symbol, left_type, right_type)
    for node, other_type in ((left, right_type), (right, left_type)):
        if isinstance(node, exp.Literal) and node.is_string and other_type in (INT, FLOAT, BOOL, BYTES):
            _PARSERS[other_type](node.this)  # type: ignore[index]


def _infer_comparison(node: exp.Binary, types: Mapping[str, SqlType]) -> object:
    symbol = _COMPARISONS[type(node)][0] if type(node) in _COMPARISONS else "="
    _check_operands(symbol, node.this, node.expression, types)
    return BOOL


def _infer_in(node: exp.In, types: Mapping[str, SqlType]) -> object:
    for item in node.expressions:
        _check_operands("=", node.this, item, types)
    return BOOL


def _infer_between(node: exp.Between, types: Mapping[str, SqlType]) -> object:
    _check_operands(">=", node.this, node.args["low"], types)
    _check_operands("<=", node.this, node.args["high"], types)
    return BOOL


def _check_bool_type(sql_type: object, what: str) -> None:
    if sql_type not in (None, BOOL, NULL, UNKNOWN):
        raise _not_boolean(what, sql_type)


def _infer_logic(node: exp.Expression, types: Mapping[str, SqlType]) -> object:
    what = {exp.And: "AND", exp.Or: "OR", exp.Not: "NOT"}[type(node)]
    for operand in node.iter_expressions():
        _check_bool_type(_infer(operand, types), what)
    return BOOL


def _infer_bool(node: exp.Expression, types: Mapping[str, SqlType]) -> object:
    for operand in node.iter_expressions():
        _infer(operand, types)  # the checks of what is inside
    return BOOL


def _infer_like(node: exp.Expression, types: Mapping[str, SqlType]) -> object:
    operands = [_infer(node.this, types), _infer(node.expression, types)]
    if any(t not in (None, *_TEXTUAL) for t in operands):
        raise _no_operator("~~*" if isinstance(node, exp.ILike) else "~~", *operands)
    return BOOL


def _common_type(what: str, branch_types: list[object]) -> object:
    """PostgreSQL's UNION/CASE resolution, simplified: numbers widen to FLOAT; others must agree."""
    if any(t is None for t in branch_types):
        return None
    known = [t for t in branch_types if t not in (NULL, UNKNOWN)]
    if not known:
        return UNKNOWN if UNKNOWN in branch_types else NULL
    if set(known) <= _NUMERIC:
        return FLOAT if FLOAT in known else INT
    for other in known[1:]:
        if other is not known[0]:
            first, second = _type_name(known[0]), _type_name(other)
            raise errors.DatatypeMismatch(f"{what} types {first} and {second} cannot be matched")
    return known[0]


def _infer_case(node: exp.Case, types: Mapping[str, SqlType]) -> object:
    branches = [branch.args["true"] for branch in node.args.get("ifs") or ()]
    if node.args.get("default") is not None:
        branches.append(node.args["default"])
    return _common_type("CASE", [_infer(branch, types) for branch in branches])


def _infer_coalesce(node: exp.Coalesce, types: Mapping[str, SqlType]) -> object:
    return _common_type("COALESCE", [_infer(arg, types) for arg in [node.this, *node.expressions]])


def _infer_cast(node: exp.Cast, types: Mapping[str, SqlType]) -> object:
    return _column_type(node.args["to"])[0]


def _infer_same_numeric(node: exp.Expression, types: Mapping[str, SqlType]) -> object:
    sql_type = _infer(node.this, types)
    return sql_type if sql_type in _NUMERIC else None


def _infer_substring(node: exp.Substring, types: Mapping[str, SqlType]) -> object:
    return BYTES if _infer(node.this, types) is BYTES else TEXT


def _infer_aggregate(node: exp.Expression, types: Mapping[str, SqlType]) -> object:
    name = _AGGREGATE_NAMES[type(node)]
    arg = node.this.expressions[0] if isinstance(node.this, exp.Distinct) and node.this.expressions else node.this
    if name == "count":
        return INT
    arg_type = _infer(arg, types) if isinstance(arg, exp.Expression) else None
    if name in ("sum", "avg") and arg_type not in (None, INT, FLOAT, NULL):
        raise _no_function(name, [arg_type])
    if name == "avg":
        return FLOAT
    return TEXT if arg_type is UNKNOWN else arg_type


_INFERRERS: dict[type, Callable[[exp.Expression, Mapping[str, SqlType]], object]] = {
    exp.Literal: _infer_literal, exp.ByteString: lambda node, types: UNKNOWN,
    exp.Boolean: lambda node, types: BOOL, exp.Null: lambda node, types: NULL,
    exp.Column: _infer_column, exp.Paren: _infer_inner, exp.Alias: _infer_inner,
    exp.Neg: _infer_neg, exp.DPipe: _infer_concat,
    **{cls: _infer_arithmetic for cls in _ARITHMETIC},
    **{cls: _infer_comparison for cls in _COMPARISONS},
    exp.NullSafeEQ: _infer_comparison, exp.NullSafeNEQ: _infer_comparison,
    exp.In: _infer_in, exp.Between: _infer_between,
    exp.And: _infer_logic, exp.Or: _infer_logic, exp.Not: _infer_logic,
    exp.Like: _infer_like, exp.ILike: _infer_like, exp.Escape: _infer_bool, exp.Is: _infer_bool,
    exp.Case: _infer_case, exp.Coalesce: _infer_coalesce, exp.Nullif: _infer_inner, exp.Cast: _infer_cast,
    exp.Lower: lambda node, types: TEXT, exp.Upper: lambda node, types: TEXT,
    exp.Length: lambda node, types: INT, exp.Abs: _infer_same_numeric, exp.Round: _infer_same_numeric,
    exp.Substring: _infer_substring,
    **{cls: _infer_aggregate for cls in _AGGREGATE_NAMES},
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Parse analysis of a query: names, types and grouping checked before any row is read.


class Scope:
    """The tables a statement reads, by the name columns are qualified with (alias or name).

    Resolves column references as PostgreSQL does: `t.c` in table t; a bare `c` in the one table
    that has it (42702 if several do, 42703 if none; 42P01 for an unknown `x.c`)."""

    def __init__(self, tables: Sequence[tuple[str, TableDescriptor]]) -> None:
        self.tables = list(tables)
        self._columns = {alias: {c.name: c.type for c in table.columns} for alias, table in self.tables}
        self.types: dict[str, SqlType] = {}  # keyed like a Row: "c" (unambiguous ones) and "t.c"
        owners: dict[str, list[str]] = {}
        for alias, columns in self._columns.items():
            for name, sql_type in columns.items():
                self.types[f"{alias}.{name}"] = sql_type
                owners.setdefault(name, []).append(alias)
        self._owners = owners
        unambiguous = {name: aliases[0] for name, aliases in owners.items() if len(aliases) == 1}
        self.types.update({name: self._columns[alias][name] for name, alias in unambiguous.items()})

    def resolve(self, column: exp.Column) -> tuple[str, str]:
        """(table alias, column name) of a column reference."""
        name, table = column.name, column.table
        if table:
            if table not in self._columns:
                raise errors.UndefinedTable(f'missing FROM-clause entry for table "{table}"')
            if name not in self._columns[table]:
                raise errors.UndefinedColumn(f"column {table}.{name} does not exist")
            return table, name
        owners = self._owners.get(name, [])
        if not owners:
            raise errors.undefined_column(name)
        if len(owners) > 1:
            raise SqlError(f'column reference "{name}" is ambiguous', "42702")
        return owners[0], name

    def check(self, expr: exp.Expression) -> None:
        """Every column `expr` references exists, unambiguously."""
        for node in expr.walk():
            if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
                self.resolve(node)

    def same(self, a: exp.Expression, b: exp.Expression) -> bool:
        """Whether two expressions are the same: `c` and `t.c` are, when they name one column."""
        if isinstance(a, exp.Column) and isinstance(b, exp.Column):
            return self.resolve(a) == self.resolve(b)
        return a == b


@dataclass(frozen=True)
class _Output:
    name: str | None  # what ORDER BY / GROUP BY may call it: the alias or the column's name
    expr: exp.Expression  # without the alias


def analyze_select(statement: Select, tables: Sequence[tuple[str, TableDescriptor]]) -> Select:
    """`statement` checked as PostgreSQL's parse analysis checks it, whatever the rows (an empty
    table too), with ORDER BY / GROUP BY positions (`ORDER BY 2`) and output names (`ORDER BY
    alias`) replaced by the expressions they stand for. `tables`: (alias or name, descriptor)
    of the FROM table, then of each joined one.

    Raises 42703 / 42702 / 42P01 for unknown or ambiguous columns, 42883 / 42804 / 22P02 for
    type errors (`int_col = text_col`, `WHERE int_col`, `int_col = 'abc'`), 42803 for aggregates
    in WHERE, ON or GROUP BY, nested aggregates and a column that is neither grouped nor
    aggregated, and 42P10 for an ORDER BY position out of range or, under DISTINCT, an ORDER BY
    expression that is not in the select list."""
    scope = Scope(tables)
    outputs = _outputs(statement, scope)
    for clause, condition in [("WHERE", statement.where)] + [("JOIN conditions", j.on) for j in statement.joins]:
        if condition is not None:
            _check_condition(condition, clause, scope)
    group_by = tuple(_group_item(item, outputs, scope) for item in statement.group_by)
    for item in group_by:
        _check_expression(item, "GROUP BY", scope)
    order_by = tuple(_order_item(item, outputs, scope) for item in statement.order_by)
    for output in outputs:
        _check_expression(output.expr, None, scope)
    for item in order_by:
        _check_expression(item.expr, None, scope)
    if statement.having is not None:
        _check_condition(statement.having, "HAVING", scope, aggregates_allowed=True)
    grouped_exprs = [o.expr for o in outputs] + [i.expr for i in order_by] + [statement.having] * bool(statement.having)
    if group_by or any(is_aggregate(e) for e in grouped_exprs):
        for expr in grouped_exprs:
            _check_grouped(expr, group_by, scope)
    if statement.distinct:
        for item in order_by:
            if not any(scope.same(item.expr, o.expr) for o in outputs):
                raise SqlError("for SELECT DISTINCT, ORDER BY expressions must appear in select list", "42P10")
    return dataclasses.replace(statement, group_by=group_by, order_by=order_by)


def analyze_condition(condition: exp.Expression | None, clause: str, scope: Scope) -> None:
    """The checks of a WHERE clause (of UPDATE and DELETE too): names, types, no aggregates."""
    if condition is not None:
        _check_condition(condition, clause, scope)


def analyze_assignment(expr: exp.Expression, column: Column, scope: Scope) -> None:
    """`SET column = expr` of an UPDATE: names and types, whatever the rows (42804 for a text
    expression into an INT column; 22P02 for a literal the column's type cannot read)."""
    _check_expression(expr, "UPDATE", scope)
    sql_type = _infer(expr, scope.types)
    if sql_type is UNKNOWN and isinstance(expr, exp.Literal):
        _PARSERS[column.type](expr.this)
    elif sql_type not in (None, NULL, UNKNOWN, column.type) and not (sql_type in _NUMERIC and column.type in _NUMERIC):
        if column.type is not TEXT:  # anything goes into TEXT: PostgreSQL's assignment cast to text
            raise errors.datatype_mismatch(column.name, _type_name(column.type), _type_name(sql_type))


def _outputs(statement: Select, scope: Scope) -> list[_Output]:
    outputs = []
    for projection in statement.projections:
        if isinstance(projection, exp.Star):
            if not scope.tables:
                raise errors.syntax_error("SELECT * with no tables specified is not valid")
            outputs += [_Output(c.name, exp.column(c.name, table=alias))
                        for alias, table in scope.tables for c in table.visible_columns()]
        elif isinstance(projection, exp.Alias):
            outputs.append(_Output(projection.alias, projection.this))
        else:
            outputs.append(_Output(projection.name if isinstance(projection, exp.Column) else None, projection))
    return outputs


def _check_expression(expr: exp.Expression, clause: str | None, scope: Scope) -> None:
    """Names and types of `expr`; `clause` names where aggregates are not allowed (None: they are)."""
    scope.check(expr)
    for node in expr.walk():
        if isinstance(node, exp.Anonymous):  # an unknown function: 42883 whatever the rows
            arg_types = [_infer(arg, scope.types) for arg in node.expressions]
            raise _no_function(str(node.this).lower(), [UNKNOWN if t is None else t for t in arg_types])
        if isinstance(node, exp.AggFunc):
            if clause is not None:
                raise SqlError(f"aggregate functions are not allowed in {clause}", "42803")
            if any(isinstance(inner, exp.AggFunc) for inner in node.walk() if inner is not node):
                raise SqlError("aggregate function calls cannot be nested", "42803")
    _infer(expr, scope.types)


def _check_condition(condition: exp.Expression, clause: str, scope: Scope, aggregates_allowed: bool = False) -> None:
    _check_expression(condition, None if aggregates_allowed else clause, scope)
    _check_bool_type(_infer(condition, scope.types), clause.split()[0] if clause != "JOIN conditions" else "JOIN/ON")


def _position(item: exp.Expression) -> int | None:
    """n for an ORDER BY / GROUP BY item that is the integer constant n (a position)."""
    if isinstance(item, exp.Literal) and not item.is_string and _INT_LITERAL.match(item.this):
        return int(item.this)
    return None


def _by_position(position: int, outputs: list[_Output], clause: str) -> exp.Expression:
    if not 1 <= position <= len(outputs):
        raise SqlError(f"{clause} position {position} is not in select list", "42P10")
    return outputs[position - 1].expr


def _by_output_name(name: str, outputs: list[_Output], clause: str, scope: Scope) -> exp.Expression | None:
    matches = [o.expr for o in outputs if o.name == name]
    if any(not scope.same(m, matches[0]) for m in matches[1:]):
        raise SqlError(f'{clause} "{name}" is ambiguous', "42702")
    return matches[0] if matches else None


def _order_item(item: OrderItem, outputs: list[_Output], scope: Scope) -> OrderItem:
    """PostgreSQL's rule: a position, else a bare name of an output column, else an expression."""
    expr = item.expr
    position = _position(expr)
    if position is not None:
        return dataclasses.replace(item, expr=_by_position(position, outputs, "ORDER BY"))
    if isinstance(expr, exp.Literal):
        raise errors.syntax_error("non-integer constant in ORDER BY")
    if isinstance(expr, exp.Column) and not expr.table:
        output = _by_output_name(expr.name, outputs, "ORDER BY", scope)
        if output is not None:
            return dataclasses.replace(item, expr=output)
    return item


def _group_item(item: exp.Expression, outputs: list[_Output], scope: Scope) -> exp.Expression:
    """PostgreSQL's rule: a position, else a bare name of an input column, else of an output column."""
    position = _position(item)
    if position is not None:
        return _by_position(position, outputs, "GROUP BY")
    if isinstance(item, exp.Column) and not item.table and item.name not in scope.types:
        try:
            scope.resolve(item)
        except SqlError as error:
            if error.sqlstate != "42703":
                raise
            output = _by_output_name(item.name, outputs, "GROUP BY", scope)
            if output is not None:
                return output
    return item


def _check_grouped(expr: exp.Expression, group_by: tuple[exp.Expression, ...], scope: Scope) -> None:
    """42803 for a column of `expr` outside every aggregate and every GROUP BY expression (a table
    grouped by its whole primary key gives every one of its columns, as in PostgreSQL)."""
    grouped = {scope.resolve(g) for g in group_by if isinstance(g, exp.Column)}
    by_key = {alias for alias, table in scope.tables if all((alias, k) in grouped for k in table.primary_key)}
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.AggFunc) or any(scope.same(node, g) for g in group_by):
            continue
        if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
            alias, name = scope.resolve(node)
            if alias not in by_key:
                raise SqlError(f'column "{alias}.{name}" must appear in the GROUP BY clause or be used in an '
                               f"aggregate function", "42803")
            continue
        stack.extend(node.iter_expressions())
