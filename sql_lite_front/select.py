"""SELECT (and the row sourcing of UPDATE/DELETE): plan, fetch, filter, join, group, order.

Access paths, chosen from the WHERE clause's top-level `column = constant` conjuncts:
- **point lookup**: every primary-key column fixed: one `txn.get` (one range);
- **full scan**: otherwise, the table's whole primary index, filtered.
(Index lookups and primary-key range scans are the next step of the planner: docs/SQL.md.)
INNER JOIN: a hash join on the ON clause's column equalities.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from sql_lite_front import catalog
from sql_lite_front.catalog import TableDescriptor
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
from sql_lite_front.parser import Select
from sql_lite_front.rows import Row, get_row, scan_rows


@dataclass
class Plan:
    table: TableDescriptor
    access: str  # "point lookup" or "full scan"
    key_values: list | None = None

    def describe(self) -> str:
        if self.access == "point lookup":
            return f"point lookup on {self.table.name} (primary key = {self.key_values})"
        return f"full scan of {self.table.name}"


def plan_access(table: TableDescriptor, where: exp.Expression | None) -> Plan:
    fixed = _constant_equalities(where)
    if all(c in fixed for c in table.primary_key):
        try:
            values = [coerce(fixed[c], table.column(c).type, c) for c in table.primary_key]
        except SqlError:
            return Plan(table, "full scan")  # let the filter report type errors row by row
        return Plan(table, "point lookup", values)
    return Plan(table, "full scan")


def _constant_equalities(where: exp.Expression | None) -> dict[str, object]:
    found: dict[str, object] = {}
    for conjunct in _conjuncts(where):
        if isinstance(conjunct, exp.EQ):
            column, constant = _column_and_constant(conjunct.this, conjunct.expression)
            if column is not None:
                found[column] = constant
    return found


def _conjuncts(where: exp.Expression | None) -> list[exp.Expression]:
    if where is None:
        return []
    if isinstance(where, exp.And):
        return _conjuncts(where.this) + _conjuncts(where.expression)
    if isinstance(where, exp.Paren):
        return _conjuncts(where.this)
    return [where]


def _column_and_constant(a: exp.Expression, b: exp.Expression) -> tuple[str | None, object]:
    for column, other in ((a, b), (b, a)):
        if isinstance(column, exp.Column) and isinstance(other, (exp.Literal, exp.Neg)):
            try:
                value = evaluate(other, {})
            except SqlError:
                return None, None
            if value is not None:
                return column.name, value
    return None, None


async def fetch(txn, plan: Plan) -> list[Row]:
    if plan.access == "point lookup":
        row = await get_row(txn, plan.table, plan.key_values)
        return [] if row is None else [row]
    return await scan_rows(txn, plan.table)


def qualify(rows: list[Row], name: str) -> list[Row]:
    """Rows keyed by both `col` and `name.col`, as the evaluator expects."""
    return [{**row, **{f"{name}.{k}": v for k, v in row.items()}} for row in rows]


async def source_rows(txn, table: TableDescriptor, alias: str, where) -> list[Row]:
    rows = qualify(await fetch(txn, plan_access(table, where)), alias)
    return [row for row in rows if where is None or is_true(where, row)]


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
    main = await catalog.require_table(txn, statement.from_table.name)
    main_alias = statement.from_table.alias or main.name
    where = statement.where if not statement.joins else None
    rows = qualify(await fetch(txn, plan_access(main, where)), main_alias)
    tables = [(main_alias, main)]
    for join in statement.joins:
        other = await catalog.require_table(txn, join.table.name)
        alias = join.table.alias or other.name
        other_rows = qualify(await scan_rows(txn, other), alias)
        rows = [{**left, **right} for left in rows for right in other_rows if is_true(join.on, {**left, **right})]
        tables.append((alias, other))
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
        names.append(projection.alias_or_name or "?column?")
        columns.append(projection.this if isinstance(projection, exp.Alias) else projection)
    return names, columns


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


__all__ = ["Aggregator", "Plan", "plan_access", "run_select", "source_rows"]
