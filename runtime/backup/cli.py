"""`domos backup sqlite|postgres` and `domos restore sqlite|postgres`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError

DEFAULT_BACKUP_DIR = "/backup"


def register(subparsers: Any) -> None:
    backup = subparsers.add_parser("backup", help="back up the SQLite files or PostgreSQL")
    kinds = backup.add_subparsers(dest="backup_kind", metavar="KIND", required=True)
    sqlite = kinds.add_parser(
        "sqlite", help="online copies into BACKUP_DIR/sqlite/YYYY-MM-DD/HHMMSS/"
    )
    _common(sqlite)
    sqlite.add_argument("--keep-days", type=non_negative, help="delete backups older than this")
    sqlite.add_argument(
        "--keep", type=at_least_one, help="keep only the newest N (>= 1) days of backups"
    )
    sqlite.set_defaults(handler=_backup_sqlite)
    postgres = kinds.add_parser("postgres", help="pg_dump -Fc into BACKUP_DIR/postgres/YYYY-MM-DD/")
    _common(postgres)
    postgres.add_argument("--target", help="PostgreSQL URL (default DATABASE_URL)")
    postgres.add_argument("--keep-days", type=non_negative, help="delete backups older than this")
    postgres.add_argument(
        "--keep", type=at_least_one, help="keep only the newest N (>= 1) days of backups"
    )
    postgres.set_defaults(handler=_backup_postgres)

    schedule = kinds.add_parser(
        "schedule",
        help="long-running: back up every N hours with retention (postgres when DATABASE_URL is "
        "set; sqlite when DB_TYPE=sqlite); stops cleanly on SIGTERM",
    )
    _common(schedule)
    schedule.add_argument("--every-hours", type=float, default=6.0, help="default 6")
    schedule.add_argument(
        "--retry-minutes", type=float, default=10.0, help="after a failed run (default 10)"
    )
    schedule.add_argument("--keep-days", type=non_negative, default=14, help="default 14")
    schedule.add_argument(
        "--keep", type=at_least_one, help="keep only the newest N (>= 1) days of backups"
    )
    schedule.set_defaults(handler=_schedule)

    restore = subparsers.add_parser("restore", help="restore SQLite files or PostgreSQL")
    kinds = restore.add_subparsers(dest="restore_kind", metavar="KIND", required=True)
    sqlite = kinds.add_parser("sqlite", help="put backed-up SQLite files back in place")
    _common(sqlite)
    sqlite.add_argument("--day", help="YYYY-MM-DD of the backup to restore (default: the newest)")
    sqlite.add_argument(
        "--at", help="HHMMSS: which run of the day to restore (default: the day's newest)"
    )
    sqlite.add_argument("--only", action="append", help="logical database (repeatable)")
    sqlite.set_defaults(handler=_restore_sqlite)
    postgres = kinds.add_parser("postgres", help="pg_restore a dump into the database")
    _common(postgres)
    postgres.add_argument("--target", help="PostgreSQL URL (default DATABASE_URL)")
    postgres.add_argument("--dump", type=Path, help="dump file (default: the newest)")
    postgres.add_argument(
        "--from-other-database",
        action="store_true",
        help="restore a dump taken of another database (refused by default)",
    )
    postgres.set_defaults(handler=_restore_postgres)


def non_negative(value: str) -> int:
    """--keep-days -1 put every day, today's run included, past the cut: refused."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {number})")
    return number


