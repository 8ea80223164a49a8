"""`domos migrate [run]` and `domos migrate verify`: SQLite files into PostgreSQL, proven."""

from __future__ import annotations

import argparse
import gc
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.errors import ConfigError, MigrationError
from runtime.migrate.sizing import usable_cpus

if TYPE_CHECKING:  # the handlers import these: registering the command stays light
    from collections.abc import Mapping
    from concurrent.futures import Future, ProcessPoolExecutor

    from runtime.migrate.run import Options
    from runtime.migrate.snapshot import Snapshot


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "migrate", help="copy SQLite databases into PostgreSQL and verify the result"
    )
    actions = parser.add_subparsers(dest="migrate_action", metavar="ACTION")
    _options(parser)
    parser.set_defaults(handler=_run, migrate_action="run")
    # The options again after the action, without defaults of their own: an action's default
    # replaced what was given before it (`migrate --dry-run run ...` wrote the tables).
    run = actions.add_parser("run", help="migrate, then verify (the default)")
    _options(_Suppressed(run))
    run.set_defaults(handler=_run)
    verify = actions.add_parser("verify", help="only compare sources and target; writes nothing")
    _options(_Suppressed(verify))
    verify.set_defaults(handler=_verify)


class _Suppressed:
    """A parser whose arguments are only set when given (default argparse.SUPPRESS)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_argument(self, *names: str, **kwargs: Any) -> None:
        self.parser.add_argument(*names, **{**kwargs, "default": argparse.SUPPRESS})


def _options(parser: argparse.ArgumentParser | _Suppressed) -> None:
    parser.add_argument(
        "--source",
        action="append",
        default=None,
        metavar="FILE=SCHEMA",
        help="a SQLite file and its target schema (repeatable); default: the eight files of "
        "DOMOS_DATA_DIR in their schemas",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="NAME",
        help="leave out a logical database of DOMOS_DATA_DIR (repeatable), e.g. django",
    )
    parser.add_argument("--target", help="PostgreSQL URL (default: DATABASE_URL)")
    parser.add_argument(
        "--schema",
        choices=("existing", "infer"),
        default=None,
        dest="schema_mode",
        help="existing: tables made by `domos db upgrade`/Django (default for the eight files); "
        "infer: create tables from the data (default with --source)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("var/migrate"),
        help="snapshots, state and reject parts (default var/migrate)",
    )
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--rejects", type=Path, help="reject file (default WORK_DIR/rejects.jsonl)")
    parser.add_argument(
        "--allow-rejects",
        action="store_true",
        help="exit 0 even when rows were rejected (they are still reported)",
    )
    parser.add_argument("--truncate", action="store_true", help="replace data in non-empty tables")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the tables a previous run finished; redo the others",
    )
    parser.add_argument(
        "--keep-case",
        action="store_true",
        help="infer mode: keep the SQLite names' case in PostgreSQL (quoted names); default: "
        "lower case, which the application's unquoted names find (docs/cutover.md)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    parser.add_argument("--no-verify", action="store_true", help="skip verification (not advised)")
    parser.add_argument("--jobs", type=int, default=min(4, usable_cpus()), help="worker processes")
    parser.add_argument(
        "--chunk-rows", type=int, default=250_000, help="rows per parallel copy chunk"
    )


def _sources(args: argparse.Namespace) -> tuple[list[Any], str]:
    from runtime.config import Settings
    from runtime.logical_databases import LOGICAL_DATABASES
    from runtime.migrate.snapshot import Source

    if args.source:
        specs = []
        for spec in args.source:
            file_part, _, schema = spec.partition("=")
            specs.append((Path(file_part), schema or "public"))
        # A source's snapshot, state and rejects are named after it: two files of one name
        # (a/data.sqlite, b/data.sqlite) would share a snapshot, and one would be copied twice.
        stems = Counter(path.stem for path, _ in specs)
        sources = [
            Source(
                name=path.stem if stems[path.stem] == 1 else f"{path.stem}.{schema}",
                path=path,
                schema=schema,
            )
            for path, schema in specs
        ]
        names = Counter(source.name for source in sources)
        repeated = sorted(name for name, count in names.items() if count > 1)
        if repeated:
            raise ConfigError(
                "--source",
                f"two files named {repeated[0]!r} go into one schema: give each its own schema",
            )
        return sources, args.schema_mode or "infer"
    unknown = set(args.exclude) - set(LOGICAL_DATABASES)
    if unknown:
        raise ConfigError("--exclude", f"unknown logical database(s): {', '.join(sorted(unknown))}")
    settings = Settings.from_env()
    sources = [
        Source(name=name, path=settings.db.sqlite_path(name), schema=db.pg_schema)
        for name, db in LOGICAL_DATABASES.items()
        if settings.db.sqlite_path(name).exists() and name not in args.exclude
    ]
    if not sources:
        raise ConfigError("DOMOS_DATA_DIR", "holds none of the SQLite files to migrate")
    return sources, args.schema_mode or "existing"


def _target(args: argparse.Namespace) -> str:
    if args.target:
        return str(args.target)
    from runtime.config import Settings

    url = Settings.from_env().db.postgres_url
    if url is None:
        raise ConfigError("DATABASE_URL", "is required (or pass --target)")
    return url.reveal()


def _build(args: argparse.Namespace, sources: tuple[list[Any], str], target: str) -> Options:
    from runtime.migrate.run import Options

    return Options(
        sources=sources[0],
        target_url=target,
        mode=sources[1],
        work_dir=args.work_dir,
        report_path=args.report,
        rejects_path=args.rejects,
        allow_rejects=args.allow_rejects,
        truncate=args.truncate,
        resume=args.resume,
        dry_run=args.dry_run,
        verify=not args.no_verify,
        jobs=max(1, args.jobs),
        chunk_rows=max(1, args.chunk_rows),
        keep_case=args.keep_case,
    )


def _summary(report: dict[str, Any]) -> str:
    tables = [t for s in report["sources"] for t in s["tables"]]
    bad = [t["target"] for t in tables if t["verified"] is False]
    return json.dumps(
        {
            "tables": len(tables),
            "rows_source": report["rows_source"],
            "rows_rejected": report["rows_rejected"],
            "verified": report["verified"],
            "not_verified": bad,
            "warnings": report["warnings"],
            "phases_s": report["phases"],
            "rejects_file": report["rejects_file"],
            "exit_code": report["exit_code"],
        }
    )


#: The `migrate` extra (pyproject.toml): the role image leaves it out (docs/cutover.md).
EXTRA_MODULES = ("pyarrow", "numpy", "adbc_driver_sqlite", "adbc_driver_postgresql")


def require_extra() -> None:
    """A clear error, before any work, where the migration's dependencies are not installed."""
    import importlib.util

    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MigrationError(
            f"the migration needs the `migrate` extra ({', '.join(missing)} missing): run it "
            "from the domos-migrate image (docker/build.sh --migrate) or a venv with "
            "`pip install --require-hashes -r requirements/migrate.lock` (docs/cutover.md)"
        )


