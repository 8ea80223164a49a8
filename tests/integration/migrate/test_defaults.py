"""Defaults and ids after the cut-over: the application's INSERT that leaves a column out stores
on PostgreSQL what it stored on SQLite, and no id SQLite issued comes back."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime.migrate.values import CONVERTERS

pytestmark = pytest.mark.postgres

SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT 0,
    is_active BOOL DEFAULT TRUE,
    currency TEXT DEFAULT 'RUB',
    quote TEXT DEFAULT 'it''s',
    balance DECIMAL(10,2) DEFAULT 0.00,
    fee MONEY DEFAULT '1.50',
    ratio REAL DEFAULT (-0.5),
    level INTEGER DEFAULT '3',
    settings JSON DEFAULT '{}',
    history TEXT DEFAULT '[]',
    note TEXT DEFAULT NULL,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT (datetime('now')),
    day DATE DEFAULT (date('now')),
    seen INTEGER DEFAULT (strftime('%s', 'now')),
    token TEXT DEFAULT (lower(hex(randomblob(16)))),
    local DATETIME DEFAULT (datetime('now', 'localtime'))
);
"""
#: Columns whose default is the time, and how SQLite's value reads as an instant.
CLOCKS = {
    "created_at": CONVERTERS["timestamp with time zone"],
    "updated_at": CONVERTERS["timestamp with time zone"],
    "day": lambda value: datetime.fromisoformat(str(value)).replace(tzinfo=UTC),
    "seen": lambda value: datetime.fromtimestamp(int(value), UTC),
}


def _legacy(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        conn.executemany("INSERT INTO users (name) VALUES (?)", [("ann",), ("bob",), ("cy",)])
        conn.execute("DELETE FROM users WHERE name = 'cy'")  # id 3 is never issued again
    conn.close()


def test_an_insert_leaving_columns_out_stores_what_sqlite_stored(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    source = tmp_path / "bot.sqlite"
    _legacy(source)

    code, report = run_migration(pg_url, {source: "bot"})

    [table] = report["sources"][0]["tables"]
    assert table["verified"] is True
    # No faithful translation: reported (exit 1), the column left without a default.
    assert table["problems"] == {"default_not_migrated:local": 1, "default_not_migrated:token": 1}
    assert code == 1
    with sqlite3.connect(source) as lite:
        lite.execute("INSERT INTO users (name) VALUES ('dee')")
        lite.row_factory = sqlite3.Row
        expected = dict(lite.execute("SELECT * FROM users WHERE name = 'dee'").fetchone())
    lite.close()
    types = {c["source"]: c["type"] for c in table["columns"]}
    with psycopg.connect(pg_url) as conn:
        cursor = conn.execute("INSERT INTO bot.users (name) VALUES ('dee') RETURNING *")
        assert cursor.description is not None
        names = [column.name for column in cursor.description]
        row = cursor.fetchone()
        assert row is not None
        actual = dict(zip(names, row, strict=True))
    assert actual["id"] == expected["id"] == 4
    now = datetime.now(UTC)
    for name, value in actual.items():
        if name in ("token", "local"):
            assert value is None, name
        elif name in CLOCKS:
            instant = value if isinstance(value, datetime) else CLOCKS[name](value)
            if isinstance(value, datetime):
                assert value.microsecond == 0, name  # whole seconds, as SQLite writes them
            assert abs(CLOCKS[name](expected[name]) - instant) < timedelta(seconds=5), name
            assert abs(now - instant) < timedelta(days=1), name
        elif types[name] == "json":  # psycopg parses what it reads; the copy kept the text
            assert value == json.loads(expected[name]), name
        else:
            assert value == CONVERTERS[types[name].split("(")[0]](expected[name]), name
    assert types["is_admin"] == "boolean"
    assert (actual["is_admin"], actual["currency"], actual["quote"]) == (False, "RUB", "it's")
    assert (str(actual["balance"]), actual["level"]) == ("0.00", 3)
