"""`--schema existing`: domos' own databases, filled with generated data, into PostgreSQL.

The SQLite files and the PostgreSQL tables are both created by `upgrade()`; the migration maps
the one onto the other and verifies. Then the runtime itself is pointed at the result: every row
reads back through the DB layer exactly as it reads from SQLite, an insert without an id gets a
fresh id past the copied ones, and notifymonitor's claim query leases the same rows on both.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from monitors.notifymonitor import DUE_WHERE
from runtime.cli import main
from runtime.config import Settings
from runtime.db import async_database, sync_database
from runtime.db.migrations import upgrade
from runtime.logical_databases import DOMAIN_DATABASES, LOGICAL_DATABASES
from tests.integration.migrate.domos_data import fill, upgrade_sqlite

pytestmark = pytest.mark.postgres

CLAIM_AT = datetime(2025, 6, 1, tzinfo=UTC)


def upgrade_postgres(url: str) -> dict[str, str]:
    environ = {"DB_TYPE": "postgres", "DATABASE_URL": url, "DB_POOL_MIN_SIZE": "1"}

    async def run() -> None:
        async with async_database(Settings.from_env(environ)) as db:
            await upgrade(db)

    asyncio.run(run())
    return environ


def content_digests(data_dir: Path) -> dict[str, str]:
    """A digest of each file's SQL dump: what it holds, whatever WAL checkpoints did to bytes."""
    digests = {}
    for path in sorted(data_dir.rglob("*.db")):
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
            dump = "\n".join(conn.iterdump())
        digests[str(path.relative_to(data_dir))] = hashlib.sha256(dump.encode()).hexdigest()
    return digests


def read_all(environ: dict[str, str], tables: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as the runtime's DB layer returns it."""
    result = {}
    with sync_database(Settings.from_env(environ)) as db:
        for label in tables:
            logical_db, table = label.split(".")
            result[label] = db.fetchall(f"SELECT * FROM {table} ORDER BY id", db=logical_db)
    return result


async def claim_due_outbox(environ: dict[str, str]) -> list[int]:
    async with async_database(Settings.from_env(environ)) as db:
        rows = await db.claim(
            "outbox",
            where=DUE_WHERE,
            params=(CLAIM_AT,),
            order_by="priority, id",
            limit=10,
            owner="round-trip",
            now=CLAIM_AT,
        )
        return [row["id"] for row in rows]


async def insert_user_without_id(environ: dict[str, str]) -> int:
    async with async_database(Settings.from_env(environ)) as db:
        new_id = await db.fetchval(
            "INSERT INTO users (telegram_id, username) VALUES (?, ?) RETURNING id",
            (999_000_000_001, "after_cutover"),
        )
        return int(new_id)


def test_domos_databases_round_trip(pg_url, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    sqlite_env = upgrade_sqlite(data_dir)
    counts = fill(sqlite_env, {"chat_messages": 2500})
    assert len(counts) >= 30
    assert all(counts.values()), counts
    pg_env = upgrade_postgres(pg_url)
    before = content_digests(data_dir)
    for name, value in {**pg_env, "DOMOS_DATA_DIR": str(data_dir)}.items():
        monkeypatch.setenv(name, value)

    report_path = tmp_path / "report.json"
    code = main(
        [
            "migrate",
            "--work-dir",
            str(tmp_path / "work"),
            "--report",
            str(report_path),
            "--chunk-rows",
            "1000",
        ]
    )

    report = json.loads(report_path.read_text())
    assert code == 0, report
    assert report["mode"] == "existing"
    assert report["verified"] is True
    assert [s["name"] for s in report["sources"]] == list(DOMAIN_DATABASES)
    tables = {f"{s['name']}.{t['table']}": t for s in report["sources"] for t in s["tables"]}
    assert {label: t["rows_written"] for label, t in tables.items()} == counts
    assert tables["useful.chat_messages"]["hash_mode"] == "ordered"
    assert content_digests(data_dir) == before, "the SQLite files must never be modified"

    # The runtime reads the same values from both backends, row for row.
    assert read_all(pg_env, list(counts)) == read_all(sqlite_env, list(counts))

    # Sequences were moved past the copied (gapped) ids.
    biggest = max(row["id"] for row in read_all(pg_env, ["main.users"])["main.users"])
    assert asyncio.run(insert_user_without_id(pg_env)) == biggest + 1

    # notifymonitor's claim query leases the same due rows on both backends.
    due_on_sqlite = asyncio.run(claim_due_outbox(sqlite_env))
    assert due_on_sqlite, "the generated outbox should hold due rows"
    assert asyncio.run(claim_due_outbox(pg_env)) == due_on_sqlite

    # Foreign keys dropped for the copy are all back, and validated.
    with psycopg.connect(pg_url) as conn:
        (unvalidated,) = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"
        ).fetchone()
        (foreign_keys,) = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
        ).fetchone()
    assert unvalidated == 0
    assert foreign_keys > 20


