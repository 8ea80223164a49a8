"""`domos restore sqlite`: every copy checked, and the programs stopped, before a live file changes.

A restore that stopped at its third database left the first two restored and the rest current:
a mix no one backed up. So the copies are all checked first (the manifest's size and SHA-256,
then SQLite's integrity_check), then staged beside their live files, and only then swapped in
with renames, which cannot run out of space halfway.
"""

from __future__ import annotations

import errno
import fcntl
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import structlog

from runtime.backup.manifest import file_sha256, fsync_dir, read_manifest
from runtime.backup.sqlite import BackupError, online_copy

log = structlog.get_logger("domos.backup")

#: SQLite's WAL index lock bytes start at 120 in the -shm file; byte 128 (the "DMS" slot) is
#: read-locked by every connection that has the database open in WAL mode, for as long as it
#: has (https://sqlite.org/walformat.html, "the shm locks"; os_unix.c UNIX_SHM_DMS).
_SHM_DMS_BYTE = 128
_STAGED_SUFFIX = ".restoring"


def restore_sqlite(
    backup_run_dir: Path, databases: Mapping[str, Path], only: set[str] | None = None
) -> list[Path]:
    """Put one run's copies (`backup_set`) back in place; the current file is kept as
    <file>.before-restore-<UTC time> (a second restore kept overwriting the first one's, the
    only copy of what was there before it). Refused while any program has a live file open."""
    chosen = _chosen(backup_run_dir, databases, only)
    verify_copies(backup_run_dir, chosen)
    for _, _, live in chosen:
        if open_elsewhere(live):
            raise BackupError(
                f"{live} is open in another process: stop the programs first (supervisorctl "
                "stop all, in every role container), then restore"
            )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    staged: list[Path] = []
    try:
        for name, copy, live in chosen:
            staged.append(_staged(live))
            online_copy(copy, staged[-1])
            if live.exists():
                kept = live.with_name(f"{live.name}.before-restore-{stamp}")
                online_copy(live, kept)
                log.info("backup_current_kept", database=name, path=str(kept))
    except BaseException:
        for path in staged:
            path.unlink(missing_ok=True)
        raise
    restored = []
    for name, copy, live in chosen:
        for suffix in ("-wal", "-shm"):
            Path(str(live) + suffix).unlink(missing_ok=True)
        _staged(live).replace(live)
        fsync_dir(live.parent)
        restored.append(live)
        log.info("backup_restored", database=name, path=str(live), source=str(copy))
    return restored


def _chosen(
    run_dir: Path, databases: Mapping[str, Path], only: set[str] | None
) -> list[tuple[str, Path, Path]]:
    chosen = []
    for name, live in databases.items():
        if only is not None and name not in only:
            continue
        copy = run_dir / f"{name}.sqlite"
        if not copy.exists():
            if only is not None:
                raise BackupError(f"no backup of {name} in {run_dir}")
            continue
        chosen.append((name, copy, live))
    if not chosen:
        raise BackupError(f"nothing to restore from {run_dir}")
    return chosen


def verify_copies(run_dir: Path, chosen: list[tuple[str, Path, Path]]) -> None:
    """Every copy as the run recorded it (runs made before manifests: integrity_check only)."""
    manifest = read_manifest(run_dir)
    if manifest is not None:
        missing = sorted(set(manifest) - {path.stem for path in run_dir.glob("*.sqlite")})
        if missing:
            raise BackupError(f"{run_dir} lost copies its manifest lists: {', '.join(missing)}")
    for name, copy, _ in chosen:
        if manifest is not None:
            record = manifest.get(name)
            if record is None:
                raise BackupError(f"{copy} is not in {run_dir}'s manifest: not this run's copy")
            size = copy.stat().st_size
            if size != record.bytes or file_sha256(copy) != record.sha256:
                raise BackupError(
                    f"{copy} changed since it was backed up ({size} bytes, {record.bytes} "
                    "recorded, or another SHA-256): nothing was restored"
                )
        _integrity_check(copy)


def _integrity_check(copy: Path) -> None:
    try:
        conn = sqlite3.connect(f"{copy.absolute().as_uri()}?mode=ro", uri=True)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(
            f"{copy} is not a readable database ({exc}): nothing was restored"
        ) from exc
    if result != [("ok",)]:
        raise BackupError(f"{copy} failed integrity_check {result[:3]}: nothing was restored")


def open_elsewhere(live: Path) -> bool:
    """Whether another process has `live` open in WAL mode (every program's files are WAL):
    the write lock on the -shm file's DMS byte is refused while any reader holds it."""
    shm = Path(str(live) + "-shm")
    try:
        handle = shm.open("r+b")
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise BackupError(f"cannot tell whether {live} is in use: {exc.strerror}") from exc
    with handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_BYTE)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return True
            raise
        fcntl.lockf(handle, fcntl.LOCK_UN, 1, _SHM_DMS_BYTE)
    return False


def _staged(live: Path) -> Path:
    return live.with_name(live.name + _STAGED_SUFFIX)
