"""Versioned schema migrations per logical database, on either backend.

Files: `<schema_root>/<logical_db>/NNNN_name.sql` (default root: runtime/schema), written once with
the dialect tokens of runtime.db.dialect. Each logical database records what was applied in
`schema_migrations(logical_db, version, name, checksum, applied_at)` — in its PostgreSQL schema
(the four bot databases share schema `bot`, hence `logical_db` in the key) or in its SQLite file.

`upgrade()` applies pending migrations in version order, each in its own transaction together with
its record, so a failed migration leaves nothing behind. Concurrent upgrades are safe: every
transaction first takes a lock (PostgreSQL: pg_advisory_xact_lock; SQLite: BEGIN IMMEDIATE, the
file's write lock) and re-checks whether the version was applied meanwhile. A migration whose file
changed after it was applied (checksum mismatch) stops the upgrade with MigrationError. Statements
that cannot run inside a transaction (CREATE INDEX CONCURRENTLY) are not supported.

On PostgreSQL a migration waits at most `lock_timeout_s` for a table lock (lock_timeout), then
rolls back and tries again until `lock_wait_s` has passed. A queued ACCESS EXCLUSIVE request
(ALTER TABLE) blocks every later query on its table, so waiting without a limit behind one
program's long transaction stalled all the running programs' reads of that table meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import structlog

from runtime.db.base import AsyncDatabase, AsyncTransaction
from runtime.db.dialect import render
from runtime.db.postgres_session import advisory_key
from runtime.errors import DatabaseError, MigrationError, TransientError
from runtime.logical_databases import DOMAIN_DATABASES, LOGICAL_DATABASES

log = structlog.get_logger(__name__)

DEFAULT_SCHEMA_ROOT = Path(__file__).resolve().parent.parent / "schema"
_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK_KEY = advisory_key("schema_migrations")

State = Literal["applied", "pending", "changed", "missing"]

#: PostgreSQL: how long one attempt of a migration waits for a lock before it gives way.
LOCK_TIMEOUT_S = 2.0
#: How long a migration keeps trying to take its locks before the upgrade stops.
LOCK_WAIT_S = 120.0


@dataclass(frozen=True)
class Migration:
    logical_db: str
    version: int
    name: str
    path: Path
    sql: str
    checksum: str


@dataclass(frozen=True)
class Applied:
    logical_db: str
    version: int
    name: str
    duration_s: float


@dataclass(frozen=True)
class MigrationStatus:
    logical_db: str
    version: int
    name: str
    #: applied; pending (file not applied yet); changed (applied, file edited since);
    #: missing (applied, file gone).
    state: State
    applied_at: datetime | None


def discover(logical_db: str, schema_root: Path | None = None) -> list[Migration]:
    """The migration files of one logical database, in version order."""
    directory = (schema_root or DEFAULT_SCHEMA_ROOT) / logical_db
    if not directory.is_dir():
        return []
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_lower_snake_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{path}: version {version} also in {migrations[version].path}")
        raw = path.read_bytes()
        migrations[version] = Migration(
            logical_db=logical_db,
            version=version,
            name=match.group(2),
            path=path,
            sql=raw.decode("utf-8"),
            checksum=hashlib.sha256(raw).hexdigest(),
        )
    return [migrations[version] for version in sorted(migrations)]


def _table_ddl(db: AsyncDatabase, logical_db: str) -> str:
    table = "schema_migrations"
    prefix = ""
    if db.dialect == "postgres":
        schema = LOGICAL_DATABASES[logical_db].pg_schema
        # Qualified: the search_path was set before the schema might have existed.
        prefix = f'CREATE SCHEMA IF NOT EXISTS "{schema}";\n'
        table = f'"{schema}".schema_migrations'
    ddl = f"""CREATE TABLE IF NOT EXISTS {table} (
    logical_db {{{{text}}}} NOT NULL,
    version INTEGER NOT NULL,
    name {{{{text}}}} NOT NULL,
    checksum {{{{text}}}} NOT NULL,
    applied_at {{{{timestamptz}}}} NOT NULL DEFAULT {{{{now}}}},
    PRIMARY KEY (logical_db, version)
);"""
    return prefix + render(ddl, db.dialect)


async def _lock(tx: AsyncTransaction, db: AsyncDatabase) -> None:
    # SQLite: the transaction began with BEGIN IMMEDIATE, which already holds the write lock.
    # PostgreSQL: another upgrade (a second container, or one whose client was killed and whose
    # server session is still finishing) may hold the lock: say why this one is silent.
    if db.dialect == "postgres" and not await tx.fetchval(
        "SELECT pg_try_advisory_xact_lock(?)", (_LOCK_KEY,)
    ):
        log.warning("migration_waiting_for_other_upgrade")
        await tx.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))


def _check_unchanged(migration: Migration, recorded_checksum: str) -> None:
    if recorded_checksum != migration.checksum:
        raise MigrationError(
            f"{migration.logical_db} migration {migration.version:04d}_{migration.name} was"
            f" changed after it was applied ({migration.path}); add a new migration instead"
        )


_SELECT_RECORDED = (
    "SELECT version, name, checksum, applied_at FROM schema_migrations WHERE logical_db = ?"
    " ORDER BY version"
)


async def _apply_one(
    db: AsyncDatabase, migration: Migration, lock_timeout_s: float, lock_wait_s: float
) -> Applied | None:
    """Apply `migration` with its record in one transaction; None if someone else just did.

    A lock not granted within `lock_timeout_s` (PostgreSQL) rolls the attempt back so the
    programs' queries queued behind it go on; the next attempt follows after a pause, until
    `lock_wait_s` has passed."""
    started = time.perf_counter()
    deadline = time.monotonic() + lock_wait_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _apply_attempt(db, migration, lock_timeout_s, started)
        except TransientError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MigrationError(
                    f"{migration.logical_db} migration {migration.version:04d}_{migration.name}"
                    f" could not take its locks in {lock_wait_s:.0f} s ({attempt} attempts;"
                    f" last: {exc}): a running program holds them in a long transaction; stop"
                    " the programs (docs/upgrade.md) or run `domos db upgrade` again"
                ) from exc
            log.warning(
                "migration_waiting_for_lock",
                logical_db=migration.logical_db,
                version=migration.version,
                name=migration.name,
                attempt=attempt,
                error=str(exc),
            )
            await asyncio.sleep(min(remaining, min(5.0, 0.25 * attempt)))


async def _apply_attempt(
    db: AsyncDatabase, migration: Migration, lock_timeout_s: float, started: float
) -> Applied | None:
    async with db.transaction(db=migration.logical_db) as tx:
        await _lock(tx, db)
        checksum = await tx.fetchval(
            "SELECT checksum FROM schema_migrations WHERE logical_db = ? AND version = ?",
            (migration.logical_db, migration.version),
        )
        if checksum is not None:
            _check_unchanged(migration, checksum)
            return None
        if db.dialect == "postgres":
            # After the advisory lock: concurrent upgrades still wait for each other in full.
            await tx.execute(f"SET LOCAL lock_timeout = '{max(1, round(lock_timeout_s * 1000))}'")
        try:
            await tx.executescript(render(migration.sql, db.dialect))
        except TransientError:
            raise
        except DatabaseError as exc:
            raise MigrationError(
                f"{migration.logical_db} migration {migration.version:04d}_{migration.name}"
                f" failed: {exc}"
            ) from exc
        await tx.execute(
            "INSERT INTO schema_migrations (logical_db, version, name, checksum, applied_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                migration.logical_db,
                migration.version,
                migration.name,
                migration.checksum,
                datetime.now(UTC),
            ),
        )
    duration_s = time.perf_counter() - started
    log.info(
        "migration_applied",
        logical_db=migration.logical_db,
        version=migration.version,
        name=migration.name,
        duration_s=round(duration_s, 4),
    )
    return Applied(migration.logical_db, migration.version, migration.name, duration_s)


async def upgrade(
    db: AsyncDatabase,
    logical_dbs: Iterable[str] = DOMAIN_DATABASES,
    *,
    schema_root: Path | None = None,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
    lock_wait_s: float = LOCK_WAIT_S,
) -> list[Applied]:
    """Apply every pending migration of `logical_dbs`; returns what this call applied."""
    applied: list[Applied] = []
    for logical_db in _validated(logical_dbs):
        migrations = discover(logical_db, schema_root)
        async with db.transaction(db=logical_db) as tx:
            await _lock(tx, db)
            await tx.executescript(_table_ddl(db, logical_db))
            recorded = {
                row["version"]: row for row in await tx.fetchall(_SELECT_RECORDED, (logical_db,))
            }
        for migration in migrations:
            if migration.version in recorded:
                _check_unchanged(migration, recorded[migration.version]["checksum"])
        known = {migration.version for migration in migrations}
        unknown = [recorded[version] for version in sorted(recorded.keys() - known)]
        if unknown:
            # A newer domos applied these (this code was rolled back, or an old image ran
            # `db upgrade`): nothing here can apply or undo them, but the schema is not the one
            # this code was written for, so it must not be called up to date.
            log.warning(
                "migrations_unknown_to_this_code",
                logical_db=logical_db,
                versions=[f"{row['version']:04d}_{row['name']}" for row in unknown],
            )
        for migration in migrations:
            if migration.version not in recorded:
                result = await _apply_one(db, migration, lock_timeout_s, lock_wait_s)
                if result is not None:
                    applied.append(result)
    return applied


async def status(
    db: AsyncDatabase,
    logical_dbs: Iterable[str] = DOMAIN_DATABASES,
    *,
    schema_root: Path | None = None,
) -> list[MigrationStatus]:
    """What is applied, pending, changed or missing, per logical database; changes nothing."""
    result: list[MigrationStatus] = []
    for logical_db in _validated(logical_dbs):
        recorded = {}
        if await _table_exists(db, logical_db):
            rows = await db.fetchall(_SELECT_RECORDED, (logical_db,), db=logical_db)
            recorded = {row["version"]: row for row in rows}
        files = {migration.version: migration for migration in discover(logical_db, schema_root)}
        for version in sorted(recorded.keys() | files.keys()):
            migration, row = files.get(version), recorded.get(version)
            state: State
            if row is None:
                state = "pending"
            elif migration is None:
                state = "missing"
            else:
                state = "applied" if row["checksum"] == migration.checksum else "changed"
            name = migration.name if migration is not None else row["name"]  # type: ignore[index]
            applied_at = None if row is None else row["applied_at"]
            result.append(MigrationStatus(logical_db, version, name, state, applied_at))
    return result


async def _table_exists(db: AsyncDatabase, logical_db: str) -> bool:
    if db.dialect == "postgres":
        schema = LOGICAL_DATABASES[logical_db].pg_schema
        found = await db.fetchval(
            "SELECT to_regclass(?::text) IS NOT NULL",
            (f'"{schema}".schema_migrations',),
            db=logical_db,
        )
    else:
        found = await db.fetchval(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?",
            ("schema_migrations",),
            db=logical_db,
        )
    return bool(found)


def _validated(logical_dbs: Iterable[str]) -> Sequence[str]:
    names = list(logical_dbs)
    for name in names:
        if name not in LOGICAL_DATABASES:
            raise MigrationError(f"unknown logical database {name!r}")
    return names
