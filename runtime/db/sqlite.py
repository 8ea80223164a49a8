"""SQLite backend: one file per logical database, a small set of connections per file.

Connections run in WAL with `busy_timeout` from settings, `foreign_keys=ON`,
`synchronous=NORMAL`, in autocommit (sqlite3 `isolation_level=None`): a plain call commits by
itself, and `transaction()` starts with `BEGIN IMMEDIATE`, which takes the write lock up front so a
writer waits for `busy_timeout` instead of failing with SQLITE_BUSY when its read snapshot would
have to be upgraded.

The async facade runs the same synchronous sqlite3 code on a worker thread, one hop per call (a
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
import fcntl
import re
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar

import structlog

from runtime.config import DatabaseSettings
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
from runtime.db.errors import translate_sqlite
from runtime.db.metrics import track_pool, untrack_pool
from runtime.db.types import adapt_sqlite_params
from runtime.errors import DatabaseUnavailable, LockNotAcquired, QueryError
from runtime.logical_databases import LOGICAL_DATABASES

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


# --- synchronous operations on one connection (run on the caller's thread or the pool's) ---


def connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout_s,
        isolation_level=None,
        detect_types=sqlite3.PARSE_DECLTYPES,
        check_same_thread=False,  # used by one caller at a time, from pool threads
        cached_statements=256,
    )
    try:
        _enter_wal(conn, busy_timeout_s)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _enter_wal(conn: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Switch the file to WAL (a persistent setting), waiting out other connections doing so.

    Changing the journal mode needs an exclusive lock, and SQLite answers SQLITE_BUSY at once
    rather than calling the busy handler, so connections opening a new file together would fail.
    """
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def _rows(cursor: sqlite3.Cursor, rows: list[Any]) -> list[Row]:
    if cursor.description is None:
        return []
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def op_execute(conn: sqlite3.Connection, sql: str, params: Params) -> int:
    return conn.execute(sql, adapt_sqlite_params(params)).rowcount


def op_executemany(conn: sqlite3.Connection, sql: str, seq_of_params: Sequence[Params]) -> int:
    return conn.executemany(sql, (adapt_sqlite_params(p) for p in seq_of_params)).rowcount


def op_fetchall(conn: sqlite3.Connection, sql: str, params: Params) -> list[Row]:
    cursor = conn.execute(sql, adapt_sqlite_params(params))
    return _rows(cursor, cursor.fetchall())


def op_fetchone(conn: sqlite3.Connection, sql: str, params: Params) -> Row | None:
    cursor = conn.execute(sql, adapt_sqlite_params(params))
    row = cursor.fetchone()
    if row is None or cursor.description is None:
        return None
    # Finish the statement so it holds no read snapshot while the connection sits idle.
    cursor.close()
    return dict(zip([column[0] for column in cursor.description], row, strict=True))


def op_open_cursor(conn: sqlite3.Connection, sql: str, params: Params) -> sqlite3.Cursor:
    return conn.execute(sql, adapt_sqlite_params(params))


def op_fetchmany(cursor: sqlite3.Cursor, size: int) -> list[Row]:
    return _rows(cursor, cursor.fetchmany(size))


def op_executescript(conn: sqlite3.Connection, script: str) -> None:
    conn.executescript(script)


def split_statements(script: str) -> list[str]:
    """Split a script at the `;` that end complete statements (triggers' inner `;` kept)."""
    statements = []
    start = 0
    for match in re.finditer(";", script):
        candidate = script[start : match.end()]
        if sqlite3.complete_statement(candidate):
            if candidate.strip(" \t\r\n;"):
                statements.append(candidate)
            start = match.end()
    rest = script[start:]
    if rest.strip():
        if not sqlite3.complete_statement(rest + ";"):
            raise QueryError("script ends with an incomplete statement")
        statements.append(rest)
    return statements


def op_script_in_transaction(conn: sqlite3.Connection, script: str) -> None:
    # sqlite3's executescript would COMMIT the open transaction first; run statement by statement.
    for statement in split_statements(script):
        conn.execute(statement)


def op_begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def op_finish(conn: sqlite3.Connection, commit: bool) -> None:
    if conn.in_transaction:
        conn.execute("COMMIT" if commit else "ROLLBACK")


