"""A SQL session: statements run in transactions over the ranges (docs/SQL.md).

Outside BEGIN..COMMIT each statement is its own transaction, run with `run_transaction`
(a retryable conflict is retried automatically). Inside a block, statements share one
transaction; after an error the block is *failed* (25P02) until ROLLBACK, as in PostgreSQL,
and a retryable abort at COMMIT is reported as 40001 with a hint to retry. A syntax error
fails the block too. Every error reaches the client as a SqlError: a row or key over the KV
store's size limits is 54000 (raised by `txn.put` before anything is buffered), and a bug is
XX000 (the block fails; outside one, the statement's transaction is aborted), so no error
leaves a partial write or ends the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from ranges.api import AmbiguousResult, BadRequest, SpanliteError
from ranges.keys import MAX_KEY_BYTES, MAX_VALUE_BYTES, KeyTooLarge, ValueTooLarge
from sql_lite_front import catalog, errors, parser
from sql_lite_front.catalog import Column, TableDescriptor
from sql_lite_front.encoding import encode_key, pretty_key
from sql_lite_front.errors import SqlError
from sql_lite_front.evaluator import Scope, analyze_assignment, analyze_condition, analyze_select, coerce, evaluate
from sql_lite_front.rows import (
    backfill_index,
    delete_row,
    get_row,
    new_rowid,
    row_key,
    whole_table_span,
    write_row,
)
from sql_lite_front.select import plan_statement, run_select, source_rows
from clock.settings import parse_duration
from clock.timestamp import Timestamp
from txn.transaction import Transaction


@dataclass
class Result:
    status: str  # the command tag, as psql prints it: "INSERT 0 3", "SELECT 2", "CREATE TABLE"
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)


class Session:
    def __init__(self, db) -> None:
        self.db = db
        self.txn: Transaction | None = None
        self.failed = False

    @property
    def transaction_state(self) -> str:
        """'idle', 'open' or 'failed' (the shell's prompt shows it)."""
        if self.txn is None:
            return "idle"
        return "failed" if self.failed else "open"

    async def execute(self, sql: str) -> list[Result]:
        """Run every statement of `sql`; raises SqlError at the first failing one."""
        try:
            statements = parser.parse(sql)
        except SqlError:
            self.failed = self.txn is not None  # as in PostgreSQL, a syntax error fails the block too
            raise
        results = []
        for statement in statements:
            results.append(await self.execute_statement(statement))
        return results

    async def execute_statement(self, statement) -> Result:
        if isinstance(statement, parser.Begin):
            return self._begin()
        if isinstance(statement, parser.Commit):
            return await self._commit()
        if isinstance(statement, parser.Rollback):
            return await self._rollback()
        if self.txn is None:
            return await self._autocommit(statement)
        if self.failed:
            raise SqlError("current transaction is aborted, commands ignored until end of transaction block",
                           "25P02", hint="ROLLBACK to end it")
        if isinstance(statement, parser.Select) and statement.as_of_system_time is not None:
            self.failed = True
            raise SqlError("AS OF SYSTEM TIME must be used outside a transaction block", "0A000",
                           hint="run the SELECT on its own, after COMMIT or ROLLBACK")
        try:
            return await run_statement(self.db, self.txn, statement)
        except SqlError:
            self.failed = True
            raise
        except SpanliteError as e:
            self.failed = True  # e.g. wounded by an older transaction: 40001, ROLLBACK and retry
            raise _as_sql_error(e) from None
        except Exception as e:  # a bug: the statement may have buffered part of its writes
            self.failed = True
            raise _internal_error(e) from e

    def _begin(self) -> Result:
        if self.txn is None:
            self.txn = self.db.transaction().txn
            self.failed = False
        return Result("BEGIN")

    async def _commit(self) -> Result:
        txn, failed = self.txn, self.failed
        self.txn, self.failed = None, False
        if txn is None:
            return Result("COMMIT")  # PostgreSQL warns "there is no transaction in progress"
        if failed:
            await txn.abort()
            return Result("ROLLBACK")
        try:
            await txn.commit()
        except SpanliteError as e:
            raise _as_sql_error(e) from None
        return Result("COMMIT")

    async def _rollback(self) -> Result:
        txn, self.txn, self.failed = self.txn, None, False
        if txn is not None:
            await txn.abort()
        return Result("ROLLBACK")

    async def _autocommit(self, statement) -> Result:
        try:
            if isinstance(statement, parser.Select):
                # A lone SELECT reads one snapshot without locks, like a Spanner read-only
                # transaction: no commit round and no commit-wait (which a locking read-write
                # transaction pays, max offset long), and it never conflicts with writers.
                async with self.db.read_only(ts=_as_of(statement, self.db.now_ns())) as snapshot:
                    return await run_statement(self.db, snapshot, statement)
            return await self.db.run_transaction(lambda txn: run_statement(self.db, txn, statement))
        except SqlError:
            raise
        except SpanliteError as e:
            raise _as_sql_error(e) from None
        except Exception as e:  # a bug; run_transaction aborted the transaction: nothing was written
            raise _internal_error(e) from e


def _as_of(statement, now_ns: int) -> Timestamp | None:
    """CockroachDB's `AS OF SYSTEM TIME`: a negative interval ('-5s', relative to now) or
    nanoseconds since the Unix epoch (an INT, or its decimal text); None without the clause."""
    if statement.as_of_system_time is None:
        return None
    value = evaluate(statement.as_of_system_time, {})
    if isinstance(value, str) and value.strip().startswith("-"):
        try:
            wall_ns = now_ns - parse_duration(value.strip()[1:])
        except ValueError:
            wall_ns = -1
    elif isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.strip().isdigit():
        wall_ns = int(value)
    else:
        wall_ns = -1
    if not 0 < wall_ns <= now_ns:
        raise SqlError(f"AS OF SYSTEM TIME: {value!r} is not a time in the past", "22023",
                       hint="use a negative interval such as '-5s', or nanoseconds since the Unix epoch")
    return Timestamp(wall_ns, 0)


def _internal_error(error: Exception) -> SqlError:
    """A bug reaches the client as XX000 (the session lives on; the cause is chained for logs)."""
    return SqlError(f"internal error: {type(error).__name__}: {error}", "XX000",
                    hint="This is a bug in spanlite; the statement had no effect.")


def _as_sql_error(error: SpanliteError) -> SqlError:
    if isinstance(error, AmbiguousResult):  # retryable as a request, never as a transaction
        return SqlError(f"result is ambiguous: {error.message}", "40003",
                        hint="the transaction may or may not have committed: check before running it again")
    if error.retryable:
        return SqlError(f"restart transaction: {error.message}", "40001",
                        hint="the transaction conflicted with another one; retry it")
    return SqlError(error.message, "XX000")


# ---------------------------------------------------------------------------------------
# statements


async def run_statement(db, txn, statement) -> Result:
    handler = _HANDLERS.get(type(statement))
    if handler is None:
        raise SqlError(f"{type(statement).__name__} is not supported yet", "0A000")
    try:
        return await handler(db, txn, statement)
    except KeyTooLarge as e:  # raised by txn.put, before the write is buffered: nothing is written
        raise errors.index_row_too_big(MAX_KEY_BYTES, str(e)) from None
    except ValueTooLarge as e:
        raise errors.row_too_big(MAX_VALUE_BYTES, str(e)) from None


async def _create_table(db, txn, s: parser.CreateTable) -> Result:
    columns = [Column(c.name, c.type, c.not_null or c.name in (s.primary_key or ()),
                      None if c.default_expr is None else c.default_expr.sql(dialect="postgres"), c.max_length)
               for c in s.columns]
    await catalog.create_table(txn, s.name, columns, list(s.primary_key) if s.primary_key else None, s.if_not_exists)
    return Result("CREATE TABLE")


async def _drop_table(db, txn, s: parser.DropTable) -> Result:
    table = await catalog.drop_table(txn, s.name, s.if_exists)
    if table is not None:
        start, end = whole_table_span(table)
        for key, _ in await txn.scan(start, end):
            txn.delete(key)
    return Result("DROP TABLE")


async def _create_index(db, txn, s: parser.CreateIndex) -> Result:
    table = await catalog.require_table(txn, s.table)
    name = s.name or f"{s.table}_{'_'.join(s.columns)}_idx"
    if any(i.name == name for i in table.indexes) and s.if_not_exists:
        return Result("CREATE INDEX")
    table = await catalog.add_index(txn, table, name, list(s.columns), s.unique)
    await backfill_index(txn, table, table.indexes[-1])
    return Result("CREATE INDEX")


async def _insert(db, txn, s: parser.Insert) -> Result:
    table = await catalog.require_table(txn, s.table)
    names = list(s.columns) if s.columns else [c.name for c in table.visible_columns()]
    for name in names:
        table.column(name)  # 42703 for an unknown column
    if s.rows is None:
        _, selected = await run_select(txn, await _analyzed(txn, s.select))
        value_rows = [list(row) for row in selected]
    else:
        value_rows = [[None if _is_default(e) else evaluate(e, {}) for e in row] for row in s.rows]
    inserted = 0
    for values in value_rows:
        if len(values) > len(names):
            raise SqlError("INSERT has more expressions than target columns", "42601")
        if len(values) < len(names) and s.columns:
            raise SqlError("INSERT has more target columns than expressions", "42601")
        # Without a column list, fewer values fill the first columns; the rest get defaults (PostgreSQL).
        row = _complete_row(table, dict(zip(names, values)))
        inserted += await _insert_row(txn, table, row, s.on_conflict)
    return Result(f"INSERT 0 {inserted}")


def _is_default(expr) -> bool:
    return isinstance(expr, exp.Var) and expr.name.upper() == "DEFAULT"


def _complete_row(table: TableDescriptor, given: dict) -> dict:
    row = {}
    for column in table.columns:
        if column.name in given and given[column.name] is not None:
            value = coerce(given[column.name], column.type, column.name, column.max_length)
        elif column.name in given:
            value = None
        elif column.hidden:
            value = new_rowid()
        elif column.default_sql is not None:
            value = coerce(evaluate(sqlglot.parse_one(column.default_sql, read="postgres"), {}), column.type,
                           column.name, column.max_length)
        else:
            value = None
        if value is None and column.not_null:
            raise SqlError(f'null value in column "{column.name}" of relation "{table.name}" violates not-null '
                           f"constraint", "23502")
        row[column.name] = value
    return row


async def _insert_row(txn, table: TableDescriptor, row: dict, on_conflict: str | None) -> int:
    existing = await get_row(txn, table, [row[c] for c in table.primary_key])
    if existing is not None and on_conflict == "nothing":
        return 0
    if existing is not None and on_conflict != "upsert":
        key = ", ".join(table.primary_key)
        raise SqlError(f'duplicate key value violates unique constraint "{table.name}_pkey"', "23505",
                       hint=f"Key ({key})=({', '.join(repr(row[c]) for c in table.primary_key)}) already exists.")
    await write_row(txn, table, row, existing)
    return 1


async def _update(db, txn, s: parser.Update) -> Result:
    table = await catalog.require_table(txn, s.table)
    scope = Scope([(table.name, table)])
    analyze_condition(s.where, "WHERE", scope)
    for assignment in s.assignments:
        analyze_assignment(assignment.expr, table.column(assignment.column), scope)
    rows = await source_rows(txn, table, table.name, s.where)
    for row in rows:
        new = {c.name: row[c.name] for c in table.columns}
        for assignment in s.assignments:
            column = table.column(assignment.column)
            value = evaluate(assignment.expr, row)
            new[column.name] = None if value is None else coerce(value, column.type, column.name, column.max_length)
            if new[column.name] is None and column.not_null:
                raise SqlError(f'null value in column "{column.name}" of relation "{table.name}" violates '
                               f"not-null constraint", "23502")
        old = {c.name: row[c.name] for c in table.columns}
        if row_key(table, new) != row_key(table, old) and await get_row(txn, table, [new[c] for c in table.primary_key]):
            raise SqlError(f'duplicate key value violates unique constraint "{table.name}_pkey"', "23505")
        await write_row(txn, table, new, old)
    return Result(f"UPDATE {len(rows)}")


async def _delete(db, txn, s: parser.Delete) -> Result:
    table = await catalog.require_table(txn, s.table)
    analyze_condition(s.where, "WHERE", Scope([(table.name, table)]))
    rows = await source_rows(txn, table, table.name, s.where)
    for row in rows:
        await delete_row(txn, table, {c.name: row[c.name] for c in table.columns})
    return Result(f"DELETE {len(rows)}")


async def _select(db, txn, s: parser.Select) -> Result:
    columns, rows = await run_select(txn, await _analyzed(txn, s))
    return Result(f"SELECT {len(rows)}", columns, rows)


async def _analyzed(txn, s: parser.Select) -> parser.Select:
    """The SELECT after PostgreSQL's plan-time checks (errors even when no row is read), with
    ORDER BY / GROUP BY positions and output names resolved (evaluator.analyze_select)."""
    refs = ([s.from_table] if s.from_table is not None else []) + [j.table for j in s.joins]
    return analyze_select(s, [(ref.ref_name, await catalog.require_table(txn, ref.name)) for ref in refs])


async def _show_tables(db, txn, s: parser.ShowTables) -> Result:
    tables = await catalog.list_tables(txn)
    return Result(f"SELECT {len(tables)}", ["table_name"], [(t.name,) for t in tables])


async def _show_ranges(db, txn, s: parser.ShowRanges) -> Result:
    tables = await catalog.list_tables(txn)
    names = {t.table_id: t.name for t in tables}
    ranges = (await db.status())["ranges"]
    if s.table is not None:
        table = await catalog.require_table(txn, s.table)
        start, end = whole_table_span(table)
        ranges = [r for r in ranges if r["start_key"] < end and start < r["end_key"]]
    rows = [(r["range_id"], _pretty(r["start_key"], names), _pretty(r["end_key"], names),
             "{" + ",".join(str(n) for n in r["replicas"]) + "}", r["leaseholder"]) for r in ranges]
    return Result(f"SELECT {len(rows)}", ["range_id", "start_key", "end_key", "replicas", "leaseholder"], rows)


def _pretty(key: bytes, names: dict[int, str]) -> str:
    """A range boundary as `/table/index/values`, with the table's name where it is known."""
    text = pretty_key(key)
    head, _, rest = text[1:].partition("/")
    if head.isdigit() and int(head) in names:
        return f"/{names[int(head)]}" + (f"/{rest}" if rest else "")
    return text


async def _split_at(db, txn, s: parser.AlterTableSplitAt) -> Result:
    table = await catalog.require_table(txn, s.table)
    types = table.key_types()
    rows = []
    for values_exprs in s.rows:
        if len(values_exprs) > len(types):
            raise SqlError(f"too many values to split at: the primary key of {table.name} has {len(types)} columns",
                           "42601")
        values = [coerce(evaluate(e, {}), t, name) for e, t, name in zip(values_exprs, types, table.primary_key)]
        key = encode_key(table.table_id, catalog.PRIMARY_INDEX_ID, values, types=types[:len(values)])
        try:
            await db.admin_split(key)
        except BadRequest as e:
            if "boundary" not in e.message:
                raise SqlError(e.message, "22023") from None  # Already split there: nothing to do.
        rows.append((_pretty(key, {table.table_id: table.name}),))
    return Result(f"SELECT {len(rows)}", ["split_key"], rows)


async def _explain(db, txn, s: parser.Explain) -> Result:
    """One line per table access (select.plan_statement), each followed by the ranges it reads."""
    statement = s.statement
    kind = type(statement).__name__.lower()
    accesses = await plan_statement(txn, statement)
    if isinstance(statement, parser.Insert) and statement.select is None:
        return Result("EXPLAIN", ["info"], [(f"{kind}: into {statement.table}: a primary-key point lookup per row "
                                             f"(and one per unique index), the writes at commit",)])
    if not accesses:
        return Result("EXPLAIN", ["info"], [("no table: evaluate the expressions",)])
    lines = []
    for position, access in enumerate(accesses):
        lines.append(f"{kind}: {access.describe()}" if position == 0 else access.describe())
        touched = await _ranges_touched(db, access.keys, access.spans)
        lines.append(f"ranges: {', '.join(f'r{r}' for r in touched) or 'none'}")
    return Result("EXPLAIN", ["info"], [(line,) for line in lines])


async def _ranges_touched(db, keys: list[bytes], spans: list[tuple[bytes, bytes]]) -> list[int]:
    """The ids of the ranges holding `keys` and overlapping `spans`, each once, in key order."""
    touched = []
    for key in keys:
        db.forget_descriptor(key)  # EXPLAIN reports the ranges as they are now, not as cached
        touched.append((await db.descriptor_for(key)).range_id)
    for start, end in spans:
        touched += await _ranges_of_span(db, start, end)
    return list(dict.fromkeys(touched))


async def _ranges_of_span(db, start: bytes, end: bytes) -> list[int]:
    touched = []
    while start < end:
        db.forget_descriptor(start)
        descriptor = await db.descriptor_for(start)
        touched.append(descriptor.range_id)
        start = descriptor.end_key
    return touched


_HANDLERS = {
    parser.ShowRanges: _show_ranges,
    parser.AlterTableSplitAt: _split_at,
    parser.Explain: _explain,
    parser.CreateTable: _create_table,
    parser.DropTable: _drop_table,
    parser.CreateIndex: _create_index,
    parser.Insert: _insert,
    parser.Update: _update,
    parser.Delete: _delete,
    parser.Select: _select,
    parser.ShowTables: _show_tables,
}
