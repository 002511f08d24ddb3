"""The SQL catalog: table descriptors stored in the KV store and changed in transactions, so
every node and client sees the same schema (docs/SQL.md).

Layout (keys from `sql_lite_front.encoding`, system table id 1):
- `/1/1/<table name>` -> a table descriptor (cbor): id, columns, primary key, indexes;
- `/1/2/'next_table_id'` -> the id counter (user tables start at FIRST_TABLE_ID);
- `/1/2/'version'` -> bumped by every DDL, so a session's cached descriptors can be checked.

Every function takes the transaction it runs in (`txn.transaction.Transaction`): a CREATE
TABLE reads and writes the counter and the namespace entry in one transaction, so two
concurrent CREATEs of one name cannot both succeed, and ids are never handed out twice.

A transaction reads each descriptor once: `get_table` keeps what it read (or wrote) per
transaction object, so parse analysis, the planner and the executor share one KV read.

HAZARD: descriptors are read with locking reads, so a DDL conflicts with every transaction
that read the same table's descriptor; that is the point (no statement runs against a schema
that changed under it), and the cost of it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import cbor2

from sql_lite_front.encoding import SqlType, encode_key, key_prefix, prefix_end
from sql_lite_front.errors import SqlError

SYSTEM_TABLE_ID = 1
NAMESPACE_INDEX = 1
COUNTERS_INDEX = 2
FIRST_TABLE_ID = 100
PRIMARY_INDEX_ID = 1
ROWID_COLUMN = "rowid"  # the hidden key of a table declared without a PRIMARY KEY
DESCRIPTOR_FORMAT = 1


@dataclass(frozen=True)
class Column:
    name: str
    type: SqlType
    not_null: bool = False
    default_sql: str | None = None  # the DEFAULT expression, as SQL text
    max_length: int | None = None  # VARCHAR(n) / CHAR(n)
    hidden: bool = False


@dataclass(frozen=True)
class Index:
    index_id: int
    name: str
    columns: tuple[str, ...]
    unique: bool


@dataclass(frozen=True)
class TableDescriptor:
    table_id: int
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[Index, ...] = field(default_factory=tuple)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise SqlError(f'column "{name}" does not exist in table "{self.name}"', "42703")

    def visible_columns(self) -> list[Column]:
        return [c for c in self.columns if not c.hidden]

    def key_types(self) -> list[SqlType]:
        return [self.column(name).type for name in self.primary_key]

    def value_columns(self) -> list[Column]:
        return [c for c in self.columns if c.name not in self.primary_key]

    def next_index_id(self) -> int:
        return max([PRIMARY_INDEX_ID] + [i.index_id for i in self.indexes]) + 1

    def encode(self) -> bytes:
        return cbor2.dumps({
            "format": DESCRIPTOR_FORMAT, "id": self.table_id, "name": self.name,
            "columns": [[c.name, c.type.value, c.not_null, c.default_sql, c.max_length, c.hidden] for c in self.columns],
            "primary_key": list(self.primary_key),
            "indexes": [[i.index_id, i.name, list(i.columns), i.unique] for i in self.indexes],
        })

    @staticmethod
    def decode(raw: bytes) -> "TableDescriptor":
        data = cbor2.loads(raw)
        if not isinstance(data, dict) or data.get("format") != DESCRIPTOR_FORMAT:
            raise ValueError(f"not a table descriptor of format {DESCRIPTOR_FORMAT}")
        columns = tuple(Column(n, SqlType(t), nn, d, ml, h) for n, t, nn, d, ml, h in data["columns"])
        indexes = tuple(Index(i, n, tuple(c), u) for i, n, c, u in data["indexes"])
        return TableDescriptor(data["id"], data["name"], columns, tuple(data["primary_key"]), indexes)


def namespace_key(name: str) -> bytes:
    return encode_key(SYSTEM_TABLE_ID, NAMESPACE_INDEX, [name], types=[SqlType.TEXT])


def counter_key(name: str) -> bytes:
    return encode_key(SYSTEM_TABLE_ID, COUNTERS_INDEX, [name], types=[SqlType.TEXT])


# Descriptors a transaction has read or written, by table name (None: no such table). Within one
# transaction a second read of a descriptor returns what the first did (or the transaction aborts:
# reads are validated at commit), so it is served from here: parse analysis, the planner and the
# executor each look a table up without a KV round trip apiece. Every catalog write goes through
# this module, which keeps the memo in step.
_read_descriptors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _memo(txn) -> dict[str, TableDescriptor | None]:
    try:
        return _read_descriptors.setdefault(txn, {})
    except TypeError:  # a transaction stand-in that cannot be weakly referenced: no memo
        return {}


async def get_table(txn, name: str) -> TableDescriptor | None:
    memo = _memo(txn)
    if name not in memo:
        raw = await txn.get(namespace_key(name))
        memo[name] = None if raw is None else TableDescriptor.decode(raw)
    return memo[name]


def _put_descriptor(txn, table: TableDescriptor) -> None:
    txn.put(namespace_key(table.name), table.encode())
    _memo(txn)[table.name] = table


async def require_table(txn, name: str) -> TableDescriptor:
    table = await get_table(txn, name)
    if table is None:
        raise SqlError(f'relation "{name}" does not exist', "42P01",
                       hint="\\dt lists the tables; CREATE TABLE makes one")
    return table


async def list_tables(txn) -> list[TableDescriptor]:
    prefix = key_prefix(SYSTEM_TABLE_ID, NAMESPACE_INDEX)
    rows = await txn.scan(prefix, prefix_end(prefix))
    return [TableDescriptor.decode(raw) for _, raw in rows]


async def create_table(txn, name: str, columns: list[Column], primary_key: list[str] | None,
                       if_not_exists: bool = False) -> TableDescriptor | None:
    """Create the table; None if it existed and `if_not_exists`."""
    if await get_table(txn, name) is not None:
        if if_not_exists:
            return None
        raise SqlError(f'relation "{name}" already exists', "42P07")
    _check_columns(name, columns, primary_key)
    if not primary_key:
        columns = [Column(ROWID_COLUMN, SqlType.INT, not_null=True, hidden=True)] + list(columns)
        primary_key = [ROWID_COLUMN]
    table = TableDescriptor(await _next_table_id(txn), name, tuple(columns), tuple(primary_key))
    _put_descriptor(txn, table)
    await _bump_version(txn)
    return table


async def drop_table(txn, name: str, if_exists: bool = False) -> TableDescriptor | None:
    """Remove the table's descriptor (its rows are deleted by the caller); None if absent
    and `if_exists`."""
    table = await get_table(txn, name)
    if table is None:
        if if_exists:
            return None
        raise SqlError(f'table "{name}" does not exist', "42P01")
    txn.delete(namespace_key(name))
    _memo(txn)[name] = None
    await _bump_version(txn)
    return table


async def add_index(txn, table: TableDescriptor, name: str, columns: list[str], unique: bool) -> TableDescriptor:
    for existing in await list_tables(txn):
        if any(i.name == name for i in existing.indexes):
            raise SqlError(f'relation "{name}" already exists', "42P07")
    for column in columns:
        table.column(column)  # raises 42703 for an unknown column
    index = Index(table.next_index_id(), name, tuple(columns), unique)
    updated = TableDescriptor(table.table_id, table.name, table.columns, table.primary_key,
                              table.indexes + (index,))
    _put_descriptor(txn, updated)
    await _bump_version(txn)
    return updated


async def schema_version(txn) -> int:
    raw = await txn.get(counter_key("version"))
    return 0 if raw is None else int.from_bytes(raw, "big")


def _check_columns(table: str, columns: list[Column], primary_key: list[str] | None) -> None:
    names = [c.name for c in columns]
    if not names:
        raise SqlError(f'table "{table}" needs at least one column', "42601")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SqlError(f'column "{duplicates[0]}" specified more than once', "42701")
    for key in primary_key or []:
        if key not in names:
            raise SqlError(f'column "{key}" named in key does not exist', "42703")
    if primary_key and len(set(primary_key)) != len(primary_key):
        raise SqlError("a primary key names a column twice", "42701")


async def _next_table_id(txn) -> int:
    key = counter_key("next_table_id")
    raw = await txn.get(key)
    table_id = FIRST_TABLE_ID if raw is None else int.from_bytes(raw, "big")
    txn.put(key, (table_id + 1).to_bytes(8, "big"))
    return table_id


async def _bump_version(txn) -> None:
    version = await schema_version(txn)
    txn.put(counter_key("version"), (version + 1).to_bytes(8, "big"))
