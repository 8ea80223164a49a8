"""The facade's calls behave the same on SQLite and PostgreSQL (async and sync)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from runtime.db import async_database
from runtime.errors import (
    CheckViolation,
    ForeignKeyViolation,
    NotNullViolation,
    QueryError,
    UniqueViolation,
)
from tests.integration.db.helpers import ITEMS, create, create_sync

AT = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


async def test_execute_fetch_and_rowcounts(async_db: Any) -> None:
    await create(async_db, ITEMS)
    assert await async_db.execute("INSERT INTO items (k, n) VALUES (?, ?)", ("a", 1)) == 1
    inserted = await async_db.executemany(
        "INSERT INTO items (k, n) VALUES (?, ?)", [("b", 2), ("c", 3)]
    )
    assert inserted == 2
    assert await async_db.fetchval("SELECT count(*) FROM items") == 3
    row = await async_db.fetchone("SELECT k, n FROM items WHERE k = ?", ("b",))
    assert row == {"k": "b", "n": 2}
    assert await async_db.fetchone("SELECT k FROM items WHERE k = ?", ("zz",)) is None
    assert await async_db.fetchval("SELECT k FROM items WHERE k = ?", ("zz",)) is None
    rows = await async_db.fetchall("SELECT k FROM items WHERE n >= ? ORDER BY k", (2,))
    assert rows == [{"k": "b"}, {"k": "c"}]
    assert await async_db.execute("UPDATE items SET n = n + 10 WHERE n < ?", (3,)) == 2


async def test_types_round_trip_identically(async_db: Any) -> None:
    await create(async_db, ITEMS)
    payload = {"name": "квартира", "rooms": [1, 2], "price": 12345678901234567, "ok": True}
    moscow = timezone(timedelta(hours=3))
    await async_db.execute(
        "INSERT INTO items (k, flag, payload, blob, at) VALUES (?, ?, ?, ?, ?)",
        ("x", True, payload, b"\x00\xffbin", AT.astimezone(moscow)),
    )
    await async_db.execute("INSERT INTO items (k, payload) VALUES (?, ?)", ("y", [1, "two"]))
    row = await async_db.fetchone("SELECT * FROM items WHERE k = ?", ("x",))
    assert row is not None
    assert row["flag"] is True
    assert row["payload"] == payload
    assert row["blob"] == b"\x00\xffbin"
    assert row["at"] == AT
    assert row["at"].utcoffset() == timedelta(0)
    created = row["created_at"]
    assert isinstance(created, datetime)
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    other = await async_db.fetchone("SELECT flag, payload, at FROM items WHERE k = ?", ("y",))
    assert other == {"flag": False, "payload": [1, "two"], "at": None}
    # Timestamps compare in SQL as times on both backends (fixed-width text on SQLite).
    later = await async_db.fetchval(
        "SELECT count(*) FROM items WHERE at > ?", (AT - timedelta(microseconds=1),)
    )
    assert later == 1
    assert await async_db.fetchval("SELECT count(*) FROM items WHERE flag = ?", (True,)) == 1


async def test_transaction_commits_and_rolls_back(async_db: Any) -> None:
    await create(async_db, ITEMS)
    async with async_db.transaction() as tx:
        await tx.execute("INSERT INTO items (k) VALUES (?)", ("kept",))
        assert await tx.fetchval("SELECT count(*) FROM items") == 1

    async def insert_then(key: str, failure: BaseException | None, duplicate: str | None) -> None:
        async with async_db.transaction() as tx:
            await tx.execute("INSERT INTO items (k) VALUES (?)", (key,))
            if duplicate is not None:
                await tx.execute("INSERT INTO items (k) VALUES (?)", (duplicate,))
            if failure is not None:
                raise failure

    with pytest.raises(ZeroDivisionError):
        await insert_then("lost", ZeroDivisionError(), None)
    with pytest.raises(UniqueViolation):
        await insert_then("also lost", None, "kept")
    rows = await async_db.fetchall("SELECT k FROM items ORDER BY k")
    assert rows == [{"k": "kept"}]


async def test_errors_are_translated(async_db: Any) -> None:
    await create(async_db, ITEMS)
    await async_db.execute("INSERT INTO items (k) VALUES (?)", ("secret-value",))
    with pytest.raises(UniqueViolation) as unique:
        await async_db.execute("INSERT INTO items (k) VALUES (?)", ("secret-value",))
    assert "secret-value" not in str(unique.value)
    assert unique.value.__cause__ is not None
    with pytest.raises(ForeignKeyViolation):
        await async_db.execute("INSERT INTO children (item_id) VALUES (?)", (424242,))
    with pytest.raises(NotNullViolation):
        await async_db.execute("INSERT INTO items (k) VALUES (?)", (None,))
    with pytest.raises(CheckViolation):
        await async_db.execute("INSERT INTO items (k, n) VALUES (?, ?)", ("neg", -1))
    with pytest.raises(QueryError):
        await async_db.fetchall("SELECT * FROM no_such_table")
    with pytest.raises(QueryError):
        await async_db.fetchall("SELEC nonsense")
    with pytest.raises(QueryError):
        await async_db.fetchall("SELECT ?, ?", (1,))
    with pytest.raises(QueryError):
        await async_db.fetchall("SELECT 1", db="no_such_logical_db")
    # The pool is still healthy after all of that.
    assert await async_db.fetchval("SELECT count(*) FROM items") == 1


async def test_logical_databases_are_separate(async_db: Any) -> None:
    await create(async_db, ITEMS, logical_db="main")
    await create(async_db, ITEMS, logical_db="advert")
    await async_db.execute("INSERT INTO items (k) VALUES (?)", ("main-only",), db="main")
    assert await async_db.fetchval("SELECT count(*) FROM items", db="advert") == 0
    assert await async_db.fetchval("SELECT count(*) FROM items", db="main") == 1
    async with async_db.transaction(db="advert") as tx:
        await tx.execute("INSERT INTO items (k) VALUES (?)", ("advert-only",))
    assert await async_db.fetchval("SELECT k FROM items", db="advert") == "advert-only"
    assert await async_db.fetchval("SELECT count(*) FROM items", db="main") == 1


async def test_placeholders_inside_literals_are_left_alone(async_db: Any) -> None:
    value = await async_db.fetchval("SELECT 'it''s ? 100%' || ? AS v -- trailing ? comment", ("!",))
    assert value == "it's ? 100%!"


async def test_iterate_streams_in_batches(async_db: Any) -> None:
    await create(async_db, ITEMS)
    await async_db.executemany(
        "INSERT INTO items (k, n) VALUES (?, ?)", [(f"k{i:04d}", i) for i in range(1234)]
    )
    seen = [
        row["n"] async for row in async_db.iterate("SELECT n FROM items ORDER BY n", batch_size=100)
    ]
    assert seen == list(range(1234))
    async with async_db.transaction() as tx:
        partial = []
        async for row in tx.iterate("SELECT n FROM items WHERE n < ? ORDER BY n", (5,)):
            partial.append(row["n"])
    assert partial == [0, 1, 2, 3, 4]


async def test_closed_database_refuses_calls(database_settings: Any) -> None:
    from runtime.errors import DatabaseUnavailable

    db = async_database(database_settings)
    with pytest.raises(DatabaseUnavailable):
        await db.fetchval("SELECT 1")
    async with db:
        assert await db.fetchval("SELECT 1") == 1
    with pytest.raises(DatabaseUnavailable):
        await db.fetchval("SELECT 1")


def test_sync_facade_same_behaviour(sync_db: Any) -> None:
    create_sync(sync_db, ITEMS)
    assert sync_db.execute("INSERT INTO items (k, flag, at) VALUES (?, ?, ?)", ("a", True, AT)) == 1
    assert sync_db.executemany("INSERT INTO items (k) VALUES (?)", [("b",), ("c",)]) == 2
    assert sync_db.fetchone("SELECT k, flag, at FROM items WHERE k = ?", ("a",)) == {
        "k": "a",
        "flag": True,
        "at": AT,
    }
    with sync_db.transaction() as tx:
        tx.execute("UPDATE items SET n = ? WHERE k = ?", (5, "b"))
        assert tx.fetchval("SELECT n FROM items WHERE k = ?", ("b",)) == 5

    def update_then_duplicate() -> None:
        with sync_db.transaction() as tx:
            tx.execute("UPDATE items SET n = ? WHERE k = ?", (7, "c"))
            tx.execute("INSERT INTO items (k) VALUES (?)", ("a",))

    with pytest.raises(UniqueViolation):
        update_then_duplicate()
    assert sync_db.fetchval("SELECT n FROM items WHERE k = ?", ("c",)) == 0
    assert [r["k"] for r in sync_db.iterate("SELECT k FROM items ORDER BY k", batch_size=2)] == [
        "a",
        "b",
        "c",
    ]
    assert sync_db.stats()["dialect"] == sync_db.dialect
