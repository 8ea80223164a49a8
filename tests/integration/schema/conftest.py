"""Introspection of the applied schema on both backends, reduced to one comparable form.

The logical schema of a table: its columns in order (name, normalized type, nullable, identity),
primary key, indexes (explicit ones by name; constraint-backed unique ones by columns, since the
two backends name them differently), foreign keys (columns, target, ON DELETE) and the names of
its CHECK constraints. PostgreSQL is read from pg_catalog, SQLite from its PRAGMAs, independently
of runtime.db, so that the comparison does not trust the code it checks.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime.config import DatabaseSettings, Settings
from runtime.db import Database, async_database, sync_database
from runtime.db.migrations import Applied, upgrade
from runtime.logical_databases import DOMAIN_DATABASES, LOGICAL_DATABASES

# Declared SQLite types and PostgreSQL format_type() names, mapped onto one vocabulary.
SQLITE_TYPES = {
    "INTEGER": "integer",
    "INT": "integer",
    "BIGINT": "bigint",
    "SMALLINT": "smallint",
    "TEXT": "text",
    "TIMESTAMPTZ": "timestamptz",
    "BOOLEAN": "boolean",
    "JSON": "json",
    "JSONB": "json",
    "BLOB": "bytes",
    "BYTEA": "bytes",
}
POSTGRES_TYPES = {
    "integer": "integer",
    "bigint": "bigint",
    "smallint": "smallint",
    "text": "text",
    "timestamp with time zone": "timestamptz",
    "boolean": "boolean",
    "jsonb": "json",
    "json": "json",
    "bytea": "bytes",
}
POSTGRES_ON_DELETE = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    identity: bool


@dataclass(frozen=True, order=True)
class Index:
    # None for a constraint-backed unique index, whose name differs between backends
    name: str | None
    columns: tuple[str, ...]
    unique: bool
    partial: bool


@dataclass(frozen=True, order=True)
class ForeignKey:
    columns: tuple[str, ...]
    target: str
    target_columns: tuple[str, ...]
    on_delete: str


@dataclass
class Table:
    columns: list[Column] = field(default_factory=list)
    primary_key: tuple[str, ...] = ()
    indexes: list[Index] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)


Schema = dict[str, Table]


def introspect_sqlite(path: Path, *, exclude: Iterable[str] = ()) -> Schema:
    conn = sqlite3.connect(path)
    try:
        return _introspect_sqlite(conn, set(exclude))
    finally:
        conn.close()


def _introspect_sqlite(conn: sqlite3.Connection, exclude: set[str]) -> Schema:
    schema: Schema = {}
    tables = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for name, create_sql in tables:
        if name in exclude:
            continue
        table = Table()
        info = conn.execute(f'PRAGMA table_info("{name}")').fetchall()
        pk_columns = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5]]
        autoincrement = re.search(r"\bAUTOINCREMENT\b", create_sql, re.IGNORECASE) is not None
        for _cid, column, declared, notnull, _default, pk in info:
            declared = declared.upper()
            first_word = declared.split("(")[0].split()[0] if declared else ""
            # INTEGER PRIMARY KEY is the 64-bit rowid; with AUTOINCREMENT it is the {{id}} token.
            rowid_alias = pk and len(pk_columns) == 1 and first_word == "INTEGER"
            normalized = SQLITE_TYPES.get(first_word, f"sqlite:{declared}")
            table.columns.append(
                Column(
                    name=column,
                    type="bigint" if rowid_alias else normalized,
                    nullable=not (notnull or pk),
                    identity=bool(rowid_alias and autoincrement),
                )
            )
        table.primary_key = tuple(pk_columns)
        for _seq, index, unique, origin, partial in conn.execute(
            f'PRAGMA index_list("{name}")'
        ).fetchall():
            if origin == "pk":
                continue
            columns = tuple(
                column if column is not None else "<expression>"
                for _seqno, _cid, column in conn.execute(f'PRAGMA index_info("{index}")')
            )
            table.indexes.append(
                Index(
                    name=None if origin == "u" else index,
                    columns=columns,
                    unique=bool(unique),
                    partial=bool(partial),
                )
            )
        keys: dict[int, list[Any]] = {}
        for fk_id, _seq, target, source, target_column, _upd, on_delete, _match in conn.execute(
            f'PRAGMA foreign_key_list("{name}")'
        ).fetchall():
            keys.setdefault(fk_id, [target, [], [], on_delete.upper()])
            keys[fk_id][1].append(source)
            keys[fk_id][2].append(target_column)
        for target, sources, target_columns, on_delete in keys.values():
            table.foreign_keys.append(
                ForeignKey(tuple(sources), target, tuple(target_columns), on_delete)
            )
        without_comments = re.sub(r"--[^\n]*", "", create_sql)
        table.checks = re.findall(
            r"\bCONSTRAINT\s+(\w+)\s+CHECK\b", without_comments, re.IGNORECASE
        )
        schema[name] = _sorted(table)
    return schema


_PG_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.attidentity <> ''
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""
_PG_INDEXES = """
SELECT t.relname, i.relname, ix.indisunique, ix.indisprimary, ix.indpred IS NOT NULL,
       ARRAY(SELECT coalesce(a.attname, '<expression>')
             FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
             ORDER BY k.ord),
       EXISTS (SELECT 1 FROM pg_constraint con
               WHERE con.conindid = ix.indexrelid AND con.conrelid = t.oid
                 AND con.contype IN ('u', 'p'))
