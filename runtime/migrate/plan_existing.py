"""Existing mode's plan: source tables mapped by name onto the tables `domos db upgrade` or Django
created, their columns' types read from the target."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import MigrationError
from runtime.migrate.plan import (
    ColumnPlan,
    TablePlan,
    plan_chunks,
    quote_ident,
    violations_by_table,
)
from runtime.migrate.sizing import batch_rows, chunk_rows_for
from runtime.migrate.snapshot import Source
from runtime.migrate.sqlite_source import ForeignKeyViolation, Table, issued_ids, rowid_bounds
from runtime.migrate.values import CONVERTERS, base_type

if TYPE_CHECKING:  # annotations only
    import psycopg


@dataclass(frozen=True)
class TargetColumn:
    name: str
    pg_type: str
    not_null: bool
    identity: bool
    has_default: bool


def _schema_has_tables(target: psycopg.Connection[tuple[object, ...]], schema: str) -> bool:
    row = target.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = %s)", (schema,)
    ).fetchone()
    return bool(row and row[0])


def read_target_table(
    conn: psycopg.Connection[tuple[object, ...]], schema: str, table: str
) -> list[TargetColumn] | None:
    rows = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               a.attidentity <> '', a.atthasdef OR a.attidentity <> ''
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        ORDER BY a.attnum
        """,
        (schema, table),
    ).fetchall()
    if not rows:
        return None
    return [TargetColumn(str(r[0]), str(r[1]), bool(r[2]), bool(r[3]), bool(r[4])) for r in rows]


def target_key(
    conn: psycopg.Connection[tuple[object, ...]], schema: str, table: str
) -> tuple[str, ...]:
    rows = conn.execute(
        """
        SELECT a.attname FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) ON true
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary
        ORDER BY k.position
        """,
        (schema, table),
    ).fetchall()
    return tuple(str(r[0]) for r in rows)


#: The bookkeeping table of `domos db upgrade`. In existing mode it is not copied: the target
#: keeps its own record, which must include every migration the source applied.
SCHEMA_MIGRATIONS = "schema_migrations"


def schema_version_problems(
    conn: sqlite3.Connection, target: psycopg.Connection[tuple[object, ...]], source: Source
) -> list[str]:
    """Migrations applied to the source file but not (or differently) to the target schema."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_MIGRATIONS,)
    ).fetchone()
    if has_table is None:
        return []
    applied = conn.execute(
        f"SELECT logical_db, version, name, checksum FROM {SCHEMA_MIGRATIONS}"
    ).fetchall()
    table = f"{quote_ident(source.schema)}.{SCHEMA_MIGRATIONS}"
    exists = target.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    recorded: dict[tuple[str, int], str] = {}
    if exists and exists[0]:
        rows = target.execute(f"SELECT logical_db, version, checksum FROM {table}").fetchall()
        recorded = {(str(r[0]), int(str(r[1]))): str(r[2]) for r in rows}
    problems = []
    for logical_db, version, name, checksum in applied:
        found = recorded.get((logical_db, int(version)))
        if found is None:
            problems.append(
                f"{source.path}: migration {logical_db} {int(version):04d}_{name} is not applied "
                f"to the target (run `DB_TYPE=postgres domos db upgrade` first)"
            )
        elif found != checksum:
            problems.append(
                f"{source.path}: migration {logical_db} {int(version):04d}_{name} differs between "
                "the source and the target (checksums)"
            )
    return problems


def plan_existing(
    source: Source,
    snapshot_path: Path,
    conn: sqlite3.Connection,
    tables: list[Table],
    violations: list[ForeignKeyViolation],
    target: psycopg.Connection[tuple[object, ...]],
    chunk_rows: int,
    skip_tables: frozenset[str],
) -> list[TablePlan]:
    """Map source tables onto tables created by `domos db upgrade` / Django, by name."""
    excluded = violations_by_table(violations, tables)
    plans = []
    errors = schema_version_problems(conn, target, source)
    tables = [t for t in tables if t.name not in skip_tables and t.name != SCHEMA_MIGRATIONS]
    if tables and not _schema_has_tables(target, source.schema):
        hint = (
            "for Django: `DB_TYPE=postgres domos web migrate`"
            if source.schema == "django"
            else "`DB_TYPE=postgres domos db upgrade`"
        )
        raise MigrationError(
            f"{source.path}: schema {source.schema!r} of the target has no tables; create them "
            f"first ({hint}) or leave this source out (--exclude {source.name})"
        )
    for table in tables:
        target_columns = read_target_table(target, source.schema, table.name)
        if target_columns is None:
            errors.append(f"{source.schema}.{table.name}: no such table in the target")
            continue
        by_name = {c.name: c for c in target_columns}
        columns = []
        for column in table.copied_columns:
            found = by_name.get(column.name) or by_name.get(column.name.lower())
            if found is None:
                errors.append(
                    f"{source.schema}.{table.name}: source column {column.name!r} has no target "
                    "column (its data would be lost)"
                )
                continue
            if base_type(found.pg_type) not in CONVERTERS:
                errors.append(
                    f"{source.schema}.{table.name}.{found.name}: unsupported type {found.pg_type}"
                )
                continue
            columns.append(
                ColumnPlan(
                    source=column.name,
                    target=found.name,
                    pg_type=found.pg_type,
                    not_null=found.not_null,
                    identity=found.identity,
                    note="existing target column",
                )
            )
        key = target_key(target, source.schema, table.name)
        copied = {c.target for c in columns}
        if not set(key) <= copied:
            key = ()
        identity = next((c.target for c in columns if c.identity), None)
        serial = next(
            (
                c.name
                for c in target_columns
                if c.has_default
                and c.name in key
                and len(key) == 1
                and base_type(c.pg_type) in ("bigint", "integer")
            ),
            None,
        )
        low, high, count = rowid_bounds(conn, table)
        file_bytes = snapshot_path.stat().st_size
        rows_per_chunk = chunk_rows_for(chunk_rows, file_bytes, count)
        chunks = [(0, -1)] if table.without_rowid else plan_chunks(low, high, count, rows_per_chunk)
        alias = table.rowid_alias
        rowid_key = (
            alias is not None
            and len(key) == 1
            and by_name.get(alias) is not None
            and by_name[alias].name == key[0]
        )
        plan = TablePlan(
            source_name=source.name,
            source_path=str(snapshot_path),
            table=table.name,
            schema=source.schema,
            target=table.name,
            columns=columns,
            key=key,
            rowid_key=rowid_key,
            without_rowid=table.without_rowid,
            source_key=table.primary_key or ("rowid",),
            rows=count,
            chunks=chunks,
            create_sql=None,
            identity_column=identity or serial,
            issued_ids=issued_ids(conn, table),
            rowid_name=table.rowid_name,
            batch_rows=batch_rows(file_bytes, count),
            excluded_rowids=excluded.get(table.name, {}),
        )
        for problem in plan.excluded_rowids.values():
            plan.problems[problem] = plan.problems.get(problem, 0) + 1
        plans.append(plan)
    if errors:
        raise MigrationError("the target schema does not fit the source:\n  " + "\n  ".join(errors))
    return plans
