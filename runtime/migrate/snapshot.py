"""Sources and their snapshots: what is migrated is a copy taken by SQLite's online backup.

Light on purpose (sqlite3 only): `domos migrate` starts the snapshots in a thread before it
imports the rest of the migration, so the copies overlap those imports.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.errors import MigrationError
from runtime.online_backup import online_backup

if TYPE_CHECKING:
    from runtime.migrate.sqlite_source import ForeignKeyViolation


@dataclass(frozen=True)
class Source:
    name: str
    path: Path
    schema: str


@dataclass(frozen=True)
class Snapshot:
    path: Path
    #: The source as it was before the snapshot was taken (`source_state`); for a snapshot a
    #: resumed run reuses, as it is now (resume_state.check_sources compares the two).
    source_state: dict[str, Any]
    #: PRAGMA foreign_key_check of the snapshot, run by the snapshot's thread while the parent
    #: imports the rest of the migration (planning needs it first). None where the check
    #: failed: planning runs it again, where a damaged file is reported with its integrity
    #: check.
    foreign_key_violations: list[ForeignKeyViolation] | None = None


def snapshot_path(work_dir: Path, source: Source) -> Path:
    return work_dir / "snapshots" / f"{source.name}.sqlite"


#: The database header's file change counter (big-endian, bytes 24..27): incremented by every
#: transaction that changes a file in rollback-journal mode.
_CHANGE_COUNTER = slice(24, 28)
#: The WAL header: magic, format, page size, checkpoint sequence, salts, checksum. A WAL that
#: starts over after a checkpoint gets new salts, so two of one length still differ here.
_WAL_HEADER_BYTES = 32


def source_state(path: Path) -> dict[str, Any]:
    """What identifies the content of a source file without reading it: the main file's size,
    modification time and change counter, and of its write-ahead log (`-wal`), which holds a WAL
    database's latest transactions until a checkpoint, the size, time and header. A -wal of no
    bytes holds nothing (a read-only connection, the snapshot's own, may leave one where there
    was none). SQLite's data_version is not used: it only means something within one connection.

    Refuses a file that is missing or empty: SQLite would read a file of 0 bytes (and no
    write-ahead log) as an empty database, and migrate nothing from what is no database at all
    - a wrong path, a failed copy."""
    if not path.is_file():
        raise MigrationError(f"source database {path} does not exist")
    stat = path.stat()
    wal = path.with_name(path.name + "-wal")
    try:
        wal_stat = wal.stat()
    except FileNotFoundError:
        wal_stat = None
    if wal_stat is not None and wal_stat.st_size == 0:
        wal_stat = None
    if stat.st_size == 0 and wal_stat is None:
        raise MigrationError(
            f"source database {path} is empty (0 bytes): no SQLite database was ever written "
            "there; check the path"
        )
    with open(path, "rb") as file:
        header = file.read(_CHANGE_COUNTER.stop)
    state: dict[str, Any] = {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "change_counter": int.from_bytes(header[_CHANGE_COUNTER], "big"),
        "wal": None,
    }
    if wal_stat is not None:
        with open(wal, "rb") as file:
            wal_header = file.read(_WAL_HEADER_BYTES)
        state["wal"] = {
            "size": wal_stat.st_size,
            "mtime_ns": wal_stat.st_mtime_ns,
            "header": wal_header.hex(),
        }
    return state


def snapshot(source: Path, destination: Path) -> Path:
    """Copy `source` with the online backup API (runtime/online_backup.py). The copy is a work
    file, written without fsync (half the time) over the previous run's snapshot, if any; every
    run checks it before anything read from it is committed (integrity_gate.py)."""
    if not source.is_file():
        raise MigrationError(f"source database {source} does not exist")
    try:
        online_backup(source, destination, durable=False, reuse=True)
    except sqlite3.DatabaseError as exc:
        raise MigrationError(f"cannot snapshot {source}: {exc}") from exc
    return destination


def _foreign_key_violations(path: Path) -> list[ForeignKeyViolation] | None:
    # Not at the top: this module starts the snapshots before the rest is imported.
    from runtime.migrate.sqlite_source import foreign_key_violations, open_snapshot

    try:
        conn = open_snapshot(path)
        try:
            return foreign_key_violations(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None


def start_snapshots(
    sources: list[Source], work_dir: Path, *, resume: bool
) -> Mapping[str, Future[Snapshot]]:
    """Snapshot every source, one after the other, in a thread (SQLite releases the GIL while
    it copies pages); source name -> its snapshot. A resumed run reuses the snapshots it finds,
    which its tables already copied were read from, once it has compared each source with what
    the stopped run recorded of it (resume_state.check_sources)."""

    def take(source: Source) -> Snapshot:
        # Before the copy: a change while it runs makes the source differ from this record,
        # so a later --resume refuses rather than trusting a copy of unknown age.
        state = source_state(source.path)
        path = snapshot_path(work_dir, source)
        if not (resume and path.exists()):
            snapshot(source.path, path)
        return Snapshot(path, state, _foreign_key_violations(path))

    thread = ThreadPoolExecutor(max_workers=1)
    try:
        return {source.name: thread.submit(take, source) for source in sources}
    finally:
        thread.shutdown(wait=False)