FROM pg_index ix
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %s
"""
_PG_CONSTRAINTS = """
SELECT t.relname, con.conname, con.contype, con.confdeltype, rt.relname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord)
FROM pg_constraint con
JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_class rt ON rt.oid = con.confrelid
WHERE n.nspname = %s AND con.contype IN ('p', 'f', 'c')
"""


def introspect_postgres(url: str, pg_schema: str, *, exclude: Iterable[str] = ()) -> Schema:
    excluded = set(exclude)
    schema: Schema = {}
    with psycopg.connect(url) as conn:
        for table_name, column, type_name, notnull, identity in conn.execute(
            _PG_COLUMNS, (pg_schema,)
        ):
            if table_name in excluded:
                continue
            table = schema.setdefault(table_name, Table())
            table.columns.append(
                Column(
                    name=column,
                    type=POSTGRES_TYPES.get(type_name, f"pg:{type_name}"),
                    nullable=not notnull,
                    identity=identity,
                )
            )
        for table_name, index, unique, primary, partial, columns, backs_constraint in conn.execute(
            _PG_INDEXES, (pg_schema,)
        ):
            if table_name in excluded or primary:
                continue
            schema[table_name].indexes.append(
                Index(
                    name=None if backs_constraint else index,
                    columns=tuple(columns),
                    unique=unique,
                    partial=partial,
                )
            )
        for table_name, name, kind, on_delete, target, columns, target_columns in conn.execute(
            _PG_CONSTRAINTS, (pg_schema,)
        ):
            if table_name in excluded:
                continue
            table = schema[table_name]
            if kind == "p":
                table.primary_key = tuple(columns)
            elif kind == "f":
                table.foreign_keys.append(
                    ForeignKey(
                        tuple(columns),
                        target,
                        tuple(target_columns),
                        POSTGRES_ON_DELETE[on_delete],
                    )
                )
            else:
                table.checks.append(name)
    return {name: _sorted(table) for name, table in schema.items()}


def _sorted(table: Table) -> Table:
    table.indexes.sort(key=lambda index: (index.name or "", index.columns))
    table.foreign_keys.sort()
    table.checks.sort()
    return table


def schema_differences(sqlite: Schema, postgres: Schema) -> list[str]:
    """Human-readable differences; empty when both backends have the same logical schema."""
    problems: list[str] = []
    for name in sorted(sqlite.keys() - postgres.keys()):
        problems.append(f"table {name}: only on SQLite")
    for name in sorted(postgres.keys() - sqlite.keys()):
        problems.append(f"table {name}: only on PostgreSQL")
    for name in sorted(sqlite.keys() & postgres.keys()):
        left, right = sqlite[name], postgres[name]
        left_columns = {column.name: column for column in left.columns}
        right_columns = {column.name: column for column in right.columns}
        for column in left_columns.keys() - right_columns.keys():
            problems.append(f"column {name}.{column}: only on SQLite")
        for column in right_columns.keys() - left_columns.keys():
            problems.append(f"column {name}.{column}: only on PostgreSQL")
        for column in left_columns.keys() & right_columns.keys():
            if left_columns[column] != right_columns[column]:
                problems.append(
                    f"column {name}.{column}: SQLite {left_columns[column]}"
                    f" != PostgreSQL {right_columns[column]}"
                )
        common = left_columns.keys() & right_columns.keys()
        left_order = [column.name for column in left.columns if column.name in common]
        right_order = [column.name for column in right.columns if column.name in common]
        if left_order != right_order:
            problems.append(f"table {name}: column order differs")
        for aspect in ("primary_key", "indexes", "foreign_keys", "checks"):
            left_value, right_value = getattr(left, aspect), getattr(right, aspect)
            if left_value != right_value:
                problems.append(
                    f"table {name}: {aspect} differ: SQLite {left_value}"
                    f" != PostgreSQL {right_value}"
                )
    return problems


class SchemaTools:
    """The introspection functions, handed to tests by a fixture (conftest is not importable)."""

    sqlite = staticmethod(introspect_sqlite)
    postgres = staticmethod(introspect_postgres)
    differences = staticmethod(schema_differences)


@pytest.fixture
def schema_tools() -> type[SchemaTools]:
    return SchemaTools


# --- migrated databases on each backend -------------------------------------------------------


def backend_settings(backend: str, data_dir: Path, pg_url: str | None = None) -> DatabaseSettings:
    environ = {"DB_TYPE": backend, "DOMOS_DATA_DIR": str(data_dir)}
    if pg_url is not None:
        environ["DATABASE_URL"] = pg_url
    return Settings.from_env(environ).db


def upgrade_all(settings: DatabaseSettings) -> list[Applied]:
    """`domos db upgrade` in-process: every domain database, through the runner."""

    async def run() -> list[Applied]:
        async with async_database(settings) as db:
            return await upgrade(db)

    return asyncio.run(run())


@dataclass(frozen=True)
class MigratedPair:
    """The same migrations applied on a fresh SQLite data dir and a fresh PostgreSQL database."""

    sqlite: DatabaseSettings
    postgres_url: str

    def sqlite_schema(self, pg_schema: str) -> Schema:
        """The SQLite files that share `pg_schema`, merged as PostgreSQL merges them."""
        merged: Schema = {}
        for logical_db in DOMAIN_DATABASES:
            if LOGICAL_DATABASES[logical_db].pg_schema == pg_schema:
                merged.update(introspect_sqlite(self.sqlite.sqlite_path(logical_db)))
        return merged

    def postgres_schema(self, pg_schema: str) -> Schema:
        return introspect_postgres(self.postgres_url, pg_schema)


@pytest.fixture(scope="module")
def migrated_pair(
    tmp_path_factory: pytest.TempPathFactory, make_pg_database: Callable[..., str]
) -> MigratedPair:
    sqlite = backend_settings("sqlite", tmp_path_factory.mktemp("parity") / "data")
    postgres_url = make_pg_database()
    upgrade_all(sqlite)
    upgrade_all(backend_settings("postgres", Path("unused"), postgres_url))
    return MigratedPair(sqlite, postgres_url)


@pytest.fixture(scope="module")
def migrated_pg_url(make_pg_database: Callable[..., str]) -> str:
    """One migrated PostgreSQL database per module; tests empty it rather than recreate it."""
    url = make_pg_database()
    upgrade_all(backend_settings("postgres", Path("unused"), url))
    return url


def empty_domain_tables(url: str) -> None:
    """DELETE rather than TRUNCATE: for a few rows it skips creating new relation files (fsync),
    which is what makes TRUNCATE slow on a busy server. Triggers (hence foreign keys) are off."""
    schemas = sorted({LOGICAL_DATABASES[name].pg_schema for name in DOMAIN_DATABASES})
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables"
            " WHERE schemaname = ANY(%s) AND tablename <> 'schema_migrations'",
            (schemas,),
        ).fetchall()
        conn.execute("SET LOCAL session_replication_role = replica")
        for (table,) in tables:
            conn.execute(f"DELETE FROM {table}")


@pytest.fixture(scope="module")
def migrated_sqlite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir migrated once per module; tests take a copy (all connections are closed, so
    the files are complete without their WAL)."""
    data_dir = tmp_path_factory.mktemp("template") / "data"
    upgrade_all(backend_settings("sqlite", data_dir))
    return data_dir


@pytest.fixture(params=["sqlite", "postgres"])
def migrated_db(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_pg_url: str, migrated_sqlite_dir: Path
) -> Iterator[Database]:
    """A `Database` on a fully migrated, empty schema: fresh SQLite files, or the module's
    PostgreSQL database emptied."""
    if request.param == "postgres":
        empty_domain_tables(migrated_pg_url)
        settings = backend_settings("postgres", tmp_path, migrated_pg_url)
    else:
        shutil.copytree(migrated_sqlite_dir, tmp_path / "data")
        settings = backend_settings("sqlite", tmp_path / "data")
    with sync_database(settings) as db:
        yield db
