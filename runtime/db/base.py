"""The two facades, `AsyncDatabase` and `Database`, and their transactions.

Both have the same methods; each backend (runtime.db.sqlite, runtime.db.postgres) implements them.
`runtime.db.factory` picks the backend from `settings.db.type`, so code never names one.
"""

from __future__ import annotations

import abc
import itertools
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self

import runtime.db.claim as claim_sql
from runtime.config import DatabaseSettings, Settings
from runtime.errors import QueryError
from runtime.logical_databases import LOGICAL_DATABASES

Dialect = Literal["sqlite", "postgres"]
Row = dict[str, Any]
Params = Sequence[Any]

_names = itertools.count(1)


def default_owner() -> str:
    """`host:pid:uuid`, a lease owner unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def database_settings(settings: Settings | DatabaseSettings) -> DatabaseSettings:
    return settings.db if isinstance(settings, Settings) else settings


def check_logical_db(name: str) -> None:
    if name not in LOGICAL_DATABASES:
        known = ", ".join(LOGICAL_DATABASES)
        raise QueryError(f"unknown logical database {name!r} (known: {known})")


def first_value(row: Row | None) -> Any:
    """`fetchval`'s answer: the first column of `row`, or None."""
    return None if row is None else next(iter(row.values()), None)


@dataclass(frozen=True, slots=True)
class Claim:
    """A checked `claim()` request, as both facades hand it to their backend's `_claim`."""

    table: str
    db: str
    where: str
    params: Params
    order_by: str
    limit: int
    owner: str
    now: datetime
    expires_at: datetime

    @classmethod
    def build(
        cls,
        table: str,
        db: str,
        where: str,
        params: Params,
        order_by: str,
        limit: int,
        owner: str | None,
        lease_s: float,
        now: datetime | None,
    ) -> Claim:
        claim_sql.validate_identifier(table)
        order = claim_sql.validate_order_by(order_by)
        if limit < 1:
            raise QueryError(f"claim limit must be >= 1, got {limit}")
        if lease_s <= 0:
            raise QueryError(f"claim lease_s must be > 0, got {lease_s}")
        now = datetime.now(UTC) if now is None else now
        expires_at = now + timedelta(seconds=lease_s)
        return cls(
            table, db, where, params, order, limit, owner or default_owner(), now, expires_at
        )


