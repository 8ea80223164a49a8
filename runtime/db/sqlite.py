"""SQLite backend: the synchronous and asyncio facades over the operations of runtime.db.sqlite_ops.

Both facades run the same operations (runtime.db.sqlite_ops) on connections from the same
per-file sets (runtime.db.sqlite_files); driver errors are translated by `SQLITE_ERRORS`
(runtime.db.errors). What remains here is how each facade bounds concurrency and where it runs an
operation.

The async facade runs the synchronous sqlite3 code on a worker thread, one hop per call (a
whole execute-and-fetch happens in one hop, where aiosqlite needs two or three). Like aiosqlite,
every connection has its own worker thread: a shared pool hands consecutive calls to whichever
thread the kernel wakes, and that cold hand-off measured 1.6x slower per insert than a thread that
stays with its connection (bench/db_overhead). Every connection having a thread also means a
transaction holding the write lock always gets one to commit. Writing transactions of one process
queue on an asyncio lock per file rather than on busy_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

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
from runtime.db.errors import SQLITE_ERRORS
from runtime.db.sqlite_files import SQLiteCommon
from runtime.db.sqlite_ops import (
    op_begin,
    op_claim,
    op_execute,
    op_executemany,
    op_executescript,
    op_fetchall,
    op_fetchmany,
    op_fetchone,
    op_finish,
    op_open_cursor,
    op_script_in_transaction,
)
from runtime.errors import DatabaseUnavailable

T = TypeVar("T")


# --- synchronous facade ---


class SQLiteTransaction(Transaction):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> int:
        with SQLITE_ERRORS:
            return op_execute(self._conn, sql, params)

    def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> int:
        with SQLITE_ERRORS:
            return op_executemany(self._conn, sql, seq_of_params)

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        with SQLITE_ERRORS:
            return op_fetchone(self._conn, sql, params)

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        with SQLITE_ERRORS:
            return op_fetchall(self._conn, sql, params)

    def iterate(self, sql: str, params: Params = (), *, batch_size: int = 500) -> Iterator[Row]:
        with SQLITE_ERRORS:
            cursor = op_open_cursor(self._conn, sql, params)
        try:
            while True:
                with SQLITE_ERRORS:
                    batch = op_fetchmany(cursor, batch_size)
                if not batch:
                    return
                yield from batch
        finally:
            cursor.close()

    def executescript(self, script: str) -> None:
        with SQLITE_ERRORS:
            op_script_in_transaction(self._conn, script)


class SQLiteDatabase(SQLiteCommon, Database):
    dialect = "sqlite"

    def __init__(self, settings: DatabaseSettings, *, name: str | None = None) -> None:
        super().__init__(settings, name=name)
        self._init_files()
        self._limits: dict[str, threading.BoundedSemaphore] = {}

    def open(self) -> None:
        self._open_files()
        self._limits = {
            name: threading.BoundedSemaphore(self.settings.pool_max_size) for name in self._files
        }

    def close(self) -> None:
        self._close_files()

    @contextlib.contextmanager
    def _connection(self, db: str) -> Iterator[sqlite3.Connection]:
        files = self._file(db)
        limit = self._limits[db]
        files.waiting += 1
        acquired = limit.acquire(timeout=self.settings.pool_timeout_s)
        files.waiting -= 1
        if not acquired:
            raise DatabaseUnavailable(f"sqlite: no free connection to {db!r} in time")
        try:
            with SQLITE_ERRORS:
                conn = files.take()
            broken = False
            try:
                yield conn
            except sqlite3.Error:
                broken = True
                raise
            finally:
                files.give_back(conn, broken)
        finally:
            limit.release()

    def execute(self, sql: str, params: Params = (), *, db: str = "main") -> int:
        with self._connection(db) as conn, SQLITE_ERRORS:
            return op_execute(conn, sql, params)

    def executemany(self, sql: str, seq_of_params: Sequence[Params], *, db: str = "main") -> int:
        with self._connection(db) as conn, SQLITE_ERRORS:
            return op_executemany(conn, sql, seq_of_params)

    def fetchone(self, sql: str, params: Params = (), *, db: str = "main") -> Row | None:
        with self._connection(db) as conn, SQLITE_ERRORS:
            return op_fetchone(conn, sql, params)

    def fetchall(self, sql: str, params: Params = (), *, db: str = "main") -> list[Row]:
        with self._connection(db) as conn, SQLITE_ERRORS:
            return op_fetchall(conn, sql, params)

    def iterate(
        self, sql: str, params: Params = (), *, db: str = "main", batch_size: int = 500
    ) -> Iterator[Row]:
        with self._connection(db) as conn:
            yield from SQLiteTransaction(conn).iterate(sql, params, batch_size=batch_size)

    @contextlib.contextmanager
    def transaction(self, *, db: str = "main") -> Iterator[Transaction]:
        with self._connection(db) as conn:
            with SQLITE_ERRORS:
                op_begin(conn)
            try:
                yield SQLiteTransaction(conn)
            except BaseException:
                with SQLITE_ERRORS:
                    op_finish(conn, False)
                raise
            with SQLITE_ERRORS:
                op_finish(conn, True)

    def executescript(self, script: str, *, db: str) -> None:
        with self._connection(db) as conn, SQLITE_ERRORS:
            op_executescript(conn, script)

    def singleton_lock(self, name: str) -> contextlib.AbstractContextManager[HeldLock]:
        return self._file_lock(name)

    def stats(self) -> dict[str, Any]:
        return self._stats()

    def _claim(self, claim: Claim) -> list[Row]:
        with self._connection(claim.db) as conn, SQLITE_ERRORS:
            return op_claim(conn, claim)


# --- asyncio facade ---


async def _wait_uncancellable(job: Future[Any]) -> None:
    while not job.done():
        with contextlib.suppress(BaseException):
            await asyncio.wrap_future(job)


class AsyncSQLiteTransaction(AsyncTransaction):
    def __init__(self, owner: AsyncSQLiteDatabase, conn: sqlite3.Connection) -> None:
        self._owner = owner
        self._conn = conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._owner._run_on(self._conn, fn, self._conn, *args)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._run(op_execute, sql, params)

    async def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> int:
        return await self._run(op_executemany, sql, seq_of_params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self._run(op_fetchone, sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._run(op_fetchall, sql, params)

    async def iterate(
        self, sql: str, params: Params = (), *, batch_size: int = 500
    ) -> AsyncGenerator[Row, None]:
        cursor = await self._run(op_open_cursor, sql, params)
        try:
            while batch := await self._owner._run_on(self._conn, op_fetchmany, cursor, batch_size):
                for row in batch:
                    yield row
        finally:
            cursor.close()

    async def executescript(self, script: str) -> None:
        await self._run(op_script_in_transaction, script)


class AsyncSQLiteDatabase(SQLiteCommon, AsyncDatabase):
    dialect = "sqlite"

    def __init__(self, settings: DatabaseSettings, *, name: str | None = None) -> None:
        super().__init__(settings, name=name)
        self._init_files()
        self._threads: dict[int, ThreadPoolExecutor] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._write_locks: dict[str, asyncio.Lock] = {}

    async def open(self) -> None:
        self._open_files()
        for files in self._files.values():
            files.on_close = self._stop_thread
        size = self.settings.pool_max_size
        self._limits = {name: asyncio.Semaphore(size) for name in self._files}
        self._write_locks = {name: asyncio.Lock() for name in self._files}

    async def close(self) -> None:
        self._close_files()
        for thread in self._threads.values():
            thread.shutdown(wait=False)
        self._threads.clear()

    def _thread_of(self, conn: sqlite3.Connection) -> ThreadPoolExecutor:
        thread = self._threads.get(id(conn))
        if thread is None:
            thread = ThreadPoolExecutor(1, thread_name_prefix=f"domos-{self.name}")
            self._threads[id(conn)] = thread
        return thread

    def _stop_thread(self, conn: sqlite3.Connection) -> None:
        thread = self._threads.pop(id(conn), None)
        if thread is not None:
            thread.shutdown(wait=False)

    async def _run_on(self, conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the worker thread of `conn` (which `args` use)."""
        if not self._opened:
            raise DatabaseUnavailable("sqlite: database is not open; call open() first")
        job = self._thread_of(conn).submit(fn, *args)
        try:
            with SQLITE_ERRORS:
                return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            # The thread may still be using the connection: wait it out before the caller hands
            # the connection back to the pool, then let the cancellation through.
            await _wait_uncancellable(job)
            raise

    @contextlib.asynccontextmanager
    async def _connection(self, db: str) -> AsyncIterator[sqlite3.Connection]:
        files = self._file(db)
        limit = self._limits[db]
        if limit.locked():
            files.waiting += 1
            try:
                async with asyncio.timeout(self.settings.pool_timeout_s):
                    await limit.acquire()
            except TimeoutError:
                raise DatabaseUnavailable(f"sqlite: no free connection to {db!r} in time") from None
            finally:
                files.waiting -= 1
        else:
            await limit.acquire()
        try:
            conn = files.take_idle()
            if conn is None:
                with SQLITE_ERRORS:
                    conn = await asyncio.to_thread(files.open_new)
            broken = False
            try:
                yield conn
            except sqlite3.Error:
                broken = True
                raise
            finally:
                files.give_back(conn, broken)
        finally:
            limit.release()

    @contextlib.asynccontextmanager
    async def _writer(self, db: str) -> AsyncIterator[sqlite3.Connection]:
        """A connection for writing to `db`, after this process's earlier writers to it."""
        self._file(db)
        async with self._write_locks[db], self._connection(db) as conn:
            yield conn

    async def execute(self, sql: str, params: Params = (), *, db: str = "main") -> int:
        async with self._connection(db) as conn:
            return await self._run_on(conn, op_execute, conn, sql, params)

    async def executemany(
        self, sql: str, seq_of_params: Sequence[Params], *, db: str = "main"
    ) -> int:
        async with self._connection(db) as conn:
            return await self._run_on(conn, op_executemany, conn, sql, seq_of_params)

    async def fetchone(self, sql: str, params: Params = (), *, db: str = "main") -> Row | None:
        async with self._connection(db) as conn:
            return await self._run_on(conn, op_fetchone, conn, sql, params)

    async def fetchall(self, sql: str, params: Params = (), *, db: str = "main") -> list[Row]:
        async with self._connection(db) as conn:
            return await self._run_on(conn, op_fetchall, conn, sql, params)

    async def iterate(
        self, sql: str, params: Params = (), *, db: str = "main", batch_size: int = 500
    ) -> AsyncIterator[Row]:
        async with self._connection(db) as conn:
            rows = AsyncSQLiteTransaction(self, conn).iterate(sql, params, batch_size=batch_size)
            async with contextlib.aclosing(rows):
                async for row in rows:
                    yield row

    @contextlib.asynccontextmanager
    async def transaction(self, *, db: str = "main") -> AsyncIterator[AsyncTransaction]:
        async with self._writer(db) as conn:
            await self._run_on(conn, op_begin, conn)
            try:
                yield AsyncSQLiteTransaction(self, conn)
            except BaseException:
                await self._run_on(conn, op_finish, conn, False)
                raise
            await self._run_on(conn, op_finish, conn, True)

    async def executescript(self, script: str, *, db: str) -> None:
        async with self._writer(db) as conn:
            await self._run_on(conn, op_executescript, conn, script)

    @contextlib.asynccontextmanager
    async def singleton_lock(self, name: str) -> AsyncIterator[HeldLock]:
        with self._file_lock(name) as held:
            yield held

    async def stats(self) -> dict[str, Any]:
        return self._stats()

    async def _claim(self, claim: Claim) -> list[Row]:
        async with self._writer(claim.db) as conn:
            return await self._run_on(conn, op_claim, conn, claim)