def op_claim(
    conn: sqlite3.Connection,
    table: str,
    where: str,
    params: Params,
    order_by: str,
    limit: int,
    owner: str,
    now: datetime,
    expires_at: datetime,
) -> list[Row]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        picked = conn.execute(
            claim_sql.sqlite_pick_sql(table, where, order_by, limit),
            adapt_sqlite_params([*params, now]),
        ).fetchall()
        ids = [row[0] for row in picked]
        rows: list[Row] = []
        if ids:
            rows = op_fetchall(
                conn, claim_sql.sqlite_lease_sql(table, len(ids)), [owner, expires_at, *ids]
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    position = {row_id: index for index, row_id in enumerate(ids)}
    rows.sort(key=lambda row: position[row["id"]])
    return rows


# --- connections per file ---


class FileConnections:
    """Idle connections of one SQLite file; thread-safe. Callers bound concurrency themselves."""

    def __init__(self, logical_db: str, path: Path, busy_timeout_s: float) -> None:
        self.logical_db = logical_db
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.open_count = 0
        self.waiting = 0
        self.closed = False
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        #: Called with every connection this pool closes (the async facade stops its thread).
        self.on_close: Callable[[sqlite3.Connection], None] | None = None

    def take_idle(self) -> sqlite3.Connection | None:
        """An idle connection, or None after reserving room for a new one (`open_new`)."""
        with self._lock:
            if self.closed:
                raise DatabaseUnavailable(f"sqlite: database {self.logical_db!r} is closed")
            if self._idle:
                return self._idle.pop()
            self.open_count += 1
            return None

    def open_new(self) -> sqlite3.Connection:
        try:
            return connect(self.path, self.busy_timeout_s)
        except BaseException:
            with self._lock:
                self.open_count -= 1
            raise

    def take(self) -> sqlite3.Connection:
        conn = self.take_idle()
        return conn if conn is not None else self.open_new()

    def give_back(self, conn: sqlite3.Connection, broken: bool = False) -> None:
        if not broken and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                broken = True
        with self._lock:
            if not (broken or self.closed):
                self._idle.append(conn)
                return
            self.open_count -= 1
        self._close(conn)

    def _close(self, conn: sqlite3.Connection) -> None:
        if self.on_close is not None:
            self.on_close(conn)
        conn.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
            self.open_count -= len(idle)
        for conn in idle:
            self._close(conn)

    @property
    def idle_count(self) -> int:
        return len(self._idle)


def _lock_path(settings: DatabaseSettings, name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", name):
        raise QueryError(f"lock names are letters, digits and _.:- (got {name!r})")
    main = settings.sqlite_path("main")
    return main.with_name(f"{main.name}.{name}.lock")


class FileLock:
    """Singleton lock on SQLite: `flock` on a file beside the main database.

    SQLite has no advisory locks. A lock row with a lease would need heartbeats and would outlive
    a crashed holder until it expired; the kernel drops an flock the moment its holder's file is
    closed, including when the process dies. Two descriptors conflict even inside one process,
    so two tasks contend exactly like two processes. flock is same-host only, which SQLite (WAL)
    already requires.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise LockNotAcquired(
                f"singleton lock {self.name!r} is held by another process"
            ) from None
        except BaseException:
            handle.close()
            raise
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class _SQLiteCommon:
    settings: DatabaseSettings
    name: str
    dialect = "sqlite"

    def _init_files(self) -> None:
        self._files: dict[str, FileConnections] = {}
        self._opened = False

    def _open_files(self) -> None:
        self._files = {
            name: FileConnections(
                name, self.settings.sqlite_path(name), self.settings.sqlite_busy_timeout_s
            )
            for name in LOGICAL_DATABASES
        }
        for path in self.settings.sqlite_paths.values():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailable(
                    f"sqlite: cannot create the directory of {path}: {exc.strerror}"
                ) from exc
        self._opened = True
        track_pool(self)

    def _close_files(self) -> None:
        untrack_pool(self)
        self._opened = False
        for files in self._files.values():
            files.close()

    def _file(self, db: str) -> FileConnections:
        try:
            return self._files[db]
        except KeyError:
            check_logical_db(db)
            raise DatabaseUnavailable("sqlite: database is not open; call open() first") from None

    def pool_gauges(self) -> tuple[int, int, int]:
        files = list(self._files.values())
        return (
            sum(f.open_count for f in files),
            sum(f.idle_count for f in files),
            sum(f.waiting for f in files),
        )

    def _stats(self) -> dict[str, Any]:
        size, available, waiting = self.pool_gauges()
        return {
            "dialect": "sqlite",
            "pool_size": size,
            "pool_available": available,
            "requests_waiting": waiting,
            "files": {
                name: {"path": str(f.path), "open": f.open_count, "idle": f.idle_count}
                for name, f in self._files.items()
            },
        }


def _sync_call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    except sqlite3.Error as exc:
        raise translate_sqlite(exc) from exc


# --- synchronous facade ---


class SQLiteTransaction(Transaction):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> int:
        return _sync_call(op_execute, self._conn, sql, params)

    def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> int:
        return _sync_call(op_executemany, self._conn, sql, seq_of_params)

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return _sync_call(op_fetchone, self._conn, sql, params)

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return _sync_call(op_fetchall, self._conn, sql, params)

    def iterate(self, sql: str, params: Params = (), *, batch_size: int = 500) -> Iterator[Row]:
        cursor = _sync_call(op_open_cursor, self._conn, sql, params)
        try:
            while batch := _sync_call(op_fetchmany, cursor, batch_size):
                yield from batch
        finally:
            cursor.close()

    def executescript(self, script: str) -> None:
        _sync_call(op_script_in_transaction, self._conn, script)


class SQLiteDatabase(_SQLiteCommon, Database):
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
            conn = _sync_call(files.take)
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
        with self._connection(db) as conn:
            return _sync_call(op_execute, conn, sql, params)

    def executemany(self, sql: str, seq_of_params: Sequence[Params], *, db: str = "main") -> int:
        with self._connection(db) as conn:
            return _sync_call(op_executemany, conn, sql, seq_of_params)

    def fetchone(self, sql: str, params: Params = (), *, db: str = "main") -> Row | None:
        with self._connection(db) as conn:
            return _sync_call(op_fetchone, conn, sql, params)

    def fetchall(self, sql: str, params: Params = (), *, db: str = "main") -> list[Row]:
        with self._connection(db) as conn:
            return _sync_call(op_fetchall, conn, sql, params)

    def iterate(
        self, sql: str, params: Params = (), *, db: str = "main", batch_size: int = 500
    ) -> Iterator[Row]:
        with self._connection(db) as conn:
            yield from SQLiteTransaction(conn).iterate(sql, params, batch_size=batch_size)

    @contextlib.contextmanager
    def transaction(self, *, db: str = "main") -> Iterator[Transaction]:
        with self._connection(db) as conn:
            _sync_call(op_begin, conn)
            try:
                yield SQLiteTransaction(conn)
            except BaseException:
                _sync_call(op_finish, conn, False)
                raise
            _sync_call(op_finish, conn, True)

    def executescript(self, script: str, *, db: str) -> None:
        with self._connection(db) as conn:
            _sync_call(op_executescript, conn, script)

    @contextlib.contextmanager
    def singleton_lock(self, name: str) -> Iterator[HeldLock]:
        lock = FileLock(_lock_path(self.settings, name), name)
        lock.acquire()
        try:
            yield HeldLock(name)
        finally:
            lock.release()

    def stats(self) -> dict[str, Any]:
        return self._stats()

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
        with self._connection(db) as conn:
            return _sync_call(
                op_claim, conn, table, where, params, order_by, limit, owner, now, expires_at
            )


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


class AsyncSQLiteDatabase(_SQLiteCommon, AsyncDatabase):
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

    async def _open_connection(self, files: FileConnections) -> sqlite3.Connection:
        try:
            return await asyncio.to_thread(files.open_new)
        except sqlite3.Error as exc:
            raise translate_sqlite(exc) from exc

    async def _run_on(self, conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the worker thread of `conn` (which `args` use)."""
        if not self._opened:
            raise DatabaseUnavailable("sqlite: database is not open; call open() first")
        job = self._thread_of(conn).submit(fn, *args)
        try:
            return await asyncio.wrap_future(job)
        except sqlite3.Error as exc:
            raise translate_sqlite(exc) from exc
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
                conn = await self._open_connection(files)
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
        self._file(db)
        async with self._write_locks[db], self._connection(db) as conn:
            await self._run_on(conn, op_begin, conn)
            try:
                yield AsyncSQLiteTransaction(self, conn)
            except BaseException:
                await self._run_on(conn, op_finish, conn, False)
                raise
            await self._run_on(conn, op_finish, conn, True)

    async def executescript(self, script: str, *, db: str) -> None:
        self._file(db)
        async with self._write_locks[db], self._connection(db) as conn:
            await self._run_on(conn, op_executescript, conn, script)

    @contextlib.asynccontextmanager
    async def singleton_lock(self, name: str) -> AsyncIterator[HeldLock]:
        lock = FileLock(_lock_path(self.settings, name), name)
        lock.acquire()  # non-blocking: never waits
        try:
            yield HeldLock(name)
        finally:
            lock.release()

    async def stats(self) -> dict[str, Any]:
        return self._stats()

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
        self._file(db)
        async with self._write_locks[db], self._connection(db) as conn:
            return await self._run_on(
                conn, op_claim, conn, table, where, params, order_by, limit, owner, now, expires_at
            )
