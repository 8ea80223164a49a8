"""One pooled connection serves every call in turn: what a call leaves behind (its schema, a
failed or cancelled statement, a result) never reaches the next one.

PostgreSQL's one-statement calls take a connection straight from the pool and reuse one cursor
on it (runtime/db/postgres.py); with a pool of one, every call below runs on the same
connection, or on its replacement.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from runtime.config import Settings
from runtime.db import async_database
from runtime.errors import QueryError, UniqueViolation
from tests.conftest import database_environ
from tests.integration.db.helpers import ITEMS, create


def one_connection(database_settings: Any) -> Any:
    """A database whose pool holds one connection (opened and closed by `async with`)."""
    return async_database(dataclasses.replace(database_settings, pool_min_size=1, pool_max_size=1))


@pytest.fixture
async def one_connection_db(database_settings: Any) -> AsyncIterator[Any]:
    async with one_connection(database_settings) as db:
        yield db


async def test_calls_in_turn_see_their_own_schema_and_results(one_connection_db: Any) -> None:
    db = one_connection_db
    await create(db, ITEMS, logical_db="main")
    await create(db, ITEMS, logical_db="advert")
    for i in range(3):
        assert await db.execute("INSERT INTO items (k, n) VALUES (?, ?)", (f"m{i}", i)) == 1
        await db.execute("INSERT INTO items (k, n) VALUES (?, ?)", (f"a{i}", 10 + i), db="advert")
    assert await db.fetchval("SELECT sum(n) FROM items") == 3
    assert await db.fetchval("SELECT sum(n) FROM items", db="advert") == 33
    # A row read in full, then a statement without rows, then a row again.
    first = await db.fetchone("SELECT k, n FROM items WHERE k = ?", ("m2",))
    assert first == {"k": "m2", "n": 2}
    assert await db.execute("UPDATE items SET n = n + 1 WHERE k LIKE ?", ("a%",)) == 0
    assert await db.execute("UPDATE items SET n = n + 1 WHERE k LIKE ?", ("a%",), db="advert") == 3
    assert await db.fetchone("SELECT k FROM items WHERE k = ?", ("none",)) is None
    assert await db.fetchall("SELECT k, n FROM items ORDER BY k", db="advert") == [
        {"k": "a0", "n": 11},
        {"k": "a1", "n": 12},
        {"k": "a2", "n": 13},
    ]


async def test_a_failed_statement_leaves_the_connection_usable(one_connection_db: Any) -> None:
    db = one_connection_db
    await create(db, ITEMS)
    await db.execute("INSERT INTO items (k) VALUES (?)", ("x",))
    with pytest.raises(UniqueViolation):
        await db.execute("INSERT INTO items (k) VALUES (?)", ("x",))
    with pytest.raises(QueryError):
        await db.fetchone("SELECT no_such_column FROM items")
    assert await db.fetchone("SELECT k FROM items") == {"k": "x"}
    assert await db.execute("INSERT INTO items (k) VALUES (?)", ("y",)) == 1


@pytest.mark.postgres
async def test_a_cancelled_statement_does_not_reach_the_next_call(
    pg_domos_url: str, tmp_path: Path
) -> None:
    """PostgreSQL only: SQLite runs a statement to its end in its thread, nothing is cut off."""
    settings = Settings.from_env(database_environ("postgres", str(tmp_path), pg_domos_url)).db
    async with one_connection(settings) as db:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(db.fetchone("SELECT pg_sleep(5), 1 AS late"), 0.3)
        # The interrupted connection is discarded, not handed on with its answer still to come.
        row = await asyncio.wait_for(db.fetchone("SELECT 2 AS next"), 10)
        assert row == {"next": 2}
