"""SQLite's online backup API into a file that appears only when complete.

Shared by `domos backup sqlite` (durable copies, checked before they replace anything) and the
migration's snapshots (work files: no fsync). Light on purpose (sqlite3 only): the migration
starts its snapshots before it imports anything else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path


def online_backup(
    source: Path,
    destination: Path,
    *,
    durable: bool = True,
    check: Callable[[sqlite3.Connection], None] | None = None,
) -> None:
    """Copy a (possibly live) database, opened read-only, to `destination`.

    The copy is written under `<destination>.partial` and renamed when complete, so a crash never
    leaves half a database under the real name. `check` runs on the finished copy before the
    rename; what it raises abandons the copy. sqlite3.DatabaseError comes from the copy itself.
    Not `durable`: written without fsync or journal (a work file, checked before use)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            if not durable:
                dst.execute("PRAGMA synchronous = OFF")
                dst.execute("PRAGMA journal_mode = OFF")
            src.backup(dst)
            if check is not None:
                check(dst)
        finally:
            dst.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    partial.replace(destination)
