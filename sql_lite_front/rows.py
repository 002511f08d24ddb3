"""Table rows and index entries in the KV store, read and written inside a transaction.

Primary index (id 1): key `/table_id/1/pk...` -> `encode_row(non-key columns)`.
Secondary index i: unique: `/table_id/i/cols...` -> `encode_row(pk)`; non-unique:
`/table_id/i/cols.../pk...` -> b"". Index entries change in the same transaction as the row
(`write_row`, `delete_row`), so an index never disagrees with its table.

HAZARD: a unique index holds one entry per value, NULL included, so two rows with NULL in a
unique column conflict here, where PostgreSQL would allow them (NULLs are distinct there).
"""

from __future__ import annotations

import os
import time

from sql_lite_front.catalog import PRIMARY_INDEX_ID, Index, TableDescriptor
from sql_lite_front.encoding import decode_key, decode_row, encode_key, encode_row, key_prefix, prefix_end
from sql_lite_front.errors import SqlError

Row = dict[str, object]  # column name -> value


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
        if index.unique:
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
        if index.unique and key in seen:
            raise SqlError(f'could not create unique index "{index.name}"', "23505",
                           hint=f"Key ({', '.join(index.columns)}) is duplicated.")
        seen.add(key)
        txn.put(key, value)
    return len(rows)


def _index_entry(table: TableDescriptor, index: Index, row: Row) -> tuple[bytes, bytes]:
    columns = list(index.columns)
    types = [table.column(c).type for c in columns]
    pk_values = [row[c] for c in table.primary_key]
    if index.unique:
        key = encode_key(table.table_id, index.index_id, [row[c] for c in columns], types=types)
        return key, encode_row(pk_values, table.key_types())
    key = encode_key(table.table_id, index.index_id, [row[c] for c in columns] + pk_values,
                     types=types + table.key_types())
    return key, b""