def at_least_one(value: str) -> int:
    """--keep 0 would delete every backup, the newest included: refused."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {number})")
    return number


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backup-dir",
        type=Path,
        default=None,
        help=f"backup root (default BACKUP_DIR or {DEFAULT_BACKUP_DIR})",
    )


def _backup_dir(args: argparse.Namespace) -> Path:
    if args.backup_dir is not None:
        return Path(args.backup_dir)
    return Path(os.environ.get("BACKUP_DIR") or DEFAULT_BACKUP_DIR)


def _databases() -> dict[str, Path]:
    from runtime.config import Settings

    return dict(Settings.from_env().db.sqlite_paths)


def _target(args: argparse.Namespace) -> str:
    if args.target:
        return str(args.target)
    from runtime.config import Settings

    url = Settings.from_env().db.postgres_url
    if url is None:
        raise ConfigError("DATABASE_URL", "is required (or pass --target)")
    return url.reveal()


@contextmanager
def _writable(root: Path) -> Iterator[None]:
    """A backup directory that cannot be written is the operator's error to fix, said in one
    line (exit 2), not a traceback."""
    from runtime.backup.sqlite import BackupError

    try:
        yield
    except OSError as exc:
        raise BackupError(f"cannot write backups under {root}: {exc.strerror or exc}") from exc


def _backup_sqlite(args: argparse.Namespace) -> int:
    from runtime.backup.sqlite import apply_retention, backup_sqlite

    root = _backup_dir(args)
    with _writable(root):
        copies = backup_sqlite(_databases(), root)
    for copy in copies:
        print(f"{copy.name}\t{copy.path}\t{copy.bytes}")
    if args.keep_days is not None or args.keep is not None:
        apply_retention(root / "sqlite", keep_days=args.keep_days, keep_count=args.keep)
    return 0


def _backup_postgres(args: argparse.Namespace) -> int:
    from runtime.backup.postgres import backup_postgres
    from runtime.backup.sqlite import apply_retention

    root = _backup_dir(args)
    with _writable(root):
        dump = backup_postgres(_target(args), root)
    print(dump)
    if args.keep_days is not None or args.keep is not None:
        apply_retention(root / "postgres", keep_days=args.keep_days, keep_count=args.keep)
    return 0


def _restore_sqlite(args: argparse.Namespace) -> int:
    from runtime.backup.sqlite import backup_set
    from runtime.backup.sqlite_restore import restore_sqlite

    run_dir = backup_set(_backup_dir(args) / "sqlite", args.day, args.at)
    only = set(args.only) if args.only else None
    print(f"from {run_dir}")
    for path in restore_sqlite(run_dir, _databases(), only):
        print(path)
    return 0


def _restore_postgres(args: argparse.Namespace) -> int:
    from runtime.backup.postgres import latest_dump, restore_postgres

    target = _target(args)
    dump = args.dump or latest_dump(_backup_dir(args), target)
    restore_postgres(target, dump, from_other_database=args.from_other_database)
    print(dump)
    return 0


def _schedule(args: argparse.Namespace) -> int:
    import threading

    from runtime.backup.postgres import backup_postgres
    from runtime.backup.schedule import BackupJob, run_schedule, stop_on_signals
    from runtime.backup.sqlite import apply_retention, backup_sqlite
    from runtime.config import Settings
    from runtime.logging import configure_logging
    from runtime.metrics import serve_metrics

    if args.every_hours <= 0:
        raise ConfigError("--every-hours", "must be positive")
    settings = Settings.from_env()
    # A supervised program: its lines in the programs' format (LOG_FORMAT), on stderr.
    configure_logging(settings)
    serve_metrics(settings.metrics_port, addr=settings.bind_host)
    root = _backup_dir(args)
    keep = {"keep_days": args.keep_days, "keep_count": args.keep}
    jobs = []
    if settings.db.postgres_url is not None:
        url = settings.db.postgres_url.reveal()

        def postgres() -> None:
            backup_postgres(url, root)
            apply_retention(root / "postgres", **keep)

        jobs.append(BackupJob("postgres", postgres))
    if settings.db.type == "sqlite":
        databases = dict(settings.db.sqlite_paths)

        def sqlite() -> None:
            backup_sqlite(databases, root)
            apply_retention(root / "sqlite", **keep)

        jobs.append(BackupJob("sqlite", sqlite))
    stop = threading.Event()
    stop_on_signals(stop)
    run_schedule(jobs, every_s=args.every_hours * 3600, retry_s=args.retry_minutes * 60, stop=stop)
    return 0
