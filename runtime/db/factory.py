"""The backend factory: the one module that names both backends and picks one by DB_TYPE.

Imported by the package itself, it installs its two builders as `BackendFactories`, which
`AsyncDatabase.from_settings` and `Database.from_settings` call. The backend modules are imported
on first use, so a SQLite deployment never loads psycopg's pool.
"""

from __future__ import annotations

from runtime.config import DatabaseSettings
from runtime.db.base import AsyncDatabase, BackendFactories, Database


def async_database(settings: DatabaseSettings, name: str | None = None) -> AsyncDatabase:
    if settings.type == "postgres":
        from runtime.db.postgres import AsyncPostgresDatabase

        return AsyncPostgresDatabase(settings, name=name)
    from runtime.db.sqlite import AsyncSQLiteDatabase

    return AsyncSQLiteDatabase(settings, name=name)


def database(settings: DatabaseSettings, name: str | None = None) -> Database:
    if settings.type == "postgres":
        from runtime.db.postgres import PostgresDatabase

        return PostgresDatabase(settings, name=name)
    from runtime.db.sqlite import SQLiteDatabase

    return SQLiteDatabase(settings, name=name)


BackendFactories.async_database = async_database
BackendFactories.database = database
