"""PostgreSQL backend: the asyncio and synchronous facades over psycopg_pool.

Everything the two share (connection options, pool checks, schemas, advisory locks, the claim
statement, the retry decision) lives in runtime.db.postgres_session; driver errors are translated
by `POSTGRES_ERRORS` (runtime.db.errors). What remains here is each facade's own (a)waiting calls.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from runtime.config import DatabaseSettings
from runtime.db.base import (
    AsyncDatabase,
    AsyncTransaction,
    Claim,
    Database,
    HeldLock,
    Params,
    Row,
    Transaction,
)
from runtime.db.errors import POSTGRES_DRIVER_ERRORS, POSTGRES_ERRORS
from runtime.db.metrics import track_pool, untrack_pool
from runtime.db.placeholders import to_pyformat
from runtime.db.postgres_session import (
    SET_SEARCH_PATH,
    TRY_LOCK,
    UNLOCK,
    PostgresCommon,
    advisory_key,
    check_async,
    check_lock_taken,
    check_sync,
    cursor_name,
    lock_lost,
    schema_of,
)

__all__ = [
    "AsyncPostgresDatabase",
    "AsyncPostgresTransaction",
    "PostgresDatabase",
    "PostgresTransaction",
    "advisory_key",
]


class PooledAsyncConnection(psycopg.AsyncConnection[Row]):
    """A pooled connection that keeps one cursor for the single statements of `execute` and
    `fetchone`: `conn.execute` builds a new cursor (its adapters and transformer) each time, a
    fifth of a short query's CPU. Only one checkout uses a connection at a time. The cursor
    keeps its last result until the next statement; `fetchall`, whose results can be large,
    takes a cursor of its own."""

    _statements: psycopg.AsyncCursor[Row] | None = None

    def statements(self) -> psycopg.AsyncCursor[Row]:
        cursor = self._statements
        if cursor is None or cursor.closed:
            cursor = self._statements = self.cursor()
        return cursor


AsyncPool = AsyncConnectionPool[PooledAsyncConnection]


class _AsyncAdvisoryLock(HeldLock):
    """The session holding the advisory lock must still be alive for the lock to be ours."""

    def __init__(self, name: str, conn: psycopg.AsyncConnection[Any]) -> None:
        super().__init__(name)
        self._conn = conn

    async def ensure_held(self) -> None:
        try:
            await self._conn.execute("SELECT 1")
        except POSTGRES_DRIVER_ERRORS as exc:
            raise lock_lost(self.name) from exc


class _SyncAdvisoryLock(HeldLock):
    def __init__(self, name: str, conn: psycopg.Connection[Any]) -> None:
        super().__init__(name)
        self._conn = conn

    def ensure_held_sync(self) -> None:
        try:
            self._conn.execute("SELECT 1")
        except POSTGRES_DRIVER_ERRORS as exc:
            raise lock_lost(self.name) from exc


# --- asyncio facade ---


class AsyncPostgresTransaction(AsyncTransaction):
    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        with POSTGRES_ERRORS:
            return (await self._conn.execute(to_pyformat(sql), params)).rowcount

    async def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> int:
        with POSTGRES_ERRORS:
            async with self._conn.cursor() as cursor:
                await cursor.executemany(to_pyformat(sql), seq_of_params)
                return cursor.rowcount

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        with POSTGRES_ERRORS:
            return await (await self._conn.execute(to_pyformat(sql), params)).fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        with POSTGRES_ERRORS:
            return await (await self._conn.execute(to_pyformat(sql), params)).fetchall()

    async def iterate(
        self, sql: str, params: Params = (), *, batch_size: int = 500
    ) -> AsyncGenerator[Row, None]:
        with POSTGRES_ERRORS:
            async with self._conn.cursor(name=cursor_name()) as cursor:
                cursor.itersize = batch_size
                await cursor.execute(to_pyformat(sql), params)
                while batch := await cursor.fetchmany(batch_size):
                    for row in batch:
                        yield row

    async def executescript(self, script: str) -> None:
        with POSTGRES_ERRORS:
            await self._conn.execute(script.encode())


class AsyncPostgresDatabase(PostgresCommon, AsyncDatabase):
    dialect = "postgres"
    _pool: AsyncPool | None

    def __init__(self, settings: DatabaseSettings, *, name: str | None = None) -> None:
        super().__init__(settings, name=name)
        self._init_common()

    async def open(self) -> None:
        started = time.monotonic()
        await self._check_login()
        pool: AsyncPool = AsyncConnectionPool(
            self._conninfo,
            connection_class=PooledAsyncConnection,
            check=check_async,
            reconnect_failed=self._reconnect_failed,
            **self._pool_options(),
        )
        try:
            await pool.open(wait=True, timeout=self._pool_wait_s(started))
            async with pool.connection():  # min_size may be 0: prove the server answers
                pass
        except POSTGRES_DRIVER_ERRORS as exc:
            await pool.close()
            raise self._unavailable(exc) from exc
        self._pool = pool
        track_pool(self)
        self._log_opened()

    async def _check_login(self) -> None:
        """One connection before the pool: a server that refuses the login or the database
        says so at once (DatabaseRefused), where the pool would retry until its timeout. A
        server not reachable yet is left to the pool to wait for, as before."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, **self._lock_connect_options()
            )
        except POSTGRES_DRIVER_ERRORS as exc:
            refused = self._refused(exc)
            if refused is not None:
                raise refused from exc
            return
        await conn.close()

    async def close(self) -> None:
        untrack_pool(self)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _acquire(self, db: str) -> tuple[AsyncPool, PooledAsyncConnection]:
        """A pooled connection whose search_path is `db`'s schema, and the pool to give it back
        to (`putconn`). Raises driver errors.

        The pool's own `connection()` context adds a commit and a rollback around the block,
        which on these autocommit connections do nothing that `putconn` does not (it rolls
        back a connection left in a transaction and drops a broken one): the one-statement
        calls below take and give back directly (bench/api)."""
        pool = self._pool
        if pool is None:
            raise self._not_open()
        schema = schema_of(db)
        for attempt in (1, 2):
            conn = await pool.getconn()
            if self._search_path.get(conn) == schema:
                return pool, conn
            try:
                await conn.execute(SET_SEARCH_PATH[db])
            except BaseException as exc:
                await pool.putconn(conn)
                if isinstance(exc, psycopg.OperationalError) and self._retry_fresh(attempt, conn):
                    continue
                raise
            self._search_path[conn] = schema
            return pool, conn
        raise AssertionError("unreachable: the second attempt returns or raises")

    @contextlib.asynccontextmanager
    async def _checkout(self, db: str) -> AsyncIterator[PooledAsyncConnection]:
        pool, conn = await self._acquire(db)
        try:
            yield conn
        finally:
            await pool.putconn(conn)

    async def execute(self, sql: str, params: Params = (), *, db: str = "main") -> int:
        query = to_pyformat(sql)
        with POSTGRES_ERRORS:
            pool, conn = await self._acquire(db)
            try:
                return (await conn.statements().execute(query, params)).rowcount
            finally:
                await pool.putconn(conn)

    async def executemany(
        self, sql: str, seq_of_params: Sequence[Params], *, db: str = "main"
    ) -> int:
        query = to_pyformat(sql)
        with POSTGRES_ERRORS:
            async with self._checkout(db) as conn, conn.cursor() as cursor:
                await cursor.executemany(query, seq_of_params)
                return cursor.rowcount

    async def fetchone(self, sql: str, params: Params = (), *, db: str = "main") -> Row | None:
        query = to_pyformat(sql)
        with POSTGRES_ERRORS:
            pool, conn = await self._acquire(db)
            try:
                return await (await conn.statements().execute(query, params)).fetchone()
            finally:
                await pool.putconn(conn)

    async def fetchall(self, sql: str, params: Params = (), *, db: str = "main") -> list[Row]:
        query = to_pyformat(sql)
        with POSTGRES_ERRORS:
            pool, conn = await self._acquire(db)
            try:
                return await (await conn.execute(query, params)).fetchall()
            finally:
                await pool.putconn(conn)

    async def iterate(
        self, sql: str, params: Params = (), *, db: str = "main", batch_size: int = 500
    ) -> AsyncIterator[Row]:
        with POSTGRES_ERRORS:
            # A named (server-side) cursor lives in a transaction.
            async with self._checkout(db) as conn, conn.transaction():
                rows = AsyncPostgresTransaction(conn).iterate(sql, params, batch_size=batch_size)
                async with contextlib.aclosing(rows):
                    async for row in rows:
                        yield row

    @contextlib.asynccontextmanager
    async def transaction(self, *, db: str = "main") -> AsyncIterator[AsyncTransaction]:
        with POSTGRES_ERRORS:
            async with self._checkout(db) as conn, conn.transaction():
                yield AsyncPostgresTransaction(conn)

    async def executescript(self, script: str, *, db: str) -> None:
        with POSTGRES_ERRORS:
            async with self._checkout(db) as conn:
                # No parameters: psycopg sends it as one simple query, several statements allowed.
                await conn.execute(script.encode())

    @contextlib.asynccontextmanager
    async def singleton_lock(self, name: str) -> AsyncIterator[HeldLock]:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, **self._lock_connect_options()
            )
        except POSTGRES_DRIVER_ERRORS as exc:
            raise self._unavailable(exc) from exc
        key = advisory_key(name)
        try:
            with POSTGRES_ERRORS:
                row = await (await conn.execute(TRY_LOCK, (key,))).fetchone()
            check_lock_taken(row, name)
            try:
                yield _AsyncAdvisoryLock(name, conn)
            finally:
                if not conn.broken:
                    with contextlib.suppress(*POSTGRES_DRIVER_ERRORS):
                        await conn.execute(UNLOCK, (key,))
        finally:
            await conn.close()

    async def stats(self) -> dict[str, Any]:
        return self._stats()

    async def _claim(self, claim: Claim) -> list[Row]:
        statement, params = self._claim_query(claim)
        return await self.fetchall(statement, params, db=claim.db)


