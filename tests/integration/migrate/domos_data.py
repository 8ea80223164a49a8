"""Domos' own SQLite files, created by `upgrade()` and filled with generated rows.

Rows are written through the DB layer (`Database` on SQLite), so every value is stored exactly as
the runtime stores it (ISO-8601 UTC text timestamps, 0/1 booleans, JSON text). The generator reads
each table's shape from SQLite (columns, declared types, foreign keys, the `IN (...)` lists of its
CHECK constraints) instead of knowing the schema, so new tables are filled without editing it; a
candidate row that a CHECK or UNIQUE constraint refuses is drawn again.
"""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runtime.config import Settings
from runtime.db import Database, async_database, sync_database
from runtime.db.migrations import upgrade
from runtime.errors import IntegrityError
from runtime.logical_databases import DOMAIN_DATABASES

#: Texts that trip naive converters: quotes, COPY escapes, newlines, Cyrillic, emoji, long text.
AWKWARD_TEXTS = (
    "квартира у метро, 3 мин пешком",
    'O\'Brien said "hi"',
    "tab\tand\nnewline\r\n",
    "back\\slash \\N \\.",
    "🏠 ЖК «Солнечный» — 2к",
    "",
    " leading and trailing ",
    "x" * 5000,
)
_ENUM = re.compile(r"\b(\w+)\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_START = datetime(2023, 1, 1, tzinfo=UTC)


def upgrade_sqlite(data_dir: Path) -> dict[str, str]:
    """Create the schema of the seven domain databases in `data_dir`; returns the environment."""
    environ = {"DB_TYPE": "sqlite", "DOMOS_DATA_DIR": str(data_dir)}

    async def run() -> None:
        async with async_database(Settings.from_env(environ)) as db:
            await upgrade(db)

    asyncio.run(run())
    return environ


def _tables(path: Path) -> list[str]:
    """Tables in foreign-key order (parents first); the migration bookkeeping left out."""
    with closing(sqlite3.connect(path)) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                " AND name <> 'schema_migrations' ORDER BY name"
            )
        ]
        parents = {
            name: {row[2] for row in conn.execute(f'PRAGMA foreign_key_list("{name}")')} - {name}
            for name in names
        }
    ordered: list[str] = []
    while len(ordered) < len(names):
        for name in names:
            if name not in ordered and parents[name] <= set(ordered):
                ordered.append(name)
    return ordered


class _TableShape:
    def __init__(self, conn: sqlite3.Connection, table: str) -> None:
        self.table = table
        self.columns = [
            (row[1], (row[2] or "").upper(), bool(row[3]), row[4] is not None, row[5] > 0)
            for row in conn.execute(f'PRAGMA table_info("{table}")')
        ]
        self.parents = {
            row[3]: row[2] for row in conn.execute(f'PRAGMA foreign_key_list("{table}")')
        }
        sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()[0]
        self.enums: dict[str, list[str]] = {}
        for column, body in _ENUM.findall(sql):
            values = [v.replace("''", "'") for v in _LITERAL.findall(body)]
            if values:
                self.enums.setdefault(column, []).extend(values)


class _Generator:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ids: dict[tuple[str, str], list[int]] = {}

    def value(self, shape: _TableShape, logical_db: str, column: tuple[Any, ...]) -> Any:
        name, declared, not_null, _has_default, _pk = column
        rng = self.rng
        if name in shape.parents:
            parent_ids = self.ids.get((logical_db, shape.parents[name]), [])
            if not not_null and (not parent_ids or rng.random() < 0.2):
                return None
            return rng.choice(parent_ids)
        if not not_null and rng.random() < 0.3:
            return None
        if name in shape.enums:
            return rng.choice(shape.enums[name])
        if declared.startswith("TIMESTAMPTZ"):
            return _START + timedelta(
                seconds=rng.randint(0, 3 * 365 * 86400), microseconds=rng.randint(0, 999_999)
            )
        if declared.startswith("BOOLEAN"):
            return rng.random() < 0.5
        if declared.startswith("JSON"):
            return rng.choice(
                (
                    {"source": "generated", "n": rng.randint(0, 10**6), "ok": True},
                    ["hashtag:#ипотека", "link", {"weight": 1.5}],
                    {"nested": {"text": rng.choice(AWKWARD_TEXTS[:5]), "none": None}},
                )
            )
        if declared == "BIGINT":
            return rng.randint(1, 10**12) if rng.random() < 0.9 else -rng.randint(1, 10**13)
        if declared == "INTEGER":
            return rng.randint(0, 12)
        return self.text(name)

    def text(self, name: str) -> str:
        rng = self.rng
        if name == "month":
            return f"{rng.randint(2023, 2026)}-{rng.randint(1, 12):02d}"
        if name == "currency":
            return rng.choice(("RUB", "USD"))
        if name.endswith("hash") or name == "sha256":
            return f"{rng.getrandbits(256):064x}"
        if name == "card_last4":
            return f"{rng.randint(0, 9999):04d}"
        if rng.random() < 0.4:
            return rng.choice(AWKWARD_TEXTS) + f" #{rng.randint(0, 10**9)}"
        return f"{name}-{rng.randint(0, 10**9)}"


def fill(
    environ: Mapping[str, str], rows_per_table: int | Mapping[str, int], *, seed: int = 6
) -> dict[str, int]:
    """Insert generated rows into every domain table; returns rows per `logical_db.table`.

    Ids are given explicitly with gaps, so a sequence that only counted rows would collide.
    """
    settings = Settings.from_env(environ)
    generator = _Generator(random.Random(seed))
    counts: dict[str, int] = {}
    with sync_database(settings) as db:
        for logical_db in DOMAIN_DATABASES:
            path = settings.db.sqlite_path(logical_db)
            with closing(sqlite3.connect(path)) as conn:
                shapes = [_TableShape(conn, table) for table in _tables(path)]
            for shape in shapes:
                wanted = (
                    rows_per_table
                    if isinstance(rows_per_table, int)
                    else rows_per_table.get(shape.table, 20)
                )
                counts[f"{logical_db}.{shape.table}"] = _fill_table(
                    db, generator, logical_db, shape, wanted
                )
    return counts


def _fill_table(
    db: Database, generator: _Generator, logical_db: str, shape: _TableShape, wanted: int
) -> int:
    columns = [c for c in shape.columns if c[0] != "id"]
    names = ", ".join(["id", *(c[0] for c in columns)])
    marks = ", ".join("?" * (len(columns) + 1))
    sql = f"INSERT INTO {shape.table} ({names}) VALUES ({marks})"
    ids = generator.ids.setdefault((logical_db, shape.table), [])
    next_id = 0
    failures = 0
    while len(ids) < wanted and failures < wanted * 50:
        candidate_id = next_id + generator.rng.randint(1, 3)
        row = (candidate_id, *(generator.value(shape, logical_db, c) for c in columns))
        try:
            db.execute(sql, row, db=logical_db)
        except IntegrityError:
            failures += 1
            continue
        ids.append(candidate_id)
        next_id = candidate_id
    return len(ids)
