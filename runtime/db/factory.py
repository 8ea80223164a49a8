"""The backend for `settings.db.type`: code asks for a database, never names a backend.

Apart from the facades (runtime.db.base) so that the backends, which subclass them, and the
facades do not import each other.
"""

from __future__ import annotations

from runtime.config import DatabaseSettings, Settings
from runtime.db.base import AsyncDatabase, Database, database_settings


def async_database(
    settings: Settings | DatabaseSettings, *, name: str | None = None
) -> AsyncDatabase:
    """An unopened AsyncDatabase of the configured backend (`await db.open()` or `async with`)."""
    db_settings = database_settings(settings)
    if db_settings.type == "postgres":
        from runtime.db.postgres import AsyncPostgresDatabase

        return AsyncPostgresDatabase(db_settings, name=name)
    from runtime.db.sqlite import AsyncSQLiteDatabase

    return AsyncSQLiteDatabase(db_settings, name=name)


def sync_database(settings: Settings | DatabaseSettings, *, name: str | None = None) -> Database:
    """An unopened Database of the configured backend (`db.open()` or `with`)."""
    db_settings = database_settings(settings)
    if db_settings.type == "postgres":
        from runtime.db.postgres import PostgresDatabase

        return PostgresDatabase(db_settings, name=name)
    from runtime.db.sqlite import SQLiteDatabase

    return SQLiteDatabase(db_settings, name=name)
