"""SQLite backups with the online backup API (a live database is never torn), each checked."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import structlog

from runtime.errors import DomosError
from runtime.online_backup import online_backup

log = structlog.get_logger("domos.backup")


class BackupError(DomosError):
    """A backup or restore could not be made, or its copy failed the integrity check."""


@dataclass(frozen=True)
class BackupFile:
    name: str
    path: Path
    bytes: int


def online_copy(source: Path, destination: Path) -> None:
    """Consistent copy of a (possibly live) database, then PRAGMA integrity_check on the copy."""

    def check(copy: sqlite3.Connection) -> None:
        result = copy.execute("PRAGMA integrity_check").fetchall()
        if result != [("ok",)]:
            raise BackupError(f"copy of {source} failed integrity_check: {result[:3]}")

    try:
        online_backup(source, destination, check=check)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"cannot copy {source}: {exc}") from exc


def backup_sqlite(
    databases: Mapping[str, Path], backup_dir: Path, *, today: date | None = None
) -> list[BackupFile]:
    """Copy every existing database into BACKUP_DIR/sqlite/YYYY-MM-DD/<name>.sqlite."""
    day = (today or datetime.now().date()).isoformat()
    target_dir = backup_dir / "sqlite" / day
    copies = []
    for name, path in databases.items():
        if not path.exists():
            log.warning("backup_source_missing", database=name, path=str(path))
            continue
        destination = target_dir / f"{name}.sqlite"
        online_copy(path, destination)
        copies.append(BackupFile(name, destination, destination.stat().st_size))
        log.info(
            "backup_written", database=name, path=str(destination), bytes=destination.stat().st_size
        )
    if not copies:
        raise BackupError("none of the SQLite databases exists; nothing was backed up")
    return copies


def apply_retention(
    kind_dir: Path, *, keep_days: int | None, keep_count: int | None, today: date | None = None
) -> list[Path]:
    """Delete dated backup directories older than keep_days or beyond the newest keep_count."""
    today = today or datetime.now().date()
    dated = []
    for child in kind_dir.iterdir() if kind_dir.exists() else []:
        try:
            dated.append((date.fromisoformat(child.name), child))
        except ValueError:
            continue  # not ours
    dated.sort(reverse=True)
    removed = []
    for position, (day, path) in enumerate(dated):
        too_old = keep_days is not None and (today - day).days > keep_days
        too_many = keep_count is not None and position >= keep_count
        if too_old or too_many:
            shutil.rmtree(path)
            removed.append(path)
            log.info("backup_expired", path=str(path))
    return removed


def latest_backup_dir(kind_dir: Path) -> Path:
    days = (
        sorted((p for p in kind_dir.iterdir() if p.is_dir() and _is_day(p.name)), reverse=True)
        if kind_dir.exists()
        else []
    )
    if not days:
        raise BackupError(f"no backups under {kind_dir}")
    return days[0]


def _is_day(name: str) -> bool:
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return True


def restore_sqlite(
    backup_day_dir: Path, databases: Mapping[str, Path], only: set[str] | None = None
) -> list[Path]:
    """Put backed-up copies back in place; the current file is kept as <file>.before-restore."""
    restored = []
    for name, path in databases.items():
        if only is not None and name not in only:
            continue
        copy = backup_day_dir / f"{name}.sqlite"
        if not copy.exists():
            if only is not None:
                raise BackupError(f"no backup of {name} in {backup_day_dir}")
            continue
        if path.exists():
            online_copy(path, path.with_name(path.name + ".before-restore"))
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        online_copy(copy, path)
        restored.append(path)
        log.info("backup_restored", database=name, path=str(path), source=str(copy))
    if not restored:
        raise BackupError(f"nothing to restore from {backup_day_dir}")
    return restored
