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


def check_login(settings: Settings | DatabaseSettings) -> None:
    """Raise DatabaseRefused (a ConfigError: exit 78) when PostgreSQL refuses the configured
    login or database; nothing for SQLite, or for a server not reachable yet (an outage the
    program's pool waits out). For programs that hand over to another server before they
    open a database themselves (gunicorn's workers, Django's migrate), whose failure would
    be an ordinary exit that supervisord restarts for ever."""
    db_settings = database_settings(settings)
    if db_settings.type == "postgres":
        from runtime.db.postgres import PostgresDatabase

        PostgresDatabase(db_settings, name="login-check").check_login()