def _run(args: argparse.Namespace) -> int:
    require_extra()
    # The start-up's imports allocate objects none of which is garbage: the collector's passes
    # over them cost 0.07 core-s while the snapshots wait for a core; frozen, its later passes
    # skip them too.
    gc.disable()
    try:
        pool, snapshots, options = _start(args)
    finally:
        gc.freeze()
        gc.enable()
    from runtime.migrate.engine import migrate

    code, report = migrate(options, pool, snapshots)
    if not args.dry_run:
        print(_summary(report))
    return code


def _start(
    args: argparse.Namespace,
) -> tuple[ProcessPoolExecutor, Mapping[str, Future[Snapshot]], Options]:
    """The workers, the snapshots, then the engine's imports and the run's options."""
    from runtime.migrate.snapshot import start_snapshots
    from runtime.migrate.workers import start_pool

    sources = _sources(args)
    target = _target(args)
    # The worker processes and the snapshots start before the engine's imports (half a second):
    # the fork server's imports and the online backups overlap them.
    pool = start_pool(args.jobs)
    snapshots = start_snapshots(sources[0], args.work_dir, resume=args.resume)
    try:
        options = _build(args, sources, target)
        _configure_logging()
        # The engine's imports (psycopg, the planner) here, while the snapshots run.
        import runtime.migrate.engine  # noqa: F401

        return pool, snapshots, options
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise


def _configure_logging() -> None:
    """The programs' lines (LOG_LEVEL, LOG_FORMAT; JSON unless on a terminal), secrets
    redacted, on stderr: stdout carries the summary."""
    from runtime.config import LogSettings
    from runtime.logging import configure_logging

    configure_logging(LogSettings.from_env(), program="migrate")


def _verify(args: argparse.Namespace) -> int:
    require_extra()
    _configure_logging()
    from runtime.migrate.engine import verify_only

    code, report = verify_only(_build(args, _sources(args), _target(args)))
    print(_summary(report))
    return code
