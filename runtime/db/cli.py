"""`domos db upgrade` and `domos db status`: schema migrations on the configured backend.

Settings come from the environment (DB_TYPE, DATABASE_URL, DOMOS_DATA_DIR, ...). `upgrade` exits 0
when every migration this code has is applied afterwards (a database ahead of the code, holding
migrations of a newer domos, is said so on stderr, not called up to date); `status` exits 0
when every migration is applied and unchanged, 1 when some are pending, changed or missing
(usable as a deploy check).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.db import async_database
from runtime.logical_databases import DOMAIN_DATABASES

if TYPE_CHECKING:
    from runtime.config import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("db", help="database schema: upgrade, status")
    commands = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for action, handler, help_text in (
        ("upgrade", _upgrade, "apply pending migrations (idempotent)"),
        ("status", _status, "show applied and pending migrations; exit 1 if not up to date"),
    ):
        sub = commands.add_parser(action, help=help_text)
        sub.add_argument(
            "--db",
            dest="logical_dbs",
            action="append",
            choices=DOMAIN_DATABASES,
            help="logical database (repeatable; default: all)",
        )
        sub.add_argument(
            "--schema-root", type=Path, default=None, help="directory of <logical_db>/NNNN_*.sql"
        )
        sub.set_defaults(handler=handler)


def _logical_dbs(args: argparse.Namespace) -> Sequence[str]:
    return tuple(args.logical_dbs) if args.logical_dbs else DOMAIN_DATABASES


def _configured(settings: Settings) -> Settings:
    """Log lines in the programs' format (LOG_LEVEL, LOG_FORMAT) on stderr: unconfigured,
    structlog printed its console lines on stdout, among the command's own output, whatever
    LOG_FORMAT said."""
    from runtime.logging import configure_logging

    configure_logging(settings, program="db")
    return settings


def _upgrade(args: argparse.Namespace) -> int:
    import sys

    from runtime.config import Settings
    from runtime.db.migrations import status, upgrade

    settings = _configured(Settings.from_env())

    async def run() -> int:
        async with async_database(settings) as db:
            wanted = _logical_dbs(args)
            applied = await upgrade(db, wanted, schema_root=args.schema_root)
            for item in applied:
                print(
                    f"applied  {item.logical_db:<11} {item.version:04d}_{item.name}"
                    f"  ({item.duration_s * 1000:.0f} ms)"
                )
            # Applied by a newer domos: the schema is ahead of this code (a rollback, or an
            # older image's migrate), which "up to date" would hide.
            ahead = [
                row
                for row in await status(db, wanted, schema_root=args.schema_root)
                if row.state == "missing"
            ]
            for row in ahead:
                print(
                    f"{row.logical_db} migration {row.version:04d}_{row.name} was applied by a"
                    " newer domos: this code does not know it",
                    file=sys.stderr,
                )
            outcome = (
                f"schema is ahead of this code by {len(ahead)} migration(s)"
                " (see docs/upgrade.md, Rolling back)"
                if ahead
                else "schema is up to date"
            )
            print(f"{len(applied)} migration(s) applied on {db.dialect}; {outcome}")
        return 0

    return asyncio.run(run())


def _status(args: argparse.Namespace) -> int:
    """Changes nothing: on SQLite, a database whose file does not exist is reported pending
    and not opened (opening created empty files and their directories, so a mistyped
    DOMOS_DATA_DIR looked like a fresh install with every migration pending)."""
    import sys

    from runtime.config import Settings
    from runtime.db.migrations import MigrationStatus, discover, status

    settings = _configured(Settings.from_env())
    wanted = _logical_dbs(args)
    absent = [
        name
        for name in wanted
        if settings.db.type == "sqlite" and not settings.db.sqlite_path(name).exists()
    ]
    for name in absent:
        print(f"{name}: no database file at {settings.db.sqlite_path(name)}", file=sys.stderr)

    async def run() -> int:
        rows: list[MigrationStatus] = []
        present = [name for name in wanted if name not in absent]
        if present:
            async with async_database(settings) as db:
                rows = await status(db, present, schema_root=args.schema_root)
        rows += [
            MigrationStatus(name, migration.version, migration.name, "pending", None)
            for name in absent
            for migration in discover(name, args.schema_root)
        ]
        order = {name: position for position, name in enumerate(wanted)}
        rows.sort(key=lambda row: order[row.logical_db])  # stable: versions stay in order
        print(format_status_table(rows))
        return 0 if all(row.state == "applied" for row in rows) else 1

    return asyncio.run(run())


def format_status_table(rows: Sequence[Any]) -> str:
    header = ("DATABASE", "VERSION", "NAME", "STATE", "APPLIED AT")
    lines = [
        (
            row.logical_db,
            f"{row.version:04d}",
            row.name,
            row.state,
            row.applied_at.isoformat(timespec="seconds") if row.applied_at else "-",
        )
        for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=False)]
    rendered = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in (header, *lines)
    ]
    if not lines:
        rendered.append("(no migrations)")
    return "\n".join(line.rstrip() for line in rendered)
