"""Primary keys, uniques, indexes and sequences of each table, built on threads as soon as
the table is copied."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import structlog

from runtime.migrate.plan import Constraint, TablePlan, quote_ident
from runtime.migrate.run import Run, TableOutcome

log = structlog.get_logger("domos.migrate")

#: What PostgreSQL raises for a CHECK expression written for SQLite.
_NOT_POSTGRESQLS = (
    psycopg.errors.CheckViolation,
    psycopg.errors.ProgrammingError,  # no such function or operator, syntax
    psycopg.errors.DataError,
)
#: maintenance_work_mem of the sessions that build keys and indexes (KeyBuilder).
INDEX_BUILD_MEMORY = "256MB"


class KeyBuilder:
    """Keys and indexes of each table, on threads, started as soon as the table is copied.

    `on_key(plan)` runs as soon as a table's primary key exists (before its other indexes):
    verification reads the target in key order, so it can start while the indexes build. A table
    copied before the others builds while they still copy."""

    def __init__(
        self, run: Run, target_url: str, on_key: Callable[[TablePlan], None] | None = None
    ) -> None:
        self.run = run
        self.target_url = target_url
        self.on_key = on_key
        self.threads = ThreadPoolExecutor(max_workers=max(1, run.options.jobs))
        self.builds: dict[str, Future[None]] = {}

    def start(self, plan: TablePlan) -> None:
        if plan.label not in self.builds:
            self.builds[plan.label] = self.threads.submit(self._build, plan)

    def _build(self, plan: TablePlan) -> None:
        started = time.perf_counter()
        keys = [c for c in plan.constraints if c.kind == "primary_key"]
        others = [c for c in plan.constraints if c.kind not in ("primary_key", "foreign_key")]
        # A quarter gigabyte for the index sorts: the benchmark's largest (1M rows of a bigint
        # and a text) then sorts in memory, 2.0 instead of 2.3-2.4 core-s with parallel workers.
        options = f"-c maintenance_work_mem={INDEX_BUILD_MEMORY}"
        with psycopg.connect(self.target_url, autocommit=True, options=options) as conn:
            outcome = self.run.outcomes[plan.label]
            for constraint in keys:
                _add_key(conn, plan, outcome, constraint)
            if self.on_key is not None:
                self.on_key(plan)
            # Before the other indexes (it waits for an index build, and plain indexes need no
            # statistics of their own): the last index, which PostgreSQL may build with
            # parallel workers, is then what finishes the run, not ANALYZE on one core.
            conn.execute(f"ANALYZE {plan.qualified}")
            for constraint in others:
                _add_key(conn, plan, outcome, constraint)
            _set_sequence(conn, plan)
        outcome.phases["constraints_s"] = round(time.perf_counter() - started, 3)

    def close(self) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)


def _add_key(
    conn: psycopg.Connection[Any], plan: TablePlan, outcome: TableOutcome, constraint: Constraint
) -> None:
    """A key, unique constraint or index. Values SQLite holds apart can be equal in PostgreSQL:
    1 and '1' in an untyped column (both text), two spellings of one instant in a DATETIME
    column. Such a key is not added: a plain index of its columns stands in, and the run
    reports it (exit 1), every row copied and verified, for the operator to resolve."""
    if _exists(conn, plan, constraint):
        # A resumed run: the run that was stopped built it before its state said so.
        return
    try:
        conn.execute(constraint.sql)
    except _NOT_POSTGRESQLS as exc:
        if constraint.kind != "check":
            raise
        # SQLite's expression: a function or comparison PostgreSQL lacks, or rows it refuses.
        error = str(exc).splitlines()[0]
        outcome.constraint_problems.append(
            f"{constraint.name} not added ({error}): {constraint.sql}"
        )
        log.warning("check_not_added", table=plan.label, check=constraint.name, error=error)
    except psycopg.errors.UniqueViolation as exc:
        if not constraint.columns:
            raise
        detail = (exc.diag.message_detail or str(exc)).strip()
        outcome.constraint_problems.append(
            f"{constraint.name} not added: {detail.rstrip('.')} in PostgreSQL, though unique in "
            "SQLite; a plain index stands in for it"
        )
        log.warning("key_not_unique", table=plan.label, key=constraint.name, detail=detail)
        columns = ", ".join(quote_ident(c) for c in constraint.columns)
        conn.execute(f"CREATE INDEX {quote_ident(constraint.name)} ON {plan.qualified} ({columns})")


def _exists(conn: psycopg.Connection[Any], plan: TablePlan, constraint: Constraint) -> bool:
    """The table has this constraint (a check), or an index of this name (a key, a unique
    constraint or an index, whose index takes the constraint's name)."""
    if constraint.kind == "check":
        sql = "SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND conname = %s"
        return conn.execute(sql, (plan.qualified, constraint.name)).fetchone() is not None
    sql = (
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %s::regclass AND c.relname = %s"
    )
    return conn.execute(sql, (plan.qualified, constraint.name)).fetchone() is not None


def _set_sequence(conn: psycopg.Connection[Any], plan: TablePlan) -> None:
    """Move the identity/serial sequence past the copied ids so inserts without an id work, and
    past every id an AUTOINCREMENT table issued, so no deleted row's id comes back."""
    if plan.identity_column is None:
        return
    column = quote_ident(plan.identity_column)
    conn.execute(
        f"""
        SELECT setval(seq, COALESCE(m, 1), m IS NOT NULL)
        FROM (SELECT pg_get_serial_sequence(%s, %s) AS seq,
                     GREATEST((SELECT max({column}) FROM {plan.qualified}), %s::bigint) AS m) s
        WHERE seq IS NOT NULL
        """,
        (plan.qualified, plan.identity_column, plan.issued_ids),
    )
