"""Table rows and index entries in the KV store, read and written inside a transaction.

Primary index (id 1): key `/table_id/1/pk...` -> `encode_row(non-key columns)`.
Secondary index i: unique: `/table_id/i/cols...` -> `encode_row(pk)`; non-unique:
`/table_id/i/cols.../pk...` -> b"". Index entries change in the same transaction as the row
(`write_row`, `delete_row`), so an index never disagrees with its table.

Reads for the planner (select.py): `get_rows` (point lookups), `scan_span_rows` (primary-key
range scans), `get_entries` / `scan_entries` + `rows_of_entries` (index lookups: the primary
key is decoded from each entry, then the row is fetched). Independent reads run concurrently
(`concurrently`), at most MAX_READS_IN_FLIGHT at a time.

NULLs in a unique index are distinct, as in PostgreSQL: a row with NULL in any indexed column
gets the non-unique layout (`/table_id/i/cols.../pk...` -> b"", as CockroachDB does), so it
conflicts with nothing; readers tell the layouts apart by the value (a unique entry's encoded
primary key is never empty).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Awaitable, Callable

import trio

from sql_lite_front.catalog import PRIMARY_INDEX_ID, Index, TableDescriptor
from sql_lite_front.encoding import decode_key, decode_row, encode_key, encode_row, key_prefix, prefix_end
from sql_lite_front.errors import SqlError
from txn.transaction import ReadOnlyTransaction

Row = dict[str, object]  # column name -> value
Span = tuple[bytes, bytes]  # the keys in [start, end)

# A lookup of many keys (an IN list, an index lookup's rows, a join's inner rows) sends this
# many reads at once: enough to hide round trips, few enough not to flood one leaseholder.
MAX_READS_IN_FLIGHT = 32


def row_key(table: TableDescriptor, row: Row) -> bytes:
    return encode_key(table.table_id, PRIMARY_INDEX_ID, [row[c] for c in table.primary_key], types=table.key_types())


def table_span(table: TableDescriptor) -> tuple[bytes, bytes]:
    prefix = key_prefix(table.table_id, PRIMARY_INDEX_ID)
    return prefix, prefix_end(prefix)


def whole_table_span(table: TableDescriptor) -> tuple[bytes, bytes]:
    """Every key of the table: its rows and all its indexes."""
    prefix = key_prefix(table.table_id)
    return prefix, prefix_end(prefix)


def decode_table_row(table: TableDescriptor, key: bytes, raw: bytes) -> Row:
    _, _, key_values = decode_key(key, table.key_types())
    values = decode_row(raw, [c.type for c in table.value_columns()])
    row = dict(zip(table.primary_key, key_values))
    row.update(zip((c.name for c in table.value_columns()), values))
    return row


async def get_row(txn, table: TableDescriptor, key_values: list) -> Row | None:
    key = encode_key(table.table_id, PRIMARY_INDEX_ID, key_values, types=table.key_types())
    raw = await txn.get(key)
    return None if raw is None else decode_table_row(table, key, raw)


async def scan_rows(txn, table: TableDescriptor, start: bytes | None = None, end: bytes | None = None) -> list[Row]:
    lo, hi = table_span(table)
    rows = await txn.scan(start or lo, end or hi)
    return [decode_table_row(table, k, v) for k, v in rows]


# ---------------------------------------------------------------------------------------
# Reads for the planner's access paths


def index_span(table: TableDescriptor, index: Index) -> Span:
    prefix = key_prefix(table.table_id, index.index_id)
    return prefix, prefix_end(prefix)


def snapshot_unset(txn) -> bool:
    """A read-only transaction whose timestamp its first read will choose: reads sent together
    before then could each choose their own, and not see one snapshot."""
    return isinstance(txn, ReadOnlyTransaction) and txn.ts is None


async def concurrently(calls: list[Callable[[], Awaitable]], in_flight_max: int = MAX_READS_IN_FLIGHT,
                       first_alone: bool = False) -> list:
    """The results of `calls`, in order, run at once (at most `in_flight_max` at a time; with
    `first_alone`, the first one before the others).

    The first failure is raised as itself, not wrapped in an ExceptionGroup, so that a
    retryable abort still reaches `run_transaction` and the session as a SpanliteError. The
    other calls are left to finish rather than cancelled mid-request.
    """
    if first_alone and calls:
        return [await calls[0]()] + await concurrently(calls[1:], in_flight_max)
    if len(calls) <= 1:
        return [await call() for call in calls]
    results: list = [None] * len(calls)
    failures: list[Exception] = []
    assert in_flight_max > 0, in_flight_max
    limiter = trio.CapacityLimiter(in_flight_max)

    async def run(position: int, call: Callable[[], Awaitable]) -> None:
        async with limiter:
            try:
                results[position] = await call()
            except Exception as failure:  # noqa: BLE001 -- re-raised below, unwrapped
                failures.append(failure)

    async with trio.open_nursery() as nursery:
        for position, call in enumerate(calls):
            nursery.start_soon(run, position, call)
    if failures:
        raise failures[0]
    return results


async def get_rows(txn, table: TableDescriptor, keys: list[bytes]) -> list[Row]:
    """The rows at the primary-index `keys`, in that order; keys without a row are skipped."""
    values = await concurrently([functools.partial(txn.get, key) for key in keys], first_alone=snapshot_unset(txn))
    return [decode_table_row(table, key, raw) for key, raw in zip(keys, values) if raw is not None]


async def scan_spans(txn, spans: list[Span]) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs in `spans` (sorted, disjoint), in key order."""
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, "spans must be sorted and disjoint, or rows would repeat"
    parts = await concurrently([functools.partial(txn.scan, start, end) for start, end in spans],
                               first_alone=snapshot_unset(txn))
    return [pair for part in parts for pair in part]


