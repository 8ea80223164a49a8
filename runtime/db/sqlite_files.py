"""What both SQLite facades share: idle connections per file, the singleton file lock, open/close.

One file per logical database, a small set of connections per file; callers bound concurrency
themselves (a semaphore per file in each facade).
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from runtime.config import DatabaseSettings
from runtime.db.base import HeldLock, check_logical_db
from runtime.db.metrics import track_pool, untrack_pool
from runtime.db.sqlite_ops import connect
from runtime.errors import DatabaseUnavailable, LockNotAcquired, QueryError
from runtime.logical_databases import LOGICAL_DATABASES


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


def lock_path(settings: DatabaseSettings, name: str) -> Path:
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


class SQLiteCommon:
    """State of both facades; each adds its own concurrency limits and (a)waiting calls."""

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

    @contextlib.contextmanager
    def _file_lock(self, name: str) -> Iterator[HeldLock]:
        lock = FileLock(lock_path(self.settings, name), name)
        lock.acquire()  # non-blocking: never waits
        try:
            yield HeldLock(name)
        finally:
            lock.release()

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
