"""PostgreSQL backups with pg_dump's custom format, checked with pg_restore --list."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import datetime
from glob import escape as glob_escape
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runtime.backup.sqlite import BackupError
from runtime.config import mask_url_password

log = structlog.get_logger("domos.backup")


def split_password(url: str) -> tuple[str, dict[str, str]]:
    """The connection string for --dbname without its password, and the child's environment
    that carries it (PGPASSWORD): any user of the machine reads argv with `ps`, but not
    another user's process environment."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    except FileNotFoundError as exc:
        raise BackupError(f"{command[0]} is not installed (postgresql-client)") from exc
    if completed.returncode != 0:
        raise BackupError(f"{what} failed: {completed.stderr.strip()[:500]}")
    return completed.stdout


def backup_postgres(url: str, backup_dir: Path, *, now: datetime | None = None) -> Path:
    """pg_dump -Fc into BACKUP_DIR/postgres/YYYY-MM-DD/<db>-HHMMSS.dump, then list it. A second
    dump within the same second gets -1, -2, ... (it used to write over the first's file)."""
    now = now or datetime.now()
    database = urlsplit(url).path.lstrip("/") or "postgres"
    target_dir = backup_dir / "postgres" / now.date().isoformat()
    target_dir.mkdir(parents=True, exist_ok=True)
    destination, partial = _reserve(target_dir, f"{database}-{now:%H%M%S}")
    conninfo, env = split_password(url)
    try:
        _run(
            ["pg_dump", "--format=custom", f"--file={partial}", f"--dbname={conninfo}"],
            f"pg_dump of {mask_url_password(url)}",
            env,
        )
        _run(["pg_restore", "--list", str(partial)], "pg_restore --list of the new dump")
        partial.replace(destination)
    except BaseException:
        partial.unlink(missing_ok=True)  # half a dump: only takes the space the next one needs
        raise
    log.info(
        "backup_written", database=database, path=str(destination), bytes=destination.stat().st_size
    )
    return destination


def _reserve(target_dir: Path, stem: str) -> tuple[Path, Path]:
    """A dump name no other dump has or is being written under, claimed by creating its
    .partial file exclusively (two schedules, or an operator's dump beside the schedule's)."""
    for attempt in range(1000):
        name = stem if attempt == 0 else f"{stem}-{attempt}"
        destination = target_dir / f"{name}.dump"
        partial = destination.with_name(destination.name + ".partial")
        if destination.exists():
            continue
        try:
            partial.open("x").close()
        except FileExistsError:
            continue
        return destination, partial
    raise BackupError(f"no free dump name for {stem} in {target_dir}")


#: <database>-HHMMSS.dump, or -HHMMSS-N.dump for the N+1th dump of that second.
_DUMP_TIME = re.compile(r"(\d{6})(?:-(\d+))?")


def latest_dump(backup_dir: Path, url: str) -> Path:
    """The newest dump of the database `url` names. By that database's name only: dumps of
    another database in the same BACKUP_DIR (`domos backup postgres --target …`) sort by their
    names before their times, and restoring one with --clean would replace this database."""
    database = urlsplit(url).path.lstrip("/") or "postgres"
    dumps = []
    for path in (backup_dir / "postgres").glob(f"*/{glob_escape(database)}-*.dump"):
        when = _DUMP_TIME.fullmatch(path.name[len(database) + 1 : -len(".dump")])
        if when is not None:
            dumps.append(((path.parent.name, when[1], int(when[2] or 0)), path))
    if not dumps:
        raise BackupError(f"no PostgreSQL dumps of {database} under {backup_dir / 'postgres'}")
    return max(dumps)[1]  # day, then HHMMSS, then the second's sequence


#: How long the restore waits for a lock a running program holds, then fails (nothing changed:
#: one transaction) instead of waiting without a word while it queues locks the programs need.
RESTORE_LOCK_TIMEOUT = "30s"


def dumped_database(dump: Path) -> str | None:
    """The database a custom-format dump was taken of (its table of contents says)."""
    listing = _run(["pg_restore", "--list", str(dump)], f"pg_restore --list {dump}")
    for line in listing.splitlines():
        if line.startswith(";") and "dbname:" in line:
            return line.split("dbname:", 1)[1].strip()
    return None


def restore_postgres(url: str, dump: Path, *, from_other_database: bool = False) -> None:
    """Replace the objects of the dump in the target database (--clean --if-exists). A dump of
    another database (staging's, in the same BACKUP_DIR) is refused unless asked for."""
    database = urlsplit(url).path.lstrip("/") or "postgres"
    origin = dumped_database(dump)
    if origin != database and not from_other_database:
        raise BackupError(
            f"{dump} is a dump of database {origin!r}, not of {database!r}: restoring it would "
            "replace this database's objects with that one's; pass --from-other-database if "
            "that is what you mean"
        )
    conninfo, env = split_password(url)
    given = conninfo_to_dict(conninfo).get("options") or ""
    conninfo = make_conninfo(conninfo, options=f"{given} -c lock_timeout={RESTORE_LOCK_TIMEOUT}")
    _run(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={conninfo}",
            str(dump),
        ],
        f"pg_restore into {mask_url_password(url)}",
        env,
    )
    log.info("backup_restored", path=str(dump), target=mask_url_password(url))