async def scan_span_rows(txn, table: TableDescriptor, spans: list[Span]) -> list[Row]:
    """The rows of the primary-index `spans`, in key order."""
    return [decode_table_row(table, k, v) for k, v in await scan_spans(txn, spans)]


async def get_entries(txn, keys: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The index entries at `keys` (whole keys of a unique index), absent ones skipped."""
    values = await concurrently([functools.partial(txn.get, key) for key in keys], first_alone=snapshot_unset(txn))
    return [(key, raw) for key, raw in zip(keys, values) if raw is not None]


def row_key_of_entry(table: TableDescriptor, index: Index, key: bytes, value: bytes) -> bytes:
    """The primary-index key of the row an index entry points to (see the module docstring)."""
    if index.unique and value:
        pk_values = decode_row(value, table.key_types())
    else:
        types = [table.column(c).type for c in index.columns] + table.key_types()
        _, index_id, values = decode_key(key, types)
        assert index_id == index.index_id, f"entry of index {index_id} read as one of {index.name}"
        pk_values = values[len(index.columns):]
    return encode_key(table.table_id, PRIMARY_INDEX_ID, pk_values, types=table.key_types())


async def rows_of_entries(txn, table: TableDescriptor, index: Index, entries: list[tuple[bytes, bytes]]) -> list[Row]:
    """The rows the index `entries` point to, in index order."""
    keys = [row_key_of_entry(table, index, key, value) for key, value in entries]
    rows = await get_rows(txn, table, keys)
    if len(rows) != len(keys):  # entries and rows change in one transaction: this is a corrupt index
        raise SqlError(f'index "{index.name}" of table "{table.name}" points to {len(keys) - len(rows)} missing rows',
                       "XX002", hint="the index disagrees with its table; please report this as a bug")
    return rows


def new_rowid() -> int:
    """A hidden row id: time-ordered (like CockroachDB's unique_rowid) with random low bits,
    so concurrent inserts from many clients do not collide."""
    return ((time.time_ns() // 1000) << 15 | int.from_bytes(os.urandom(2), "big") >> 1) & ((1 << 63) - 1)


async def write_row(txn, table: TableDescriptor, row: Row, old: Row | None) -> None:
    """Write `row` (replacing `old`, the row at the same or another key, if given) and keep
    every index in step. Raises 23505 on a unique index conflict."""
    if old is not None:
        await delete_row(txn, table, old)
    txn.put(row_key(table, row), encode_row([row[c.name] for c in table.value_columns()],
                                            [c.type for c in table.value_columns()]))
    for index in table.indexes:
        key, value = _index_entry(table, index, row)
        if _enforces_uniqueness(index, row):
            existing = await txn.get(key)
            if existing is not None:
                raise SqlError(f'duplicate key value violates unique constraint "{index.name}"', "23505",
                               hint=f"Key ({', '.join(index.columns)})=({', '.join(repr(row[c]) for c in index.columns)}) "
                                    f"already exists.")
        txn.put(key, value)


async def delete_row(txn, table: TableDescriptor, row: Row) -> None:
    txn.delete(row_key(table, row))
    for index in table.indexes:
        key, _ = _index_entry(table, index, row)
        txn.delete(key)


async def backfill_index(txn, table: TableDescriptor, index: Index) -> int:
    """Write `index`'s entries for every existing row; 23505 if a unique index finds a duplicate."""
    seen: set[bytes] = set()
    rows = await scan_rows(txn, table)
    for row in rows:
        key, value = _index_entry(table, index, row)
        if _enforces_uniqueness(index, row) and key in seen:
            raise SqlError(f'could not create unique index "{index.name}"', "23505",
                           hint=f"Key ({', '.join(index.columns)}) is duplicated.")
        seen.add(key)
        txn.put(key, value)
    return len(rows)


def _enforces_uniqueness(index: Index, row: Row) -> bool:
    """A unique index constrains only rows without NULL in its columns (NULLs are distinct)."""
    return index.unique and all(row[c] is not None for c in index.columns)


def _index_entry(table: TableDescriptor, index: Index, row: Row) -> tuple[bytes, bytes]:
    columns = list(index.columns)
    types = [table.column(c).type for c in columns]
    pk_values = [row[c] for c in table.primary_key]
    if _enforces_uniqueness(index, row):
        key = encode_key(table.table_id, index.index_id, [row[c] for c in columns], types=types)
        return key, encode_row(pk_values, table.key_types())
    key = encode_key(table.table_id, index.index_id, [row[c] for c in columns] + pk_values,
                     types=types + table.key_types())
    return key, b""
