"""Phase 3: the target's tables made ready for the copy (created, emptied, foreign keys
set aside in existing mode)."""

from __future__ import annotations

from typing import Any

import psycopg

from runtime.errors import MigrationError
from runtime.migrate.plan import TablePlan, quote_ident
from runtime.migrate.plan_phase import await_integrity
from runtime.migrate.run import Run


def table_exists(conn: psycopg.Connection[Any], plan: TablePlan) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (plan.qualified,)).fetchone()
    return bool(row and row[0])


def _table_has_rows(conn: psycopg.Connection[Any], plan: TablePlan) -> bool:
    row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {plan.qualified})").fetchone()
    return bool(row and row[0])


def prepare_target(run: Run, conn: psycopg.Connection[Any], state: dict[str, str]) -> list[str]:
    """Create or empty the tables still to copy; return the foreign keys to re-add (existing)."""
    options = run.options
    pending = [p for p in run.plans if state.get(p.label) is None]
    occupied = [p.label for p in pending if table_exists(conn, p) and _table_has_rows(conn, p)]
    if occupied and not (options.truncate or options.resume):
        raise MigrationError(
            "target tables are not empty (use --truncate to replace their data, or --resume): "
            + ", ".join(occupied)
        )
    if occupied or options.mode == "existing":
        # Data would be replaced, or foreign keys dropped: only for sources proven sound. New
        # empty tables are created at once; no chunk commits before its check (copy_tables).
        await_integrity(run)
    readd_fks: list[str] = []
    with conn.transaction():
        for schema in sorted({p.schema for p in pending}):
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        if options.mode == "existing":
            readd_fks = _drop_foreign_keys(conn, run.plans)
            if pending:
                conn.execute("TRUNCATE " + ", ".join(p.qualified for p in pending))
        else:
            for plan in pending:
                recreate_table(conn, plan)
    return readd_fks


def recreate_table(conn: psycopg.Connection[Any], plan: TablePlan) -> None:
    """Infer mode: the table as the plan creates it, empty, whatever was there before."""
    conn.execute(f"DROP TABLE IF EXISTS {plan.qualified} CASCADE")
    assert plan.create_sql is not None
    conn.execute(plan.create_sql)


def _drop_foreign_keys(conn: psycopg.Connection[Any], plans: list[TablePlan]) -> list[str]:
    """Existing mode: foreign keys touching migrated tables are dropped and re-added after copy."""
    oids = [p.qualified for p in plans]
    rows = conn.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        WHERE c.contype = 'f'
          AND (c.conrelid = ANY(%(t)s::regclass[]) OR c.confrelid = ANY(%(t)s::regclass[]))
        """,
        {"t": oids},
    ).fetchall()
    statements = []
    for table, name, definition in rows:
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote_ident(name)}")
        statements.append(f"ALTER TABLE {table} ADD CONSTRAINT {quote_ident(name)} {definition}")
    return statements
