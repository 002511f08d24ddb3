"""SELECT (and the row sourcing of UPDATE/DELETE): plan, fetch, filter, join, group, order.

Planning (docs/SQL.md, "Planning"). The top-level AND terms of the WHERE clause of the form
`column op constant` (op: = < <= > >=, BETWEEN, IN (...), IS NULL) say, per column, which
values can pass: a set of points, or bounds. Each constant is first turned into a value of the
column's type exactly as the evaluator would compare it ('5' next to an INT column is 5; 2.5
next to one makes `x > 2.5` into `x >= 3` and `x = 2.5` into "no value"); a constant that
cannot be (a type error the filter must report, a float too large to convert exactly) is not
used. Every index, the primary one and each secondary one, is then matched: its leading
columns fixed by points, then bounds on the next column, give the key spans `[lo, hi)` of the
order-preserving encoding to read (exclusive bounds and ends via `prefix_end`; NULLs, which
sort first and pass no comparison, are skipped). The access path is the first that applies of:

  1. point lookup: every primary-key column fixed (an IN list gives several keys): `get`s;
  2. unique index lookup: every column of a unique index fixed: get the entries, then the rows;
  3. primary-key range scan with an equality prefix;
  4. index lookup with an equality prefix (then bounds): scan the entries, get the rows;
  5. primary-key range scan on bounds only;
  6. index lookup on bounds only;
  7. full scan of the primary index.
Ties go to more fixed columns, then to bounds, then to the index declared first. No cost
model. An access path only narrows: the whole WHERE is still applied to what it returns, so
it may return a superset of the matching rows, never miss one.

INNER JOIN: the main table is planned with the WHERE terms that name its columns only. When
the ON equalities fix the primary key or an index (a prefix of it) of the joined table, its
rows are looked up per distinct outer value (index nested-loop join, lookups concurrent);
otherwise the joined table is scanned once and every pair is tested (nested loop).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlglot import exp

from sql_lite_front import catalog, parser
from sql_lite_front.catalog import PRIMARY_INDEX_ID, Index, TableDescriptor
from sql_lite_front.encoding import SqlType, check_value, key_prefix, prefix_end, pretty_key
from sql_lite_front.evaluator import (
    Aggregator,
    coerce,
    evaluate,
    evaluate_with_aggregates,
    is_aggregate,
    is_true,
    is_true_with_aggregates,
    sort_key,
)
from sql_lite_front.errors import SqlError
from sql_lite_front.parser import JoinClause, Select
from sql_lite_front.rows import (
    Row,
    Span,
    concurrently,
    get_entries,
    get_rows,
    index_span,
    rows_of_entries,
    scan_span_rows,
    scan_spans,
    snapshot_unset,
    table_span,
)

POINT_LOOKUP = "point lookup"
INDEX_LOOKUP = "index lookup"
RANGE_SCAN = "primary-key range scan"
FULL_SCAN = "full scan"

# An IN list (or several) fixes at most this many key prefixes; past it, the column's points
# are read as one span from the smallest to the largest, which is a superset.
MAX_KEYS = 1000
# Floats beyond this magnitude are not all exact as INTs compared as floats; a float bound on
# an INT column is used only below it (beyond, the term is left to the filter).
_EXACT_FLOAT_INT_MAX = 2.0 ** 52
# A join looks up this many distinct outer values at once; each lookup may itself send
# rows.MAX_READS_IN_FLIGHT reads, so the product bounds what is in flight.
JOIN_LOOKUPS_IN_FLIGHT = 8
_NULL_KEY = key_prefix(0, 0, [None])[len(key_prefix(0, 0)):]


# ---------------------------------------------------------------------------------------
# WHERE terms a key can serve


@dataclass(frozen=True)
class _Term:
    """`column op constants` from one conjunct; each constant as (value, is a quoted literal)."""

    column: str
    op: str  # "=", "<", "<=", ">", ">=", "in", "is null"
    constants: tuple[tuple[object, bool], ...]
    source: exp.Expression  # the conjunct, for EXPLAIN


_FLIPPED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_OPERATORS = {exp.EQ: "=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
_CONSTANT_NODES = (exp.Literal, exp.ByteString, exp.Boolean, exp.Neg, exp.Cast, exp.Null)


def _terms(where: exp.Expression | None, resolve: Callable[[exp.Column], str | None]) -> list[_Term]:
    terms = []
    for conjunct in _conjuncts(where):
        terms += _terms_of(conjunct, resolve)
    return terms


def _conjuncts(where: exp.Expression | None) -> list[exp.Expression]:
    if where is None:
        return []
    if isinstance(where, exp.And):
        return _conjuncts(where.this) + _conjuncts(where.expression)
    if isinstance(where, exp.Paren):
        return _conjuncts(where.this)
    return [where]


def _terms_of(conjunct: exp.Expression, resolve) -> list[_Term]:
    if type(conjunct) in _OPERATORS:
        op = _OPERATORS[type(conjunct)]
        for column, other, direction in ((conjunct.this, conjunct.expression, op),
                                         (conjunct.expression, conjunct.this, _FLIPPED[op])):
            name, constant = _column_name(column, resolve), _constant(other)
            if name is not None and constant is not None:
                return [_Term(name, direction, (constant,), conjunct)]
        return []
    name = _column_name(conjunct.this, resolve)
    if name is None:
        return []
    if isinstance(conjunct, exp.Between) and not conjunct.args.get("symmetric"):
        bounds = ((">=", _constant(conjunct.args["low"])), ("<=", _constant(conjunct.args["high"])))
        return [_Term(name, op, (constant,), conjunct) for op, constant in bounds if constant is not None]
    if isinstance(conjunct, exp.In) and not any(conjunct.args.get(k) for k in ("query", "unnest", "field")):
        constants = [_constant(item) for item in conjunct.expressions]
        if constants and None not in constants:
            return [_Term(name, "in", tuple(constants), conjunct)]
    if isinstance(conjunct, exp.Is) and isinstance(conjunct.expression, exp.Null):
        return [_Term(name, "is null", (), conjunct)]
    return []


def _column_name(node: object, resolve) -> str | None:
    if not isinstance(node, exp.Expression):
        return None  # the `this` of TRUE or NULL is a Python value
    node = node.unnest()
    return resolve(node) if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier) else None


def _constant(node: exp.Expression) -> tuple[object, bool] | None:
    """(value, is a quoted literal of PostgreSQL's type "unknown"), or None if not a constant."""
    node = node.unnest()
    if not isinstance(node, _CONSTANT_NODES) or node.find(exp.Column) is not None:
        return None
    try:
        value = evaluate(node, {})
    except SqlError:
        return None  # e.g. CAST('x' AS INT): the filter reports it
    unknown = isinstance(node, exp.ByteString) or (isinstance(node, exp.Literal) and node.is_string)
    return value, unknown


# ---------------------------------------------------------------------------------------
# Constants as values of the column's type


class _Unusable(Exception):
    """The term cannot be turned into key bounds; it is left to the filter."""


def _as_column_type(value: object, unknown: bool, column_type: SqlType) -> object:
    """`value` as the evaluator compares it with a column of `column_type` (a quoted literal
    takes the column's type; INT and FLOAT compare as FLOAT); _Unusable if they do not compare."""
    if value is None:
        raise _Unusable()  # `x = NULL` is never true; leave it to the filter
    if unknown:
        try:
            converted = coerce(value, column_type, "?")  # for a str: the column type's input function
        except SqlError:
            raise _Unusable() from None
    elif column_type is SqlType.FLOAT and type(value) is int:
        converted = float(value)
    else:
        converted = value
    try:
        check_value(converted, column_type)  # also rejects an int for BOOL, a str for INT, ...
    except ValueError:
        raise _Unusable() from None
    return converted


def _int_bounds_for_float(op: str, bound: float) -> list[tuple[str, object]]:
    """`int_column op bound` for a float bound, as comparisons with ints. The evaluator compares
    float(x) with the bound; below 2**52 that is exact, so e.g. `x > 2.5` is `x >= 3`."""
    if not math.isfinite(bound) or abs(bound) >= _EXACT_FLOAT_INT_MAX:
        raise _Unusable()
    if op == "=":
        return [("=", int(bound))] if bound.is_integer() else [("none", None)]
    return {
        ">": [(">=", math.floor(bound) + 1)],
        ">=": [(">=", math.ceil(bound))],
        "<": [("<=", math.ceil(bound) - 1)],
        "<=": [("<=", math.floor(bound))],
    }[op]


def _comparisons(term: _Term, column_type: SqlType) -> list[tuple[str, object]]:
    """The term as `(op, value)` comparisons with values of the column's type (op "in" takes a
    list, "none" means no value passes); _Unusable if it cannot be."""
    if term.op == "is null":
        return [("in", [None])]
    if term.op == "in":
        return [("in", [v for value, unknown in term.constants if value is not None
                         for v in _points(value, unknown, column_type)])]
    (value, unknown), = term.constants
    if column_type is SqlType.INT and type(value) is float:
        return _int_bounds_for_float(term.op, value)
    return [(term.op, _as_column_type(value, unknown, column_type))]


def _points(value: object, unknown: bool, column_type: SqlType) -> list:
    """The column values equal to `value`: none, or one."""
    if column_type is SqlType.INT and type(value) is float:
        return [v for op, v in _int_bounds_for_float("=", value) if op == "="]
    return [_as_column_type(value, unknown, column_type)]


def _encoded(value: object, column_type: SqlType) -> bytes:
    """The key encoding of one column value: keys are the concatenation of these."""
    return key_prefix(0, 0, [value], types=[column_type])[len(key_prefix(0, 0)):]


# ---------------------------------------------------------------------------------------
# Allowed values per column


@dataclass
class _Allowed:
    """The values of one column the WHERE clause lets through (a superset)."""

    column_type: SqlType
    points: list[bytes] | None = None  # encoded values, sorted; None: no equality seen
    low: tuple[bytes, bool] | None = None  # (encoded bound, inclusive)
    high: tuple[bytes, bool] | None = None
    sources: list[exp.Expression] = field(default_factory=list)

    def add(self, op: str, value: object) -> None:
        if op == "none":
            self._keep_points([])
        elif op in ("in", "="):
            values = value if op == "in" else [value]
            self._keep_points([_encoded(v, self.column_type) for v in values])
        elif op in ("<", "<="):
            self.high = _tighter(self.high, (_encoded(value, self.column_type), op == "<="), upper=True)
        else:
            self.low = _tighter(self.low, (_encoded(value, self.column_type), op == ">="), upper=False)

    def _keep_points(self, encoded: list[bytes]) -> None:
        points = set(encoded) if self.points is None else set(encoded) & set(self.points)
        self.points = sorted(points)

    def settle(self) -> None:
        """Apply the bounds to the points; an empty interval allows no value."""
        bounded = self.low is not None or self.high is not None
        if self.points is not None:
            # A bound compares false with NULL, so with one, NULL (IS NULL) cannot pass.
            self.points = [p for p in self.points if _within(p, self.low, self.high) and not (bounded and p == _NULL_KEY)]
        elif self.low and self.high and _empty_interval(self.low, self.high):
            self.points = []

    def bounds(self) -> tuple[tuple[bytes, bool] | None, tuple[bytes, bool] | None]:
        """The bounds to scan: the points' extremes when there are too many points to get."""
        if self.points:
            return (self.points[0], True), (self.points[-1], True)
        return self.low, self.high


def _tighter(old, new, upper: bool):
    if old is None or (new[0] < old[0] if upper else new[0] > old[0]):
        return new
    if new[0] == old[0]:
        return (new[0], old[1] and new[1])  # exclusive wins
    return old


def _empty_interval(low: tuple[bytes, bool], high: tuple[bytes, bool]) -> bool:
    return low[0] > high[0] or (low[0] == high[0] and not (low[1] and high[1]))


def _within(encoded: bytes, low, high) -> bool:
    if low is not None and (encoded < low[0] or (encoded == low[0] and not low[1])):
        return False
    return high is None or encoded < high[0] or (encoded == high[0] and high[1])


def _allowed_values(table: TableDescriptor, terms: list[_Term]) -> dict[str, _Allowed]:
    allowed: dict[str, _Allowed] = {}
    for term in terms:
        column_type = table.column(term.column).type
        try:
            comparisons = _comparisons(term, column_type)
        except _Unusable:
            continue
        entry = allowed.setdefault(term.column, _Allowed(column_type))
        entry.sources.append(term.source)
        for op, value in comparisons:
            entry.add(op, value)
    for entry in allowed.values():
        entry.settle()
    return allowed


# ---------------------------------------------------------------------------------------
# Matching an index


@dataclass(frozen=True)
class _Match:
    """How an index serves the allowed values: its first `len(fixed)` columns fixed to points,
    then bounds on the column `bounded` (if any)."""

    index: Index | None  # None: the primary index
    columns: tuple[str, ...]  # the index's key columns
    fixed: tuple[str, ...]
    bounded: str | None

    @property
    def exact(self) -> bool:
        """Every key column fixed: the keys are whole keys, read with `get`."""
        return len(self.fixed) == len(self.columns) and (self.index is None or self.index.unique)

    def preference(self) -> int:
        """Higher is preferred (the order in the module docstring); 0: no better than a full scan."""
        primary = self.index is None
        if self.exact:
            return 7 if primary else 6
        if self.fixed:
            return 5 if primary else 4
        if self.bounded is not None:
            return 3 if primary else 2
        return 0


def _match(index: Index | None, columns: tuple[str, ...], allowed: dict[str, _Allowed]) -> _Match:
    fixed: list[str] = []
    bounded = None
    prefixes = 1
    for column in columns:
        entry = allowed.get(column)
        if entry is None:
            break
        if entry.points is not None and prefixes * max(1, len(entry.points)) <= MAX_KEYS:
            fixed.append(column)
            prefixes *= max(1, len(entry.points))
            continue
        if entry.points or entry.low is not None or entry.high is not None:
            bounded = column
        break
    return _Match(index, columns, tuple(fixed), bounded)


def _best_match(table: TableDescriptor, allowed: dict[str, _Allowed]) -> _Match | None:
    matches = [_match(None, table.primary_key, allowed)]
    matches += [_match(index, index.columns, allowed) for index in table.indexes]
    best = max(matches, key=lambda m: (m.preference(), len(m.fixed), m.bounded is not None))  # first wins ties
    return best if best.preference() > 0 else None


def _keys_and_spans(prefix: bytes, match: _Match, allowed: dict[str, _Allowed]) -> tuple[list[bytes], list[Span]]:
    """The whole keys to get (an exact match) or the sorted, disjoint spans to scan."""
    heads = [prefix]
    for column in match.fixed:  # points are sorted and encodings prefix-free: heads stay sorted
        heads = [head + point for head in heads for point in allowed[column].points]
    if match.exact and match.index is not None:
        # A unique entry with a NULL carries the primary key in its key (rows.py): scan those.
        with_null = {head for head in heads if _has_null_point(head, prefix, match, allowed)}
        return [h for h in heads if h not in with_null], [(h, prefix_end(h)) for h in heads if h in with_null]
    if match.exact:
        return heads, []
    if match.bounded is None:
        return [], [(head, prefix_end(head)) for head in heads]
    low, high = allowed[match.bounded].bounds()
    spans = [_bounded_span(head, low, high) for head in heads]
    return [], [(start, end) for start, end in spans if start < end]


def _has_null_point(head: bytes, prefix: bytes, match: _Match, allowed: dict[str, _Allowed]) -> bool:
    rest = head[len(prefix):]
    for column in match.fixed:
        point = next(p for p in allowed[column].points if rest.startswith(p))  # encodings are prefix-free
        if point == _NULL_KEY:
            return True
        rest = rest[len(point):]
    return False


def _bounded_span(head: bytes, low, high) -> Span:
    if low is None:
        start = prefix_end(head + _NULL_KEY)  # NULL sorts first and passes no comparison
    else:
        start = head + low[0] if low[1] else prefix_end(head + low[0])
    if high is None:
        end = prefix_end(head)
    else:
        end = prefix_end(head + high[0]) if high[1] else head + high[0]
    return start, end


# ---------------------------------------------------------------------------------------
# Plans


@dataclass
class Plan:
    """How rows of `table` are read. `keys` are whole keys read with `get` (a point lookup, or
    the entries of a unique index); `spans` are key spans scanned (of the primary index, or of
    `index` for an index lookup)."""

    table: TableDescriptor
    access: str  # POINT_LOOKUP, INDEX_LOOKUP, RANGE_SCAN or FULL_SCAN
    index: Index | None = None
    keys: list[bytes] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    condition: str = ""  # the WHERE terms the access path serves, as SQL

    def describe(self) -> str:
        name = self.table.name
        if self.access == POINT_LOOKUP:
            found = "" if self.keys else ": no key can match"
            return f"point lookup on {name} (primary key: {self.condition}){found}"
        if self.access == INDEX_LOOKUP:
            reads = f" {self._pretty_spans()}" if self.spans or not self.keys else ""
            return f"index lookup on {name}@{self.index.name} ({self.condition}){reads}, then a get per row"
        if self.access == RANGE_SCAN:
            return f"primary-key range scan of {name} ({self.condition}) {self._pretty_spans()}"
        return f"full scan of {name}"

    def _pretty_spans(self, shown: int = 4) -> str:
        if not self.spans:
            return "(no span: no key can match)"
        text = ", ".join(f"[{self._pretty(start)}, {self._pretty(end)})" for start, end in self.spans[:shown])
        more = len(self.spans) - shown
        return text + (f" and {more} more spans" if more > 0 else "")

    def _pretty(self, key: bytes) -> str:
        """`/t/1/42`: the key with the table's name for its id, as SHOW RANGES prints keys; a
        span's exclusive end made by `prefix_end(k)` prints as `k/PrefixEnd` (CockroachDB's way)."""
        text = pretty_key(key)
        if "?" in text:
            text = _pretty_prefix_end(key) or text
        head, _, rest = text[1:].partition("/")
        return f"/{self.table.name}/{rest}" if head == str(self.table.table_id) else text


def _pretty_prefix_end(key: bytes) -> str | None:
    """`k/PrefixEnd` if `key` is `prefix_end(k)` for a key `k` that decodes whole, else None."""
    if key[-1] == 0:
        return None
    before = key[:-1] + bytes([key[-1] - 1])
    for trailing in range(9):  # prefix_end drops trailing 0xff bytes; an INT payload has up to 8
        candidate = before + b"\xff" * trailing
        text = pretty_key(candidate)
        if "?" not in text and prefix_end(candidate) == key:
            return f"{text}/PrefixEnd"
    return None


def plan_access(table: TableDescriptor, where: exp.Expression | None, alias: str | None = None,
                shadowed: frozenset[str] = frozenset()) -> Plan:
    """The access path for the rows of `table` (named `alias` in the query) that `where` may
    pass. A bare column name in `shadowed` (a column of another table of the query) is not
    taken to be `table`'s."""
    resolve = _resolver(table, alias or table.name, shadowed)
    return _plan(table, _allowed_values(table, _terms(where, resolve)))


def _resolver(table: TableDescriptor, alias: str, shadowed: frozenset[str]) -> Callable[[exp.Column], str | None]:
    names = {c.name for c in table.columns}

    def resolve(column: exp.Column) -> str | None:
        if column.args.get("db") or column.args.get("catalog") or column.name not in names:
            return None
        if column.table:
            return column.name if column.table == alias else None
        return None if column.name in shadowed else column.name

    return resolve


def _plan(table: TableDescriptor, allowed: dict[str, _Allowed]) -> Plan:
    match = _best_match(table, allowed)
    if match is None:
        return Plan(table, FULL_SCAN, spans=[table_span(table)])
    index_id = PRIMARY_INDEX_ID if match.index is None else match.index.index_id
    keys, spans = _keys_and_spans(key_prefix(table.table_id, index_id), match, allowed)
    used = match.fixed + ((match.bounded,) if match.bounded else ())
    sources = list({id(s): s for column in used for s in allowed[column].sources}.values())
    condition = " AND ".join(s.sql(dialect="postgres") for s in sources)
    if match.index is not None:
        return Plan(table, INDEX_LOOKUP, match.index, keys, spans, condition)
    return Plan(table, POINT_LOOKUP if match.exact else RANGE_SCAN, None, keys, spans, condition)


async def fetch(txn, plan: Plan) -> list[Row]:
    if plan.access == POINT_LOOKUP:
        return await get_rows(txn, plan.table, plan.keys)
    if plan.access == INDEX_LOOKUP:
        entries = await get_entries(txn, plan.keys) if plan.keys else []
        entries += await scan_spans(txn, plan.spans) if plan.spans else []
        return await rows_of_entries(txn, plan.table, plan.index, entries)
    return await scan_span_rows(txn, plan.table, plan.spans)


def qualify(rows: list[Row], name: str) -> list[Row]:
    """Rows keyed by both `col` and `name.col`, as the evaluator expects."""
    return [{**row, **{f"{name}.{k}": v for k, v in row.items()}} for row in rows]


async def source_rows(txn, table: TableDescriptor, alias: str, where) -> list[Row]:
    rows = qualify(await fetch(txn, plan_access(table, where, alias)), alias)
    return [row for row in rows if where is None or is_true(where, row)]


# ---------------------------------------------------------------------------------------
# Joins


@dataclass
class JoinPlan:
    """How an INNER JOIN reads its table: looked up per outer row through `match` (index
    nested-loop join), or, without a usable index, scanned once (nested loop)."""

    table: TableDescriptor
    alias: str
    pairs: list[tuple[str, exp.Column]]  # (column of `table`, the outer column it must equal)
    match: _Match | None

    @property
    def keys(self) -> list[bytes]:
        return []

    @property
    def spans(self) -> list[Span]:
        """What the join may read: the whole index the lookups go to, or the whole table."""
        if self.match is None or self.match.index is None:
            return [table_span(self.table)]
        return [index_span(self.table, self.match.index)]

    def describe(self) -> str:
        name = self.table.name if self.alias == self.table.name else f"{self.table.name} {self.alias}"
        if self.match is None:
            return f"nested loop join with {name} (full scan)"
        used = self.match.fixed
        condition = " AND ".join(f"{c} = {outer.sql(dialect='postgres')}" for c, outer in self.pairs if c in used)
        if self.match.index is None:
            what = (f"point lookup on {self.table.name} (primary key: {condition})" if self.match.exact
                    else f"primary-key range scan of {self.table.name} ({condition})")
        else:
            what = f"index lookup on {self.table.name}@{self.match.index.name} ({condition})"
        return f"index nested-loop join with {name}: {what} per outer row"

    def plan_for(self, outer: Row) -> Plan | None:
        """The lookup for one outer row; None if an outer value is NULL (no row can match)."""
        terms = []
        for column, outer_column in self.pairs:
            value = evaluate(outer_column, outer)
            if value is None:
                return None
            # A value that does not compare with the column (a type error) is left to the ON
            # clause, which reports it: _allowed_values drops such terms.
            terms.append(_Term(column, "=", ((value, False),), outer_column))
        return _plan(self.table, _allowed_values(self.table, terms))


def plan_join(join: JoinClause, alias: str, table: TableDescriptor, outer: list[tuple[str, TableDescriptor]]) -> JoinPlan:
    """The join's plan: an index nested-loop join when its ON equalities fix a key prefix."""
    inner = _resolver(table, alias, frozenset(c.name for _, t in outer for c in t.columns))
    pairs = []
    for left, right in join.equalities:
        for mine, theirs in ((left, right), (right, left)):
            if inner(mine) is not None and _outer_column(theirs, outer, table):
                pairs.append((inner(mine), theirs))
                break
    # The choice of index depends only on which columns are fixed, not on their values.
    allowed = {column: _Allowed(table.column(column).type, points=[b""]) for column, _ in pairs}
    return JoinPlan(table, alias, pairs, _best_match(table, allowed) if pairs else None)


def _outer_column(column: exp.Column, outer: list[tuple[str, TableDescriptor]], inner: TableDescriptor) -> bool:
    """Whether `column` names exactly one column of the outer tables (so a row has its value)."""
    if column.table:
        return any(alias == column.table and column.name in {c.name for c in t.columns} for alias, t in outer)
    owners = [t for _, t in outer + [("", inner)] if column.name in {c.name for c in t.columns}]
    return len(owners) == 1 and owners[0] is not inner


async def _join_rows(txn, rows: list[Row], join: JoinClause, plan: JoinPlan) -> list[Row]:
    if plan.match is None:
        inner = qualify(await scan_span_rows(txn, plan.table, [table_span(plan.table)]), plan.alias)
        return [{**left, **right} for left in rows for right in inner if is_true(join.on, {**left, **right})]
    lookups = [plan.plan_for(left) for left in rows]
    found = await _fetch_distinct(txn, [p for p in lookups if p is not None])
    joined = []
    for left, lookup in zip(rows, lookups):
        for right in [] if lookup is None else qualify(found[_plan_identity(lookup)], plan.alias):
            merged = {**left, **right}
            if is_true(join.on, merged):
                joined.append(merged)
    return joined


async def _fetch_distinct(txn, plans: list[Plan]) -> dict[tuple, list[Row]]:
    """Each distinct plan's rows, read once, the reads concurrent."""
    distinct = {_plan_identity(p): p for p in plans}
    results = await concurrently([lambda p=p: fetch(txn, p) for p in distinct.values()], JOIN_LOOKUPS_IN_FLIGHT,
                                 first_alone=snapshot_unset(txn))
    return dict(zip(distinct, results))


def _plan_identity(plan: Plan) -> tuple:
    return plan.access, plan.index, tuple(plan.keys), tuple(plan.spans)


async def plan_statement(txn, statement) -> list:
    """The reads of a statement, for EXPLAIN: a Plan (or JoinPlan) per table access, in order;
    [] for a statement that reads no table."""
    if isinstance(statement, Select):
        if statement.from_table is None:
            return []
        tables = await _tables(txn, statement)
        return [_main_plan(statement, tables)] + _join_plans(statement, tables)
    name = getattr(statement, "table", None)
    if name is None:
        return []
    table = await catalog.require_table(txn, name)
    if isinstance(statement, parser.Insert):
        return [] if statement.select is None else await plan_statement(txn, statement.select)
    return [plan_access(table, statement.where, table.name)]


async def _tables(txn, statement: Select) -> list[tuple[str, TableDescriptor]]:
    """(alias, descriptor) of the FROM table, then of each joined table."""
    refs = [statement.from_table] + [j.table for j in statement.joins]
    return [(ref.alias or ref.name, await catalog.require_table(txn, ref.name)) for ref in refs]


def _main_plan(statement: Select, tables: list[tuple[str, TableDescriptor]]) -> Plan:
    (alias, table), others = tables[0], tables[1:]
    shadowed = frozenset(c.name for _, t in others for c in t.columns)
    return plan_access(table, statement.where, alias, shadowed)


def _join_plans(statement: Select, tables: list[tuple[str, TableDescriptor]]) -> list[JoinPlan]:
    return [plan_join(join, *tables[i + 1], tables[: i + 1]) for i, join in enumerate(statement.joins)]


# ---------------------------------------------------------------------------------------


async def run_select(txn, statement: Select) -> tuple[list[str], list[tuple]]:
    """Execute `statement`; returns (column names, rows)."""
    rows, ambiguous, tables = await _from_rows(txn, statement)
    rows = [r for r in rows if statement.where is None or is_true(statement.where, r, ambiguous)]
    names, columns = _projection(statement, tables)
    if statement.group_by or any(is_aggregate(p) for p in columns):
        output = _grouped(statement, rows, columns, ambiguous)
    else:
        ordered = _order(statement, rows, ambiguous)
        output = [(tuple(evaluate(c, r, ambiguous) for c in columns), r) for r in ordered]
    values = [v for v, _ in output]
    if statement.distinct:
        values = list(dict.fromkeys(values))
    return names, _limit(statement, values)


async def _from_rows(txn, statement: Select):
    if statement.from_table is None:
        return [{}], frozenset(), []
    tables = await _tables(txn, statement)
    rows = qualify(await fetch(txn, _main_plan(statement, tables)), tables[0][0])
    for join, plan in zip(statement.joins, _join_plans(statement, tables)):
        rows = await _join_rows(txn, rows, join, plan)
    names = [c.name for _, t in tables for c in t.columns]
    ambiguous = frozenset(n for n in names if names.count(n) > 1)
    return rows, ambiguous, tables


def _projection(statement: Select, tables) -> tuple[list[str], list[exp.Expression]]:
    names, columns = [], []
    for projection in statement.projections:
        if isinstance(projection, exp.Star):
            for alias, table in tables:
                for column in table.visible_columns():
                    names.append(column.name)
                    columns.append(exp.column(column.name, table=alias))
            continue
        names.append(output_name(projection))
        columns.append(projection.this if isinstance(projection, exp.Alias) else projection)
    return names, columns


def output_name(projection: exp.Expression) -> str:
    """PostgreSQL's name for a result column: the alias, a column's name, a function's or
    aggregate's name (`count`, `lower`), a CAST's inner name, else `?column?`."""
    if isinstance(projection, exp.Alias):
        return projection.alias
    if isinstance(projection, exp.Column):
        return projection.name
    if isinstance(projection, exp.Paren):
        return output_name(projection.this)
    if isinstance(projection, exp.Cast):
        inner = output_name(projection.this)
        return inner if inner != "?column?" else projection.to.sql(dialect="postgres").lower().split("(")[0]
    if isinstance(projection, exp.Anonymous):
        return projection.name.lower()
    if isinstance(projection, exp.Func):
        return projection.sql_name().lower()
    return "?column?"


def _grouped(statement: Select, rows: list[Row], columns, ambiguous):
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        key = tuple(evaluate(g, row, ambiguous) for g in statement.group_by)
        groups.setdefault(key, []).append(row)
    if not statement.group_by and not groups:
        groups[()] = []  # SELECT COUNT(*) FROM empty: one row
    output = []
    for group in groups.values():
        if statement.having is not None and not is_true_with_aggregates(statement.having, group, ambiguous):
            continue
        values = tuple(evaluate_with_aggregates(c, group, ambiguous) for c in columns)
        output.append((values, group))
    if statement.order_by:
        output.sort(key=lambda item: tuple(
            _sort_key(evaluate_with_aggregates(o.expr, item[1], ambiguous), o) for o in statement.order_by))
    return output


def _order(statement: Select, rows: list[Row], ambiguous) -> list[Row]:
    if not statement.order_by:
        return rows
    return sorted(rows, key=lambda row: tuple(_sort_key(evaluate(o.expr, row, ambiguous), o)
                                              for o in statement.order_by))


class _Reversed:
    def __init__(self, value) -> None:
        self.value = value

    def __lt__(self, other: "_Reversed") -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.value == other.value


def _sort_key(value, order) -> tuple:
    null_rank = 0 if order.nulls_first else 1
    if value is None:
        return (null_rank, 0)
    key = sort_key(value)  # PostgreSQL's order (NaN above every number)
    return (1 - null_rank, _Reversed(key) if order.descending else key)


def _limit(statement: Select, values: list[tuple]) -> list[tuple]:
    offset = _count(statement.offset, "OFFSET") or 0
    limit = _count(statement.limit, "LIMIT")
    values = values[offset:]
    return values if limit is None else values[:limit]


def _count(expr, what: str) -> int | None:
    if expr is None:
        return None
    value = evaluate(expr, {})
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SqlError(f"{what} must not be negative and must be an integer", "2201W" if what == "LIMIT" else "2201X")
    return value


__all__ = ["Aggregator", "FULL_SCAN", "INDEX_LOOKUP", "JoinPlan", "POINT_LOOKUP", "Plan", "RANGE_SCAN", "fetch",
           "plan_access", "plan_join", "plan_statement", "run_select", "source_rows"]
