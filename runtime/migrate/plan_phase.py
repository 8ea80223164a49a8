"""Phases 1-2: snapshot and check every source, plan its tables. Writes nothing to the target."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import psycopg
import structlog

from runtime.errors import MigrationError
from runtime.migrate import integrity_gate
from runtime.migrate import plan as planning
from runtime.migrate.plan import TablePlan
from runtime.migrate.plan_existing import plan_existing
from runtime.migrate.run import Run, TableOutcome
from runtime.migrate.snapshot import Snapshot, Source, start_snapshots
from runtime.migrate.sqlite_source import (
    ForeignKeyViolation,
    foreign_key_violations,
    open_snapshot,
    read_tables,
    views_and_triggers,
)
from runtime.migrate.workers import Checker

log = structlog.get_logger("domos.migrate")


def prepare_plans(
    run: Run,
    target: psycopg.Connection[Any] | None,
    scanner: Executor | None = None,
    *,
    from_declared: bool = False,
    check_in_background: bool = False,
    snapshots: Mapping[str, Future[Snapshot]] | None = None,
) -> None:
    """Snapshot and check every source, then plan its tables. Writes nothing to the target.
    `from_declared`: tables whose declared types promise the fast copy skip the profile, and
    the copy checks the promise (plan.py `declared_columns`). `check_in_background`: the
    integrity checks may still run on return (`await_integrity`, integrity_gate.py)."""
    options = run.options
    if snapshots is None:
        snapshots = start_snapshots(options.sources, options.work_dir, resume=options.resume)
    # The integrity check reads the whole file: it runs in its own process while the tables are
    # planned, and, in the background, copied.
    checker = Checker()
    for source in options.sources:
        taken = snapshots[source.name].result()
        path = taken.path
        integrity_gate.clear(path)
        run.integrity_checks[source.name] = checker.submit(integrity_gate.check, path)
        conn = open_snapshot(path)
        try:
            plans, violations, left_out, warnings = _plan_source(
                run, source, taken, conn, target, scanner, from_declared
            )
        except sqlite3.DatabaseError as exc:
            # A damaged file fails its first read: the integrity check says where, not this.
            problems = run.integrity_checks[source.name].result()
            if problems:
                raise integrity_gate.failure(source.path, problems) from exc
            raise MigrationError(f"cannot read {source.path}: {exc}") from exc
        finally:
            conn.close()
        run.sources.append(
            {
                "name": source.name,
                "path": str(source.path),
                "schema": source.schema,
                "snapshot": str(path),
                "integrity_check": "running",
                "foreign_key_violations": len(violations),
                "not_migrated": left_out,
                "warnings": warnings,
                "tables": [p.label for p in plans],
            }
        )
        run.plans.extend(plans)
    checker.shutdown()
    if not check_in_background:
        await_integrity(run)
    errors = planning.check_identifiers(run.plans)
    if errors:
        raise MigrationError("identifier collisions:\n  " + "\n  ".join(errors))
    for plan in run.plans:
        run.outcomes[plan.label] = TableOutcome(plan)


def _plan_source(
    run: Run,
    source: Source,
    taken: Snapshot,
    conn: sqlite3.Connection,
    target: psycopg.Connection[Any] | None,
    scanner: Executor | None,
    from_declared: bool,
) -> tuple[list[TablePlan], list[ForeignKeyViolation], list[str], list[str]]:
    """One source's plans, its foreign key violations, what is not migrated (views, triggers)
    and warnings for the summary and the report.

    A source without tables is refused in infer mode, where the file is the schema: it would
    migrate nothing, and is the wrong file. In existing mode it is a warning: the target's
    tables exist without it, and the SQLite backend creates the file of every logical database
    it opens, so a file of the data directory may rightly hold none (plan_existing.py)."""
    options = run.options
    path = taken.path
    violations = taken.foreign_key_violations
    if violations is None:
        violations = foreign_key_violations(conn)
    tables = read_tables(conn)
    warnings = []
    if not tables:
        if options.mode != "existing":
            raise MigrationError(
                f"{source.path} holds no tables: there is nothing to migrate from it; check "
                "the path, or leave the file out"
            )
        warnings.append(f"{source.path} holds no tables: nothing was copied from it")
        log.warning("source_holds_no_tables", source=source.name, path=str(source.path))
    # Existing mode: the target's schema has its own (domos db upgrade, Django).
    left_out = [] if options.mode == "existing" else views_and_triggers(conn)
    if options.mode == "existing":
        assert target is not None
        plans = plan_existing(
            source,
            path,
            conn,
            tables,
            violations,
            target,
            options.chunk_rows,
            options.skip_tables,
        )
    else:
        plans = planning.plan_infer(
            source,
            path,
            conn,
            tables,
            violations,
            options.chunk_rows,
            scanner,
            from_declared=from_declared,
            keep_case=options.keep_case,
        )
    return plans, violations, left_out, warnings


def await_integrity(run: Run) -> None:
    """Wait for every source's integrity check; raise on the first that failed."""
    for source in run.sources:
        problems = run.integrity_checks[source["name"]].result()
        source["integrity_check"] = "failed" if problems else "ok"
        if problems:
            raise integrity_gate.failure(Path(source["path"]), problems)
