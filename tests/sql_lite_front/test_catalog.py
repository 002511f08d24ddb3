"""sql_lite_front.catalog: table descriptors in the KV store, changed in transactions."""

import pytest
import trio

from sql_lite_front import catalog
from sql_lite_front.catalog import Column
from sql_lite_front.encoding import SqlType
from sql_lite_front.errors import SqlError

COLUMNS = [Column("id", SqlType.INT, not_null=True), Column("name", SqlType.TEXT, max_length=20)]


async def test_create_read_and_drop_a_table(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        async with db.transaction() as txn:
            table = await catalog.create_table(txn, "users", COLUMNS, ["id"])
        assert table.table_id == catalog.FIRST_TABLE_ID and table.primary_key == ("id",)
        async with db.transaction() as txn:
            again = await catalog.require_table(txn, "users")
            assert again == table
            assert [t.name for t in await catalog.list_tables(txn)] == ["users"]
        async with db.transaction() as txn:
            await catalog.drop_table(txn, "users")
        async with db.transaction() as txn:
            with pytest.raises(SqlError) as e:
                await catalog.require_table(txn, "users")
            assert e.value.sqlstate == "42P01"


async def test_table_without_a_key_gets_a_hidden_rowid_and_ids_are_not_reused(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        async with db.transaction() as txn:
            first = await catalog.create_table(txn, "log", [Column("line", SqlType.TEXT)], None)
            second = await catalog.create_table(txn, "other", COLUMNS, ["id"])
        assert first.primary_key == ("rowid",) and first.columns[0].hidden
        assert [c.name for c in first.visible_columns()] == ["line"]
        assert second.table_id == first.table_id + 1
        async with db.transaction() as txn:
            assert await catalog.create_table(txn, "log", COLUMNS, ["id"], if_not_exists=True) is None
            with pytest.raises(SqlError) as e:
                await catalog.create_table(txn, "log", COLUMNS, ["id"])
            assert e.value.sqlstate == "42P07"


async def test_concurrent_creates_of_one_name_cannot_both_succeed(spanlite_cluster):
    outcomes = []
    async with spanlite_cluster.client() as db:
        async def create(column_name):
            async def attempt(txn):
                await catalog.create_table(txn, "t", [Column(column_name, SqlType.INT)], [column_name])
            try:
                await db.run_transaction(attempt)
                outcomes.append("ok")
            except SqlError as e:
                outcomes.append(e.sqlstate)

        async with trio.open_nursery() as nursery:
            for name in ("a", "b", "c"):
                nursery.start_soon(create, name)
        assert sorted(outcomes) == ["42P07", "42P07", "ok"]


async def test_index_names_are_unique_and_columns_must_exist(spanlite_cluster):
    async with spanlite_cluster.client() as db:
        async with db.transaction() as txn:
            table = await catalog.create_table(txn, "users", COLUMNS, ["id"])
            table = await catalog.add_index(txn, table, "users_name", ["name"], unique=True)
        assert table.indexes[0].index_id == 2
        async with db.transaction() as txn:
            with pytest.raises(SqlError) as e:
                await catalog.add_index(txn, table, "users_name", ["name"], unique=False)
            assert e.value.sqlstate == "42P07"
            with pytest.raises(SqlError) as e:
                await catalog.add_index(txn, table, "idx2", ["nope"], unique=False)
            assert e.value.sqlstate == "42703"