# --- synchronous facade ---


class PostgresTransaction(Transaction):
    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> int:
        with POSTGRES_ERRORS:
            return self._conn.execute(to_pyformat(sql), params).rowcount

    def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> int:
        with POSTGRES_ERRORS, self._conn.cursor() as cursor:
            cursor.executemany(to_pyformat(sql), seq_of_params)
            return cursor.rowcount

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        with POSTGRES_ERRORS:
            return self._conn.execute(to_pyformat(sql), params).fetchone()

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        with POSTGRES_ERRORS:
            return self._conn.execute(to_pyformat(sql), params).fetchall()

    def iterate(self, sql: str, params: Params = (), *, batch_size: int = 500) -> Iterator[Row]:
        with POSTGRES_ERRORS, self._conn.cursor(name=cursor_name()) as cursor:
            cursor.itersize = batch_size
            cursor.execute(to_pyformat(sql), params)
            while batch := cursor.fetchmany(batch_size):
                yield from batch

    def executescript(self, script: str) -> None:
        with POSTGRES_ERRORS:
            self._conn.execute(script.encode())


class PostgresDatabase(PostgresCommon, Database):
    dialect = "postgres"
    _pool: ConnectionPool[psycopg.Connection[Row]] | None

    def __init__(self, settings: DatabaseSettings, *, name: str | None = None) -> None:
        super().__init__(settings, name=name)
        self._init_common()

    def open(self) -> None:
        started = time.monotonic()
        self.check_login()
        pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            self._conninfo,
            check=check_sync,
            reconnect_failed=self._reconnect_failed,
            **self._pool_options(),
        )
        try:
            pool.open(wait=True, timeout=self._pool_wait_s(started))
            with pool.connection():
                pass
        except POSTGRES_DRIVER_ERRORS as exc:
            pool.close()
            raise self._unavailable(exc) from exc
        self._pool = pool
        track_pool(self)
        self._log_opened()

    def check_login(self) -> None:
        """See AsyncPostgresDatabase._check_login; also `runtime.db.check_login`."""
        try:
            conn = psycopg.Connection.connect(self._conninfo, **self._lock_connect_options())
        except POSTGRES_DRIVER_ERRORS as exc:
            refused = self._refused(exc)
            if refused is not None:
                raise refused from exc
            return
        conn.close()

    def close(self) -> None:
        untrack_pool(self)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()

    @contextlib.contextmanager
    def _checkout(self, db: str) -> Iterator[psycopg.Connection[Row]]:
        pool = self._pool
        if pool is None:
            raise self._not_open()
        schema = schema_of(db)
        for attempt in (1, 2):
            with pool.connection() as conn:
                if self._search_path.get(conn) != schema:
                    try:
                        conn.execute(SET_SEARCH_PATH[db])
                    except psycopg.OperationalError:
                        if self._retry_fresh(attempt, conn):
                            continue
                        raise
                    self._search_path[conn] = schema
                yield conn
                return

    def execute(self, sql: str, params: Params = (), *, db: str = "main") -> int:
        query = to_pyformat(sql)
        with POSTGRES_ERRORS, self._checkout(db) as conn:
            return conn.execute(query, params).rowcount

    def executemany(self, sql: str, seq_of_params: Sequence[Params], *, db: str = "main") -> int:
        query = to_pyformat(sql)
        with POSTGRES_ERRORS, self._checkout(db) as conn, conn.cursor() as cursor:
            cursor.executemany(query, seq_of_params)
            return cursor.rowcount

    def fetchone(self, sql: str, params: Params = (), *, db: str = "main") -> Row | None:
        query = to_pyformat(sql)
        with POSTGRES_ERRORS, self._checkout(db) as conn:
            return conn.execute(query, params).fetchone()

    def fetchall(self, sql: str, params: Params = (), *, db: str = "main") -> list[Row]:
        query = to_pyformat(sql)
        with POSTGRES_ERRORS, self._checkout(db) as conn:
            return conn.execute(query, params).fetchall()

    def iterate(
        self, sql: str, params: Params = (), *, db: str = "main", batch_size: int = 500
    ) -> Iterator[Row]:
        with POSTGRES_ERRORS, self._checkout(db) as conn, conn.transaction():
            yield from PostgresTransaction(conn).iterate(sql, params, batch_size=batch_size)

    @contextlib.contextmanager
    def transaction(self, *, db: str = "main") -> Iterator[Transaction]:
        with POSTGRES_ERRORS, self._checkout(db) as conn, conn.transaction():
            yield PostgresTransaction(conn)

    def executescript(self, script: str, *, db: str) -> None:
        with POSTGRES_ERRORS, self._checkout(db) as conn:
            conn.execute(script.encode())

    @contextlib.contextmanager
    def singleton_lock(self, name: str) -> Iterator[HeldLock]:
        try:
            conn = psycopg.Connection.connect(self._conninfo, **self._lock_connect_options())
        except POSTGRES_DRIVER_ERRORS as exc:
            raise self._unavailable(exc) from exc
        key = advisory_key(name)
        try:
            with POSTGRES_ERRORS:
                row = conn.execute(TRY_LOCK, (key,)).fetchone()
            check_lock_taken(row, name)
            try:
                yield _SyncAdvisoryLock(name, conn)
            finally:
                if not conn.broken:
                    with contextlib.suppress(*POSTGRES_DRIVER_ERRORS):
                        conn.execute(UNLOCK, (key,))
        finally:
            conn.close()

    def stats(self) -> dict[str, Any]:
        return self._stats()

    def _claim(self, claim: Claim) -> list[Row]:
        statement, params = self._claim_query(claim)
        return self.fetchall(statement, params, db=claim.db)
