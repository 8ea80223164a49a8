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

from runtime.errors import MigrationError
from runtime.online_backup import online_backup


@dataclass(frozen=True)
class Source:
    name: str
    path: Path
    schema: str


def snapshot_path(work_dir: Path, source: Source) -> Path:
    return work_dir / "snapshots" / f"{source.name}.sqlite"


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


def start_snapshots(
    sources: list[Source], work_dir: Path, *, resume: bool
) -> Mapping[str, Future[Path]]:
    """Snapshot every source, one after the other, in a thread (SQLite releases the GIL while
    it copies pages); source name -> its snapshot's path. A resumed run reuses the snapshots
    it finds, which its tables already copied were read from."""

    def take(source: Source) -> Path:
        path = snapshot_path(work_dir, source)
        if resume and path.exists():
            return path
        return snapshot(source.path, path)

    thread = ThreadPoolExecutor(max_workers=1)
    try:
        return {source.name: thread.submit(take, source) for source in sources}
    finally:
        thread.shutdown(wait=False)
