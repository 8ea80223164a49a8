"""The pooled DB layer on SQLite and PostgreSQL: `AsyncDatabase` and its twin `Database`.

    db = async_database(settings)
    async with db:
        row = await db.fetchone("SELECT * FROM users WHERE id = ?", (user_id,), db="main")

SQL uses `?` placeholders on both backends (see runtime.db.placeholders); values have the same
Python types on both (see runtime.db.types); driver errors arrive as runtime.errors classes.
"""

from __future__ import annotations

from runtime.db.base import (
    AsyncDatabase,
    AsyncTransaction,
    Database,
    HeldLock,
    Row,
    Transaction,
)
from runtime.db.factory import async_database, check_login, sync_database

__all__ = [
    "AsyncDatabase",
    "AsyncTransaction",
    "Database",
    "HeldLock",
    "Row",
    "Transaction",
    "async_database",
    "check_login",
    "sync_database",
]
