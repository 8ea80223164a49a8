"""PostgreSQL backend: ONE psycopg_pool per process; the logical database selects the schema.

Connections are in autocommit, return rows as dicts, dump dict/list as JSONB and run with
TimeZone=UTC. Each pooled connection remembers the schema its search_path points at, so a call only
pays a `SET search_path` round trip when it uses a different logical database than the previous
user of the connection (the SET runs outside any transaction, so a rollback never undoes it).

Broken connections: the pool checks each connection on checkout and replaces dead ones,
reconnecting with backoff. The check costs a round trip only when the server has spoken on the idle
connection (`_server_spoke`): a server that ends a connection says so (a FATAL notice, then EOF),
so a silent socket needs no `check_connection` - which would cost every request a round trip.
A call is retried on a fresh connection only when the failure
happened before any of its own SQL was sent (the SET search_path step); a connection lost while the
caller's statement runs raises DatabaseUnavailable, because the statement may have been committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import select
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg import sql as pg_sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from runtime.config import DatabaseSettings, mask_url_password
from runtime.db import claim as claim_sql
from runtime.db.base import (
    AsyncDatabase,
    AsyncTransaction,
    Database,
    HeldLock,
    Params,
    Row,
    Transaction,
    check_logical_db,
)
from runtime.db.errors import translate_postgres
from runtime.db.metrics import track_pool, untrack_pool
from runtime.db.placeholders import to_pyformat
from runtime.db.types import postgres_adapters
from runtime.errors import DatabaseUnavailable, LockNotAcquired
from runtime.logical_databases import LOGICAL_DATABASES

log = structlog.get_logger(__name__)

#: What the driver and the pool raise (pool errors subclass psycopg.OperationalError).
DRIVER_ERRORS = (psycopg.Error,)

_SET_SEARCH_PATH = {
    logical.name: pg_sql.SQL("SET search_path TO {}").format(pg_sql.Identifier(logical.pg_schema))
    for logical in LOGICAL_DATABASES.values()
}
_SCHEMA_OF = {logical.name: logical.pg_schema for logical in LOGICAL_DATABASES.values()}


def schema_of(db: str) -> str:
    try:
        return _SCHEMA_OF[db]
    except KeyError:
        check_logical_db(db)
        raise


def _lost(name: str) -> LockNotAcquired:
    return LockNotAcquired(f"singleton lock {name!r} was lost: its session ended")


class _AsyncAdvisoryLock(HeldLock):
    """The session holding the advisory lock must still be alive for the lock to be ours."""

    def __init__(self, name: str, conn: psycopg.AsyncConnection[Any]) -> None:
        super().__init__(name)
        self._conn = conn

    async def ensure_held(self) -> None:
        try:
            await self._conn.execute("SELECT 1")
        except DRIVER_ERRORS as exc:
            raise _lost(self.name) from exc


class _SyncAdvisoryLock(HeldLock):
    def __init__(self, name: str, conn: psycopg.Connection[Any]) -> None:
        super().__init__(name)
        self._conn = conn

    def ensure_held_sync(self) -> None:
        try:
            self._conn.execute("SELECT 1")
        except DRIVER_ERRORS as exc:
            raise _lost(self.name) from exc


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock from a lock name."""
    digest = hashlib.blake2b(f"domos:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def connection_kwargs(conninfo: str) -> dict[str, Any]:
    """Connection options of every domos connection (pooled or dedicated)."""
    options = conninfo_to_dict(conninfo).get("options") or ""
    return {
        "autocommit": True,
        "row_factory": dict_row,
        "context": postgres_adapters(),
        # Sessions in UTC so timestamptz values come back as UTC datetimes.
        "options": f"{options} -c TimeZone=UTC".strip(),
    }


def _cursor_name() -> str:
    return f"domos_iter_{uuid.uuid4().hex}"


def _server_spoke(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle pooled connection has input waiting (or is closed): nothing arrives on
    one unless the server ended it or sent a notification."""
    if conn.closed:
        return True
    poller = select.poll()
    try:
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


async def _check_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if _server_spoke(conn):
        await AsyncConnectionPool.check_connection(conn)


def _check_sync(conn: psycopg.Connection[Any]) -> None:
    if _server_spoke(conn):
        ConnectionPool.check_connection(conn)


class _PostgresCommon:
    settings: DatabaseSettings
    name: str
    dialect = "postgres"

    def _init_common(self) -> None:
        self._conninfo = self.settings.require_postgres_url()
        self._masked_url = mask_url_password(self._conninfo)
        # Which schema each live connection's search_path points at.
        self._search_path: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"postgres: cannot connect to {self._masked_url} within "
            f"{self.settings.pool_timeout_s:g}s ({type(exc).__name__})"
        )

    def _reconnect_failed(self, pool: Any) -> None:
        log.error("db_pool_reconnect_failed", pool=self.name, url=self._masked_url)

    def _pool_options(self) -> dict[str, Any]:
        return {
            "min_size": self.settings.pool_min_size,
            "max_size": self.settings.pool_max_size,
            "timeout": self.settings.pool_timeout_s,
            "kwargs": connection_kwargs(self._conninfo),
            "name": self.name,
            "open": False,
        }

    def _pool_stats(self, pool: AsyncConnectionPool[Any] | ConnectionPool[Any] | None) -> Any:
        if pool is None:
            return {"dialect": "postgres", "open": False}
        return {"dialect": "postgres", "open": True, **pool.get_stats()}


# --- asyncio facade ---


class AsyncPostgresTransaction(AsyncTransaction):
    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            return (await self._conn.execute(to_pyformat(sql), params)).rowcount
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    async def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> int:
        try:
            async with self._conn.cursor() as cursor:
                await cursor.executemany(to_pyformat(sql), seq_of_params)
                return cursor.rowcount
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        try:
            return await (await self._conn.execute(to_pyformat(sql), params)).fetchone()
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return await (await self._conn.execute(to_pyformat(sql), params)).fetchall()
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    async def iterate(
        self, sql: str, params: Params = (), *, batch_size: int = 500
    ) -> AsyncGenerator[Row, None]:
        try:
            async with self._conn.cursor(name=_cursor_name()) as cursor:
                cursor.itersize = batch_size
                await cursor.execute(to_pyformat(sql), params)
                while batch := await cursor.fetchmany(batch_size):
                    for row in batch:
                        yield row
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    async def executescript(self, script: str) -> None:
        try:
            await self._conn.execute(script.encode())
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc


class AsyncPostgresDatabase(_PostgresCommon, AsyncDatabase):
    dialect = "postgres"

    def __init__(self, settings: DatabaseSettings, *, name: str | None = None) -> None:
        super().__init__(settings, name=name)
        self._init_common()
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] | None = None

    async def open(self) -> None:
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] = AsyncConnectionPool(
            self._conninfo,
            check=_check_async,
            reconnect_failed=self._reconnect_failed,
            **self._pool_options(),
        )
        try:
            await pool.open(wait=True, timeout=self.settings.pool_timeout_s)
            async with pool.connection():  # min_size may be 0: prove the server answers
                pass
        except DRIVER_ERRORS as exc:
            await pool.close()
            raise self._unavailable(exc) from exc
        self._pool = pool
        track_pool(self)
        log.info("db_pool_opened", pool=self.name, url=self._masked_url)

    async def close(self) -> None:
        untrack_pool(self)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def pool_gauges(self) -> tuple[int, int, int]:
        if self._pool is None:
            return (0, 0, 0)
        stats = self._pool.get_stats()
        return (stats["pool_size"], stats["pool_available"], stats.get("requests_waiting", 0))

    @contextlib.asynccontextmanager
    async def _checkout(self, db: str) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        """A pooled connection whose search_path is `db`'s schema. Raises driver errors."""
        pool = self._pool
        if pool is None:
            raise DatabaseUnavailable("postgres: database is not open; call open() first")
        schema = schema_of(db)
        for attempt in (1, 2):
            async with pool.connection() as conn:
                if self._search_path.get(conn) != schema:
                    try:
                        await conn.execute(_SET_SEARCH_PATH[db])
                    except psycopg.OperationalError:
                        # Nothing of the caller's was sent yet: safe to retry once, fresh.
                        if attempt == 1 and conn.broken:
                            log.warning("db_connection_lost_before_use", pool=self.name)
                            continue
                        raise
                    self._search_path[conn] = schema
                yield conn
                return

    async def execute(self, sql: str, params: Params = (), *, db: str = "main") -> int:
        query = to_pyformat(sql)
        try:
            async with self._checkout(db) as conn:
                return (await conn.execute(query, params)).rowcount
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    async def executemany(
        self, sql: str, seq_of_params: Sequence[Params], *, db: str = "main"
    ) -> int:
        query = to_pyformat(sql)
        try:
            async with self._checkout(db) as conn, conn.cursor() as cursor:
                await cursor.executemany(query, seq_of_params)
                return cursor.rowcount
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    async def fetchone(self, sql: str, params: Params = (), *, db: str = "main") -> Row | None:
        query = to_pyformat(sql)
        try:
            async with self._checkout(db) as conn:
                return await (await conn.execute(query, params)).fetchone()
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    async def fetchall(self, sql: str, params: Params = (), *, db: str = "main") -> list[Row]:
        query = to_pyformat(sql)
        try:
            async with self._checkout(db) as conn:
                return await (await conn.execute(query, params)).fetchall()
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    async def iterate(
        self, sql: str, params: Params = (), *, db: str = "main", batch_size: int = 500
    ) -> AsyncIterator[Row]:
        try:
            # A named (server-side) cursor lives in a transaction.
            async with self._checkout(db) as conn, conn.transaction():
                rows = AsyncPostgresTransaction(conn).iterate(sql, params, batch_size=batch_size)
                async with contextlib.aclosing(rows):
                    async for row in rows:
                        yield row
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    @contextlib.asynccontextmanager
    async def transaction(self, *, db: str = "main") -> AsyncIterator[AsyncTransaction]:
        try:
            async with self._checkout(db) as conn, conn.transaction():
                yield AsyncPostgresTransaction(conn)
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    async def executescript(self, script: str, *, db: str) -> None:
        try:
            async with self._checkout(db) as conn:
                # No parameters: psycopg sends it as one simple query, several statements allowed.
                await conn.execute(script.encode())
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    @contextlib.asynccontextmanager
    async def singleton_lock(self, name: str) -> AsyncIterator[HeldLock]:
        # A dedicated connection, outside the pool, held for the whole duration: the advisory lock
        # belongs to the session, and a long-held lock must not take a pool slot.
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                connect_timeout=max(1, int(self.settings.pool_timeout_s)),
                **connection_kwargs(self._conninfo),
            )
        except DRIVER_ERRORS as exc:
            raise self._unavailable(exc) from exc
        key = advisory_key(name)
        try:
            try:
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS held", (key,))
                row = await cursor.fetchone()
            except DRIVER_ERRORS as exc:
                raise translate_postgres(exc) from exc
            if not (row and row["held"]):
                raise LockNotAcquired(f"singleton lock {name!r} is held by another process")
            try:
                yield _AsyncAdvisoryLock(name, conn)
            finally:
                if not conn.broken:
                    with contextlib.suppress(*DRIVER_ERRORS):
                        await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        finally:
            await conn.close()

    async def stats(self) -> dict[str, Any]:
        return dict(self._pool_stats(self._pool))

    async def _claim(
        self,
        table: str,
        where: str,
        params: Params,
        order_by: str,
        limit: int,
        owner: str,
        now: datetime,
        expires_at: datetime,
        db: str,
    ) -> list[Row]:
        statement = claim_sql.postgres_claim_sql(table, where, order_by, limit)
        return await self.fetchall(statement, [*params, now, owner, expires_at], db=db)


# --- synchronous facade ---


class PostgresTransaction(Transaction):
    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> int:
        try:
            return self._conn.execute(to_pyformat(sql), params).rowcount
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> int:
        try:
            with self._conn.cursor() as cursor:
                cursor.executemany(to_pyformat(sql), seq_of_params)
                return cursor.rowcount
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        try:
            return self._conn.execute(to_pyformat(sql), params).fetchone()
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return self._conn.execute(to_pyformat(sql), params).fetchall()
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    def iterate(self, sql: str, params: Params = (), *, batch_size: int = 500) -> Iterator[Row]:
        try:
            with self._conn.cursor(name=_cursor_name()) as cursor:
                cursor.itersize = batch_size
                cursor.execute(to_pyformat(sql), params)
                while batch := cursor.fetchmany(batch_size):
                    yield from batch
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    def executescript(self, script: str) -> None:
        try:
            self._conn.execute(script.encode())
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc


class PostgresDatabase(_PostgresCommon, Database):
    dialect = "postgres"

    def __init__(self, settings: DatabaseSettings, *, name: str | None = None) -> None:
        super().__init__(settings, name=name)
        self._init_common()
        self._pool: ConnectionPool[psycopg.Connection[Row]] | None = None

    def open(self) -> None:
        pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            self._conninfo,
            check=_check_sync,
            reconnect_failed=self._reconnect_failed,
            **self._pool_options(),
        )
        try:
            pool.open(wait=True, timeout=self.settings.pool_timeout_s)
            with pool.connection():
                pass
        except DRIVER_ERRORS as exc:
            pool.close()
            raise self._unavailable(exc) from exc
        self._pool = pool
        track_pool(self)
        log.info("db_pool_opened", pool=self.name, url=self._masked_url)

    def close(self) -> None:
        untrack_pool(self)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()

    def pool_gauges(self) -> tuple[int, int, int]:
        if self._pool is None:
            return (0, 0, 0)
        stats = self._pool.get_stats()
        return (stats["pool_size"], stats["pool_available"], stats.get("requests_waiting", 0))

    @contextlib.contextmanager
    def _checkout(self, db: str) -> Iterator[psycopg.Connection[Row]]:
        pool = self._pool
        if pool is None:
            raise DatabaseUnavailable("postgres: database is not open; call open() first")
        schema = schema_of(db)
        for attempt in (1, 2):
            with pool.connection() as conn:
                if self._search_path.get(conn) != schema:
                    try:
                        conn.execute(_SET_SEARCH_PATH[db])
                    except psycopg.OperationalError:
                        if attempt == 1 and conn.broken:
                            log.warning("db_connection_lost_before_use", pool=self.name)
                            continue
                        raise
                    self._search_path[conn] = schema
                yield conn
                return

    def execute(self, sql: str, params: Params = (), *, db: str = "main") -> int:
        query = to_pyformat(sql)
        try:
            with self._checkout(db) as conn:
                return conn.execute(query, params).rowcount
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    def executemany(self, sql: str, seq_of_params: Sequence[Params], *, db: str = "main") -> int:
        query = to_pyformat(sql)
        try:
            with self._checkout(db) as conn, conn.cursor() as cursor:
                cursor.executemany(query, seq_of_params)
                return cursor.rowcount
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    def fetchone(self, sql: str, params: Params = (), *, db: str = "main") -> Row | None:
        query = to_pyformat(sql)
        try:
            with self._checkout(db) as conn:
                return conn.execute(query, params).fetchone()
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    def fetchall(self, sql: str, params: Params = (), *, db: str = "main") -> list[Row]:
        query = to_pyformat(sql)
        try:
            with self._checkout(db) as conn:
                return conn.execute(query, params).fetchall()
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    def iterate(
        self, sql: str, params: Params = (), *, db: str = "main", batch_size: int = 500
    ) -> Iterator[Row]:
        try:
            with self._checkout(db) as conn, conn.transaction():
                yield from PostgresTransaction(conn).iterate(sql, params, batch_size=batch_size)
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    @contextlib.contextmanager
    def transaction(self, *, db: str = "main") -> Iterator[Transaction]:
        try:
            with self._checkout(db) as conn, conn.transaction():
                yield PostgresTransaction(conn)
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    def executescript(self, script: str, *, db: str) -> None:
        try:
            with self._checkout(db) as conn:
                conn.execute(script.encode())
        except DRIVER_ERRORS as exc:
            raise translate_postgres(exc) from exc

    @contextlib.contextmanager
    def singleton_lock(self, name: str) -> Iterator[HeldLock]:
        try:
            conn = psycopg.Connection.connect(
                self._conninfo,
                connect_timeout=max(1, int(self.settings.pool_timeout_s)),
                **connection_kwargs(self._conninfo),
            )
        except DRIVER_ERRORS as exc:
            raise self._unavailable(exc) from exc
        key = advisory_key(name)
        try:
            try:
                row = conn.execute("SELECT pg_try_advisory_lock(%s) AS held", (key,)).fetchone()
            except DRIVER_ERRORS as exc:
                raise translate_postgres(exc) from exc
            if not (row and row["held"]):
                raise LockNotAcquired(f"singleton lock {name!r} is held by another process")
            try:
                yield _SyncAdvisoryLock(name, conn)
            finally:
                if not conn.broken:
                    with contextlib.suppress(*DRIVER_ERRORS):
                        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        finally:
            conn.close()

    def stats(self) -> dict[str, Any]:
        return dict(self._pool_stats(self._pool))

    def _claim(
        self,
        table: str,
        where: str,
        params: Params,
        order_by: str,
        limit: int,
        owner: str,
        now: datetime,
        expires_at: datetime,
        db: str,
    ) -> list[Row]:
        statement = claim_sql.postgres_claim_sql(table, where, order_by, limit)
        return self.fetchall(statement, [*params, now, owner, expires_at], db=db)