def test_source_with_a_migration_the_target_lacks_is_refused(pg_url, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    upgrade_sqlite(data_dir)
    pg_env = upgrade_postgres(pg_url)
    with psycopg.connect(pg_url) as conn:
        conn.execute("DELETE FROM main.schema_migrations WHERE version = 1")
    for name, value in {**pg_env, "DOMOS_DATA_DIR": str(data_dir)}.items():
        monkeypatch.setenv(name, value)

    assert main(["migrate", "--work-dir", str(tmp_path / "work")]) == 2


DJANGO_SQLITE = """
CREATE TABLE "auth_user" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "password" varchar(128) NOT NULL, "last_login" datetime NULL, "is_superuser" bool NOT NULL,
    "username" varchar(150) NOT NULL UNIQUE, "date_joined" datetime NOT NULL);
CREATE TABLE "web_note" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "uuid" char(32) NOT NULL UNIQUE, "data" text NOT NULL
    CHECK ((JSON_VALID("data") OR "data" IS NULL)),
    "author_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED);
INSERT INTO auth_user VALUES
    (1, 'pbkdf2_sha256$x', NULL, 1, 'admin', '2025-01-02 03:04:05.123456'),
    (7, 'pbkdf2_sha256$y', '2025-02-01 10:00:00', 0, 'staff', '2025-01-03 00:00:00');
INSERT INTO web_note VALUES (1, '0f8fad5bd9cb469fa16570867728950e', '{"k": [1, "ж"]}', 7);
CREATE TABLE "axes_accessattempt" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "username" varchar(255) NULL, "ip_address" char(39) NULL);
INSERT INTO axes_accessattempt VALUES (1, 'admin', '203.0.113.7'), (2, 'staff', '2001:db8::1'),
    (3, NULL, NULL);
"""
#: What `manage.py migrate` builds on PostgreSQL for the same models.
DJANGO_POSTGRES = """
CREATE SCHEMA django;
CREATE TABLE django.auth_user (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    password varchar(128) NOT NULL, last_login timestamptz NULL, is_superuser boolean NOT NULL,
    username varchar(150) NOT NULL UNIQUE, date_joined timestamptz NOT NULL);
CREATE TABLE django.web_note (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    uuid uuid NOT NULL UNIQUE, data jsonb NOT NULL,
    author_id integer NOT NULL REFERENCES django.auth_user (id) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE django.axes_accessattempt (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    username varchar(255) NULL, ip_address inet NULL);
"""


def test_django_file_goes_into_the_tables_django_made(pg_url, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    django_file = data_dir / LOGICAL_DATABASES["django"].default_path
    django_file.parent.mkdir(parents=True)
    with sqlite3.connect(django_file) as conn:
        conn.executescript(DJANGO_SQLITE)
    for name, value in {"DATABASE_URL": pg_url, "DOMOS_DATA_DIR": str(data_dir)}.items():
        monkeypatch.setenv(name, value)
    work = ["--work-dir", str(tmp_path / "work")]

    # Before manage.py migrate: refused with the command to run, nothing written.
    assert main(["migrate", *work]) == 2
    assert main(["migrate", "--exclude", "django", *work]) == 78  # nothing left: EX_CONFIG

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(DJANGO_POSTGRES)
    assert main(["migrate", *work]) == 0
    with psycopg.connect(pg_url) as conn:
        users = conn.execute(
            "SELECT id, is_superuser, date_joined, last_login FROM django.auth_user ORDER BY id"
        ).fetchall()
        note = conn.execute("SELECT uuid::text, data, author_id FROM django.web_note").fetchone()
        attempts = conn.execute(
            "SELECT id, host(ip_address) FROM django.axes_accessattempt ORDER BY id"
        ).fetchall()
        (next_id,) = conn.execute(
            "INSERT INTO django.auth_user (password, is_superuser, username, date_joined)"
            " VALUES ('p', false, 'new', now()) RETURNING id"
        ).fetchone()
    assert users == [
        (1, True, datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), None),
        (7, False, datetime(2025, 1, 3, tzinfo=UTC), datetime(2025, 2, 1, 10, tzinfo=UTC)),
    ]
    assert note == ("0f8fad5b-d9cb-469f-a165-70867728950e", {"k": [1, "ж"]}, 7)
    # django-axes' login records: Django's GenericIPAddressField is inet on PostgreSQL.
    assert attempts == [(1, "203.0.113.7"), (2, "2001:db8::1"), (3, None)]
    assert next_id == 8
