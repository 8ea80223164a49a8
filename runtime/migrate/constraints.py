"""Phase 5: what is left of the keys once the copy is done, then the foreign keys."""

from __future__ import annotations

from typing import Any

import psycopg
import structlog

from runtime.errors import MigrationError
from runtime.migrate.keys import KeyBuilder
from runtime.migrate.resume_state import save_state
from runtime.migrate.run import Run, TableOutcome

log = structlog.get_logger("domos.migrate")


def add_constraints(
    run: Run, state: dict[str, str], readd_fks: list[str], builder: KeyBuilder
) -> None:
    """Keys and indexes of the tables the builder has not started yet, then (all built)
    foreign keys."""
    target_url = builder.target_url
    todo = [p for p in run.plans if state.get(p.label) == "copied"]
    ready = {p.label for p in run.plans} - {p.label for p in todo}
    if builder.on_key is not None:
        for plan in run.plans:
            if plan.label in ready:  # resumed: constrained by an earlier run
                builder.on_key(plan)
    for plan in todo:
        builder.start(plan)
    for plan in todo:
        builder.builds[plan.label].result()
    with psycopg.connect(target_url, autocommit=True) as conn:
        for plan in todo:
            for constraint in plan.constraints:
                if constraint.kind == "foreign_key":
                    _add_foreign_key(conn, run.outcomes[plan.label], constraint.sql)
        for statement in readd_fks:
            _add_foreign_key(conn, None, statement)
    for plan in todo:
        state[plan.label] = "constrained"
    save_state(run.options, state)


def _add_foreign_key(
    conn: psycopg.Connection[Any], outcome: TableOutcome | None, statement: str
) -> None:
    try:
        conn.execute(statement)
    except psycopg.errors.DuplicateObject:
        return  # a resumed run: the stopped one added it before its state said so
    except psycopg.errors.InvalidForeignKey as exc:
        # Its parent key is not unique in PostgreSQL (keys.py reported why): none to add.
        message = (
            "foreign key not added, its parent key is not unique in PostgreSQL: "
            + str(exc).splitlines()[0]
        )
        log.warning("foreign_key_not_added", statement=statement, error=str(exc))
        if outcome is None:
            raise MigrationError(message) from exc
        outcome.constraint_problems.append(message)
    except psycopg.errors.DatatypeMismatch as exc:
        # SQLite compares a TEXT child with an INTEGER parent by value; PostgreSQL needs one
        # type on both sides, and the plan typed each column from what it stores.
        message = (
            "foreign key not added, its columns' types differ in PostgreSQL: "
            + (str(exc).splitlines()[0])
        )
        log.warning("foreign_key_not_added", statement=statement, error=str(exc))
        if outcome is None:
            raise MigrationError(message) from exc
        outcome.constraint_problems.append(message)
    except psycopg.errors.ForeignKeyViolation as exc:
        # Children of rejected parent rows: keep the constraint for new writes, report the rows.
        conn.execute(statement + " NOT VALID")
        message = f"foreign key added NOT VALID: {str(exc).splitlines()[0]}"
        log.warning("foreign_key_not_validated", statement=statement, error=str(exc))
        if outcome is not None:
            outcome.constraint_problems.append(message)
        else:
            raise MigrationError(message) from exc
