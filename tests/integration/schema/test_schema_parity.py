"""The same migrations give the same logical schema on SQLite and PostgreSQL.

Both sides are read from their catalogs (see conftest): tables, columns with normalized types,
nullability and identity, primary keys, unique constraints and indexes, foreign keys with their
ON DELETE, and CHECK constraint names. The negative tests change one side and prove the
comparison notices, then undo the change and prove it is clean again.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime.logical_databases import DOMAIN_DATABASES, LOGICAL_DATABASES

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "runtime" / "schema"
PG_SCHEMAS = sorted({LOGICAL_DATABASES[name].pg_schema for name in DOMAIN_DATABASES})


def declared_tables(pg_schema: str) -> set[str]:
    """Table names the migration files of `pg_schema` create, read from the SQL text."""
    names = {"schema_migrations"}
    for logical_db in DOMAIN_DATABASES:
        if LOGICAL_DATABASES[logical_db].pg_schema != pg_schema:
            continue
        for path in (SCHEMA_DIR / logical_db).glob("*.sql"):
            names.update(re.findall(r"CREATE TABLE (\w+)", path.read_text()))
    return names


@pytest.mark.parametrize("pg_schema", PG_SCHEMAS)
def test_both_backends_have_the_same_logical_schema(
    migrated_pair: Any, schema_tools: Any, pg_schema: str
) -> None:
    sqlite = migrated_pair.sqlite_schema(pg_schema)
    postgres = migrated_pair.postgres_schema(pg_schema)
    # Not vacuous: every table the files declare is there, with its columns and constraints.
    assert set(sqlite) == declared_tables(pg_schema)
    assert all(table.columns and table.primary_key for table in postgres.values())
    assert schema_tools.differences(sqlite, postgres) == []


def test_comparison_sees_keys_and_checks(migrated_pair: Any) -> None:
    """Spot checks that the introspection reads what matters, on both sides."""
    for schema in (migrated_pair.sqlite_schema("main"), migrated_pair.postgres_schema("main")):
        users = schema["users"]
        assert users.primary_key == ("id",)
        assert users.columns[0].identity
        assert users.columns[0].type == "bigint"
        assert any(i.unique and i.columns == ("telegram_id",) for i in users.indexes)
        attempts = schema["charge_attempts"]
        assert any(
            i.name == "charge_attempts_one_live_per_period_idx" and i.unique and i.partial
            for i in attempts.indexes
        )
        payments = schema["payments"]
        to_users = [fk for fk in payments.foreign_keys if fk.target == "users"]
        assert [fk.on_delete for fk in to_users] == ["NO ACTION"]
        assert "payments_status_check" in payments.checks
        columns = {column.name: column for column in payments.columns}
        assert columns["created_at"].type == "timestamptz"
        assert columns["metadata"].type == "json"
        assert columns["save_payment_method"].type == "boolean"
        assert columns["provider_payment_id"].nullable
        assert not columns["idempotence_key"].nullable


@contextmanager
def on_sqlite(pair: Any, logical_db: str, do: str, undo: str) -> Iterator[None]:
    conn = sqlite3.connect(pair.sqlite.sqlite_path(logical_db))
    try:
        conn.execute(do)
        conn.commit()
        yield
    finally:
        conn.execute(undo)
        conn.commit()
        conn.close()


@contextmanager
def on_postgres(pair: Any, do: str, undo: str) -> Iterator[None]:
    with psycopg.connect(pair.postgres_url, autocommit=True) as conn:
        conn.execute(do)
        try:
            yield
        finally:
            conn.execute(undo)


Change = Callable[[Any], AbstractContextManager[None]]

NEGATIVE_CASES = [
    pytest.param(
        "main",
        lambda pair: on_sqlite(
            pair, "main", "ALTER TABLE users ADD COLUMN extra TEXT", "ALTER TABLE users DROP extra"
        ),
        "column users.extra: only on SQLite",
        id="column-only-on-sqlite",
    ),
    pytest.param(
        "main",
        lambda pair: on_postgres(
            pair,
            "ALTER TABLE main.users ADD COLUMN extra TEXT",
            "ALTER TABLE main.users DROP COLUMN extra",
        ),
        "column users.extra: only on PostgreSQL",
        id="column-only-on-postgres",
    ),
    pytest.param(
        "bot",
        lambda pair: on_postgres(
            pair,
            "ALTER TABLE bot.audio_files ALTER COLUMN file_id DROP NOT NULL",
            "ALTER TABLE bot.audio_files ALTER COLUMN file_id SET NOT NULL",
        ),
        "column audio_files.file_id: SQLite",
        id="nullability",
    ),
    pytest.param(
        "main",
        lambda pair: on_postgres(
            pair,
            "ALTER TABLE main.outbox ALTER COLUMN chat_id TYPE integer",
            "ALTER TABLE main.outbox ALTER COLUMN chat_id TYPE bigint",
        ),
        "column outbox.chat_id: SQLite",
        id="type",
    ),
    pytest.param(
        "advert",
        lambda pair: on_sqlite(
            pair,
            "advert",
            "CREATE UNIQUE INDEX tokens_scope_idx ON tokens (scope)",
            "DROP INDEX tokens_scope_idx",
        ),
        "table tokens: indexes differ",
        id="unique-index-only-on-sqlite",
    ),
    pytest.param(
        "main",
        lambda pair: on_postgres(
            pair,
            "ALTER TABLE main.chats ADD CONSTRAINT chats_title_key UNIQUE (title)",
            "ALTER TABLE main.chats DROP CONSTRAINT chats_title_key",
        ),
        "table chats: indexes differ",
        id="unique-constraint-only-on-postgres",
    ),
    pytest.param(
        "main",
        lambda pair: on_postgres(
            pair,
            "ALTER TABLE main.invite_links DROP CONSTRAINT invite_links_payment_id_fkey",
            "ALTER TABLE main.invite_links ADD CONSTRAINT invite_links_payment_id_fkey"
            " FOREIGN KEY (payment_id) REFERENCES main.payments (id) ON DELETE SET NULL",
        ),
        "table invite_links: foreign_keys differ",
        id="foreign-key-missing-on-postgres",
    ),
    pytest.param(
        "main",
        lambda pair: on_postgres(
            pair,
            "ALTER TABLE main.events DROP CONSTRAINT events_capacity_check",
            "ALTER TABLE main.events ADD CONSTRAINT events_capacity_check"
            " CHECK (capacity IS NULL OR capacity > 0)",
        ),
        "table events: checks differ",
        id="check-missing-on-postgres",
    ),
    pytest.param(
        "bot",
        lambda pair: on_postgres(
            pair, "CREATE TABLE bot.stray (id bigint PRIMARY KEY)", "DROP TABLE bot.stray"
        ),
        "table stray: only on PostgreSQL",
        id="table-only-on-postgres",
    ),
]


@pytest.mark.parametrize(("pg_schema", "change", "expected"), NEGATIVE_CASES)
def test_a_difference_on_one_side_fails_the_comparison(
    migrated_pair: Any, schema_tools: Any, pg_schema: str, change: Change, expected: str
) -> None:
    with change(migrated_pair):
        problems = schema_tools.differences(
            migrated_pair.sqlite_schema(pg_schema), migrated_pair.postgres_schema(pg_schema)
        )
        assert any(problem.startswith(expected) for problem in problems), problems
    # Undone: clean again, so the next case starts from parity.
    assert (
        schema_tools.differences(
            migrated_pair.sqlite_schema(pg_schema), migrated_pair.postgres_schema(pg_schema)
        )
        == []
    )