class _Facade:
    """What both facades share besides their (a)waiting methods."""

    dialect: Dialect

    def __init__(self, settings: DatabaseSettings, *, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or f"{self.dialect}-{next(_names)}"


class HeldLock:
    """A singleton lock this process holds. `ensure_held()` raises LockNotAcquired once it is lost.

    On PostgreSQL the advisory lock lives as long as the session that took it: if that connection
    dies (server restart, pg_terminate_backend), another process may take the lock at once, so a
    holder must check before each unit of exclusive work. An flock on SQLite cannot be lost while
    the process lives, so its check always passes.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    async def ensure_held(self) -> None:
        return None

    def ensure_held_sync(self) -> None:
        return None


class AsyncTransaction(abc.ABC):
    """One transaction on one logical database; committed on success, rolled back on error."""

    @abc.abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int: ...

    @abc.abstractmethod
    async def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> int: ...

    @abc.abstractmethod
    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    @abc.abstractmethod
    def iterate(
        self, sql: str, params: Params = (), *, batch_size: int = 500
    ) -> AsyncIterator[Row]:
        """Stream rows in batches; use `contextlib.aclosing` when leaving the loop early."""

    @abc.abstractmethod
    async def executescript(self, script: str) -> None:
        """Several statements without placeholders, inside this transaction."""

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        return first_value(await self.fetchone(sql, params))


class Transaction(abc.ABC):
    """Synchronous twin of `AsyncTransaction`."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Params = ()) -> int: ...

    @abc.abstractmethod
    def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> int: ...

    @abc.abstractmethod
    def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    @abc.abstractmethod
    def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    @abc.abstractmethod
    def iterate(self, sql: str, params: Params = (), *, batch_size: int = 500) -> Iterator[Row]: ...

    @abc.abstractmethod
    def executescript(self, script: str) -> None: ...

    def fetchval(self, sql: str, params: Params = ()) -> Any:
        return first_value(self.fetchone(sql, params))


class AsyncDatabase(_Facade, abc.ABC):
    """The asyncio facade: monitors, FastAPI, aiogram. Open it once per process."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def execute(self, sql: str, params: Params = (), *, db: str = "main") -> int:
        """Run one statement in autocommit; returns the row count."""

    @abc.abstractmethod
    async def executemany(
        self, sql: str, seq_of_params: Sequence[Params], *, db: str = "main"
    ) -> int: ...

    @abc.abstractmethod
    async def fetchone(self, sql: str, params: Params = (), *, db: str = "main") -> Row | None: ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Params = (), *, db: str = "main") -> list[Row]: ...

    async def fetchval(self, sql: str, params: Params = (), *, db: str = "main") -> Any:
        """First column of the first row, or None."""
        return first_value(await self.fetchone(sql, params, db=db))

    @abc.abstractmethod
    def iterate(
        self, sql: str, params: Params = (), *, db: str = "main", batch_size: int = 500
    ) -> AsyncIterator[Row]:
        """Stream a large result in batches of `batch_size` (PostgreSQL: a named cursor).

        Holds one connection until exhausted or closed; wrap in `contextlib.aclosing` when the
        loop may stop early.
        """

    @abc.abstractmethod
    def transaction(self, *, db: str = "main") -> AbstractAsyncContextManager[AsyncTransaction]:
        """`async with db.transaction(db="main") as tx:` (SQLite: BEGIN IMMEDIATE)."""

    @abc.abstractmethod
    async def executescript(self, script: str, *, db: str) -> None:
        """Several statements without placeholders (DDL), in autocommit."""

    @abc.abstractmethod
    def singleton_lock(self, name: str) -> AbstractAsyncContextManager[HeldLock]:
        """Hold a process-wide named lock; raises LockNotAcquired at once if someone holds it."""

    @abc.abstractmethod
    async def stats(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    async def _claim(self, claim: Claim) -> list[Row]: ...

    async def claim(
        self,
        table: str,
        *,
        db: str = "main",
        where: str = "1=1",
        params: Params = (),
        order_by: str = "id",
        limit: int = 50,
        owner: str | None = None,
        lease_s: float = 60.0,
        now: datetime | None = None,
    ) -> list[Row]:
        """Lease up to `limit` free rows of `table` matching `where` to `owner`; return them.

        Two claimers never get the same row while its lease runs; an expired lease is free again.
        """
        return await self._claim(
            Claim.build(table, db, where, params, order_by, limit, owner, lease_s, now)
        )


class Database(_Facade, abc.ABC):
    """The synchronous facade: Flask, scripts. Same methods as `AsyncDatabase`."""

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @abc.abstractmethod
    def execute(self, sql: str, params: Params = (), *, db: str = "main") -> int: ...

    @abc.abstractmethod
    def executemany(
        self, sql: str, seq_of_params: Sequence[Params], *, db: str = "main"
    ) -> int: ...

    @abc.abstractmethod
    def fetchone(self, sql: str, params: Params = (), *, db: str = "main") -> Row | None: ...

    @abc.abstractmethod
    def fetchall(self, sql: str, params: Params = (), *, db: str = "main") -> list[Row]: ...

    def fetchval(self, sql: str, params: Params = (), *, db: str = "main") -> Any:
        return first_value(self.fetchone(sql, params, db=db))

    @abc.abstractmethod
    def iterate(
        self, sql: str, params: Params = (), *, db: str = "main", batch_size: int = 500
    ) -> Iterator[Row]: ...

    @abc.abstractmethod
    def transaction(self, *, db: str = "main") -> AbstractContextManager[Transaction]: ...

    @abc.abstractmethod
    def executescript(self, script: str, *, db: str) -> None: ...

    @abc.abstractmethod
    def singleton_lock(self, name: str) -> AbstractContextManager[HeldLock]: ...

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _claim(self, claim: Claim) -> list[Row]: ...

    def claim(
        self,
        table: str,
        *,
        db: str = "main",
        where: str = "1=1",
        params: Params = (),
        order_by: str = "id",
        limit: int = 50,
        owner: str | None = None,
        lease_s: float = 60.0,
        now: datetime | None = None,
    ) -> list[Row]:
        return self._claim(
            Claim.build(table, db, where, params, order_by, limit, owner, lease_s, now)
        )
