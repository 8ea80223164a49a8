"""The migration runner on both backends, with migrations written by the test itself."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.db import async_database
from runtime.db.migrations import status, upgrade
from runtime.errors import MigrationError

FIRST = """
CREATE TABLE notes (
    id {{id}},
    body {{text}} NOT NULL,
    done {{bool}} NOT NULL DEFAULT FALSE,
    meta {{json}},
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX notes_created_at ON notes (created_at);
"""
SECOND = "ALTER TABLE notes ADD COLUMN raw {{bytes}};\n"


def write(root: Path, logical_db: str, file_name: str, text: str) -> Path:
    path = root / logical_db / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def test_upgrade_applies_in_order_and_is_idempotent(async_db: Any, tmp_path: Path) -> None:
    root = tmp_path / "schema"
    write(root, "main", "0001_notes.sql", FIRST)
    write(root, "main", "0002_raw.sql", SECOND)
    write(root, "audio", "0001_notes.sql", FIRST)  # audio and useful share schema `bot` on PG
    write(root, "useful", "0001_other.sql", "CREATE TABLE other (id {{id}});")

    before = await status(async_db, ["main"], schema_root=root)
    assert [(s.version, s.state) for s in before] == [(1, "pending"), (2, "pending")]

    applied = await upgrade(async_db, ["main", "audio", "useful"], schema_root=root)
    assert [(a.logical_db, a.version, a.name) for a in applied] == [
        ("main", 1, "notes"),
        ("main", 2, "raw"),
        ("audio", 1, "notes"),
        ("useful", 1, "other"),
    ]
    assert await upgrade(async_db, ["main", "audio", "useful"], schema_root=root) == []

    await async_db.execute("INSERT INTO notes (body, raw) VALUES (?, ?)", ("hi", b"\x01"))
    row = await async_db.fetchone("SELECT body, done, raw, created_at FROM notes")
    assert row is not None
    assert (row["body"], row["done"], row["raw"]) == ("hi", False, b"\x01")
    assert row["created_at"].utcoffset().total_seconds() == 0

    after = await status(async_db, ["main", "audio", "useful"], schema_root=root)
    assert {(s.logical_db, s.version, s.state) for s in after} == {
        ("main", 1, "applied"),
        ("main", 2, "applied"),
        ("audio", 1, "applied"),
        ("useful", 1, "applied"),
    }
    assert all(s.applied_at is not None for s in after)


async def test_changed_or_failed_migrations_raise(async_db: Any, tmp_path: Path) -> None:
    root = tmp_path / "schema"
    first = write(root, "main", "0001_notes.sql", FIRST)
    await upgrade(async_db, ["main"], schema_root=root)

    first.write_text(FIRST + "\n-- edited afterwards\n")
    assert [s.state for s in await status(async_db, ["main"], schema_root=root)] == ["changed"]
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await upgrade(async_db, ["main"], schema_root=root)
    first.write_text(FIRST)

    # A failing migration rolls back entirely: its first statement and its record are gone.
    write(root, "main", "0002_broken.sql", "CREATE TABLE half (id {{id}});\nCREATE TABLE nope (;\n")
    with pytest.raises(MigrationError, match="0002_broken failed"):
        await upgrade(async_db, ["main"], schema_root=root)
    states = {s.version: s.state for s in await status(async_db, ["main"], schema_root=root)}
    assert states == {1: "applied", 2: "pending"}
    with pytest.raises(Exception, match="half"):
        await async_db.fetchall("SELECT * FROM half")

    (root / "main" / "0002_broken.sql").unlink()
    (root / "main" / "0001_notes.sql").unlink()
    assert [s.state for s in await status(async_db, ["main"], schema_root=root)] == ["missing"]

    write(root, "main", "bad-name.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_"):
        await upgrade(async_db, ["main"], schema_root=root)


async def test_concurrent_upgrades_apply_each_migration_once(
    database_settings: Any, tmp_path: Path
) -> None:
    root = tmp_path / "schema"
    write(root, "main", "0001_notes.sql", FIRST)
    write(root, "main", "0002_raw.sql", SECOND)
    write(root, "main", "0003_seed.sql", "INSERT INTO notes (body) VALUES ('seeded once');")
    databases = [async_database(database_settings) for _ in range(3)]
    for db in databases:
        await db.open()
    try:
        results = await asyncio.gather(
            *(upgrade(db, ["main"], schema_root=root) for db in databases)
        )
        assert sorted(a.version for applied in results for a in applied) == [1, 2, 3]
        assert await databases[0].fetchval("SELECT count(*) FROM notes") == 1
    finally:
        for db in databases:
            await db.close()


def test_cli_upgrade_and_status(database_environ_vars: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "schema"
    write(root, "contract", "0001_notes.sql", FIRST)
    env = {**os.environ, **database_environ_vars}
    command = [sys.executable, "-m", "runtime.cli", "db"]
    args = ["--db", "contract", "--schema-root", str(root)]

    pending = subprocess.run([*command, "status", *args], env=env, capture_output=True, text=True)
    assert pending.returncode == 1, pending.stderr
    assert "pending" in pending.stdout

    done = subprocess.run([*command, "upgrade", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "0001_notes" in done.stdout

    current = subprocess.run([*command, "status", *args], env=env, capture_output=True, text=True)
    assert current.returncode == 0, current.stderr
    assert "applied" in current.stdout


def test_cli_status_under_a_mistyped_data_dir_creates_nothing(tmp_path: Path) -> None:
    """`db status` opened every database, creating empty files (and their directories) under
    a mistyped DOMOS_DATA_DIR; the next program then started on those empty files."""
    data_dir = tmp_path / "dtaa"
    env = {**os.environ, "DB_TYPE": "sqlite", "DOMOS_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "runtime.cli", "db", "status"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "main: no database file at " + str(data_dir) in result.stderr
    assert "pending" in result.stdout
    assert "applied" not in result.stdout
    assert not data_dir.exists()


def test_cli_upgrade_under_older_code_says_the_schema_is_ahead(
    database_environ_vars: dict[str, str], tmp_path: Path
) -> None:
    """An older domos (a rolled-back image, an old `migrate` container) over a database a newer
    one upgraded printed "schema is up to date": it is not the schema that code was written for."""
    newer, older = tmp_path / "newer", tmp_path / "older"
    write(newer, "contract", "0001_notes.sql", FIRST)
    write(newer, "contract", "0002_raw.sql", SECOND)
    write(older, "contract", "0001_notes.sql", FIRST)
    env = {**os.environ, **database_environ_vars}
    command = [sys.executable, "-m", "runtime.cli", "db", "upgrade", "--db", "contract"]

    done = subprocess.run(
        [*command, "--schema-root", str(newer)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "schema is up to date" in done.stdout

    rolled_back = subprocess.run(
        [*command, "--schema-root", str(older)], env=env, capture_output=True, text=True
    )
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert "schema is up to date" not in rolled_back.stdout
    assert "schema is ahead of this code by 1 migration(s)" in rolled_back.stdout
    assert "contract migration 0002_raw was applied by a newer domos" in rolled_back.stderr


async def _pg_upgraded(url: str, tmp_path: Path, root: Path) -> Any:
    from runtime.config import Settings
    from tests.conftest import database_environ

    settings = Settings.from_env(database_environ("postgres", str(tmp_path / "data"), url))
    db = async_database(settings)
    await db.open()
    await upgrade(db, ["contract"], schema_root=root)
    return db


@pytest.mark.postgres
async def test_a_migration_waiting_for_a_lock_does_not_stall_the_programs(
    pg_domos_url: str, tmp_path: Path
) -> None:
    """An ALTER TABLE queued behind one program's open transaction held up every other query
    on that table until the transaction ended (a plain SELECT waited 27 s on the upgrade of
    main/0009 in a rehearsal): with lock_timeout it gives way and tries again."""
    import psycopg

    root = tmp_path / "schema"
    write(root, "contract", "0001_notes.sql", FIRST)
    db = await _pg_upgraded(pg_domos_url, tmp_path, root)
    write(root, "contract", "0002_raw.sql", SECOND)
    holder = await psycopg.AsyncConnection.connect(pg_domos_url)
    reader = await psycopg.AsyncConnection.connect(pg_domos_url, autocommit=True)
    try:
        await holder.execute("SELECT count(*) FROM contract.notes")  # a program's transaction
        migrating = asyncio.create_task(
            upgrade(db, ["contract"], schema_root=root, lock_timeout_s=0.2, lock_wait_s=30)
        )
        await asyncio.sleep(0.5)
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(reader.execute("SELECT count(*) FROM contract.notes"), 10)
        waited_s = asyncio.get_running_loop().time() - started
        assert not migrating.done()
        await asyncio.sleep(1.0)
        await holder.commit()  # the program's transaction ends: the migration goes through
        applied = await asyncio.wait_for(migrating, 20)
        assert [item.version for item in applied] == [2]
        assert waited_s < 1.0, f"a reader waited {waited_s:.1f} s behind the migration"
    finally:
        await holder.close()
        await reader.close()
        await db.close()


@pytest.mark.postgres
async def test_a_migration_that_cannot_take_its_locks_stops_with_a_clear_message(
    pg_domos_url: str, tmp_path: Path
) -> None:
    import psycopg

    root = tmp_path / "schema"
    write(root, "contract", "0001_notes.sql", FIRST)
    db = await _pg_upgraded(pg_domos_url, tmp_path, root)
    write(root, "contract", "0002_raw.sql", SECOND)
    holder = await psycopg.AsyncConnection.connect(pg_domos_url)
    try:
        await holder.execute("SELECT count(*) FROM contract.notes")
        with pytest.raises(MigrationError, match="0002_raw could not take its locks in 1 s"):
            await upgrade(db, ["contract"], schema_root=root, lock_timeout_s=0.2, lock_wait_s=1)
        await holder.rollback()
        rows = await status(db, ["contract"], schema_root=root)
        assert [(row.version, row.state) for row in rows] == [(1, "applied"), (2, "pending")]
        assert [item.version for item in await upgrade(db, ["contract"], schema_root=root)] == [2]
    finally:
        await holder.close()
        await db.close()


@pytest.mark.postgres
async def test_an_upgrade_waiting_for_another_says_so(pg_domos_url: str, tmp_path: Path) -> None:
    """Behind another upgrade (or a killed one whose server session still runs) an upgrade
    waited on the advisory lock without a word."""
    import psycopg
    from structlog.testing import capture_logs

    from runtime.db.migrations import _LOCK_KEY

    root = tmp_path / "schema"
    write(root, "contract", "0001_notes.sql", FIRST)
    db = await _pg_upgraded(pg_domos_url, tmp_path, root)
    write(root, "contract", "0002_raw.sql", SECOND)
    other = await psycopg.AsyncConnection.connect(pg_domos_url)
    try:
        await other.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        with capture_logs() as logs:
            migrating = asyncio.create_task(upgrade(db, ["contract"], schema_root=root))
            await asyncio.sleep(0.5)
            assert not migrating.done()
            await other.commit()
            applied = await asyncio.wait_for(migrating, 20)
        assert [item.version for item in applied] == [2]
        assert "migration_waiting_for_other_upgrade" in [entry["event"] for entry in logs]
    finally:
        await other.close()
        await db.close()
