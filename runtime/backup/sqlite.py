"""SQLite backups with the online backup API (a live database is never torn), each checked."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import structlog

from runtime.backup.manifest import PARTIAL_SUFFIX, fsync_dir, write_manifest
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
    replaces an earlier one, and one run's copies are restored together. The run is written
    under HHMMSS.partial/ and renamed after its manifest (runtime.backup.manifest): a run cut
    short by a full disk is never restored as if it held every database."""
    now = now or datetime.now()
    day_dir = backup_dir / "sqlite" / now.date().isoformat()
    target_dir = day_dir / f"{now:%H%M%S}"
    suffix = 1
    while target_dir.exists() or _partial(target_dir).exists():  # two runs within a second
        target_dir = day_dir / f"{now:%H%M%S}-{suffix}"
        suffix += 1
    partial_dir = _partial(target_dir)
    copies = []
    try:
        for name, path in databases.items():
            if not path.exists():
                log.warning("backup_source_missing", database=name, path=str(path))
                continue
            destination = partial_dir / f"{name}.sqlite"
            online_copy(path, destination)
            copies.append(
                BackupFile(name, target_dir / destination.name, destination.stat().st_size)
            )
        if not copies:
            raise BackupError("none of the SQLite databases exists; nothing was backed up")
        write_manifest(
            partial_dir,
            {copy.name: partial_dir / copy.path.name for copy in copies},
            made_at=now.isoformat(),
        )
        partial_dir.rename(target_dir)
        fsync_dir(day_dir)
    except BaseException:
        shutil.rmtree(partial_dir, ignore_errors=True)  # the space a full disk needs back
        raise
    for copy in copies:
        log.info("backup_written", database=copy.name, path=str(copy.path), bytes=copy.bytes)
    return copies


def _partial(run_dir: Path) -> Path:
    return run_dir.with_name(run_dir.name + PARTIAL_SUFFIX)


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
    """The directory of one finished run's copies: the run `at` (HHMMSS) of `day`, or that day's
    newest; the newest finished run of any day by default. A run still under HHMMSS.partial/
    was cut short (or is being written) and is never chosen. A day directory holding the copies
    itself is the layout of backups made before one directory per run: it is that day's one
    run."""
    if day is not None:
        day_dir = kind_dir / day
        if not day_dir.is_dir():
            raise BackupError(f"no backups of {day} under {kind_dir}")
        return _run_of_day(day_dir, at)
    days = sorted(
        (p for p in kind_dir.iterdir() if p.is_dir() and _is_day(p.name))
        if kind_dir.exists()
        else [],
        reverse=True,
    )
    if not days:
        raise BackupError(f"no backups under {kind_dir}")
    if at is not None:
        return _run_of_day(days[0], at)
    for day_dir in days:
        try:
            return _run_of_day(day_dir, None)
        except BackupError as exc:
            log.warning("backup_day_skipped", path=str(day_dir), reason=str(exc))
    raise BackupError(f"no finished backup run under {kind_dir}")


def _run_of_day(day_dir: Path, at: str | None) -> Path:
    runs = sorted(p for p in day_dir.iterdir() if p.is_dir() and any(p.glob("*.sqlite")))
    finished = [p for p in runs if not p.name.endswith(PARTIAL_SUFFIX)]
    if at is not None:
        chosen = day_dir / at
        if _partial(chosen) in runs and chosen not in finished:
            raise BackupError(
                f"run {at} in {day_dir} was cut short before it finished (its directory is "
                f"still {at}{PARTIAL_SUFFIX}); it may lack databases: choose another run"
            )
        if chosen not in finished:
            names = ", ".join(p.name for p in finished) or "none"
            raise BackupError(f"no run {at} in {day_dir} (runs: {names})")
        return chosen
    for unfinished in sorted(set(runs) - set(finished)):
        log.warning("backup_run_unfinished", path=str(unfinished))
    if finished:
        return finished[-1]
    if any(day_dir.glob("*.sqlite")):
        return day_dir
    raise BackupError(f"no finished backup run in {day_dir}")


def _is_day(name: str) -> bool:
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return True
