"""SQLite backups with the online backup API (a live database is never torn), each checked."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
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
    databases: Mapping[str, Path], backup_dir: Path, *, now: datetime | None = None
) -> list[BackupFile]:
    """Copy every existing database into BACKUP_DIR/sqlite/YYYY-MM-DD/HHMMSS/<name>.sqlite: one
    directory per run, so a later run of the day (the schedule runs every few hours) never
    replaces an earlier one, and one run's copies are restored together."""
    now = now or datetime.now()
    day_dir = backup_dir / "sqlite" / now.date().isoformat()
    target_dir = day_dir / f"{now:%H%M%S}"
    suffix = 1
    while target_dir.exists():  # two runs within a second
        target_dir = day_dir / f"{now:%H%M%S}-{suffix}"
        suffix += 1
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


def backup_set(kind_dir: Path, day: str | None = None, at: str | None = None) -> Path:
    """The directory of one run's copies: the run `at` (HHMMSS) of `day`, or its newest run;
    the newest day by default. A day directory holding the copies itself is the layout of
    backups made before one directory per run: it is that day's one run."""
    if day is None:
        days = sorted(
            (p for p in kind_dir.iterdir() if p.is_dir() and _is_day(p.name))
            if kind_dir.exists()
            else [],
            reverse=True,
        )
        if not days:
            raise BackupError(f"no backups under {kind_dir}")
        day_dir = days[0]
    else:
        day_dir = kind_dir / day
        if not day_dir.is_dir():
            raise BackupError(f"no backups of {day} under {kind_dir}")
    runs = sorted(p for p in day_dir.iterdir() if p.is_dir() and any(p.glob("*.sqlite")))
    if at is not None:
        chosen = day_dir / at
        if chosen not in runs:
            names = ", ".join(p.name for p in runs) or "none"
            raise BackupError(f"no run {at} in {day_dir} (runs: {names})")
        return chosen
    if runs:
        return runs[-1]
    if any(day_dir.glob("*.sqlite")):
        return day_dir
    raise BackupError(f"no backups in {day_dir}")


def _is_day(name: str) -> bool:
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return True


def restore_sqlite(
    backup_run_dir: Path, databases: Mapping[str, Path], only: set[str] | None = None
) -> list[Path]:
    """Put one run's copies (`backup_set`) back in place; the current file is kept as
    <file>.before-restore-<UTC time> (a second restore kept overwriting the first one's, the
    only copy of what was there before it)."""
    restored = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    for name, path in databases.items():
        if only is not None and name not in only:
            continue
        copy = backup_run_dir / f"{name}.sqlite"
        if not copy.exists():
            if only is not None:
                raise BackupError(f"no backup of {name} in {backup_run_dir}")
            continue
        if path.exists():
            kept = path.with_name(f"{path.name}.before-restore-{stamp}")
            online_copy(path, kept)
            log.info("backup_current_kept", database=name, path=str(kept))
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        online_copy(copy, path)
        restored.append(path)
        log.info("backup_restored", database=name, path=str(path), source=str(copy))
    if not restored:
        raise BackupError(f"nothing to restore from {backup_run_dir}")
    return restored
