"""One chunk of one table: the snapshot's SELECT for it and what copying it reports.

Shared by both copy paths (copier.py chooses) and by verification, which reads chunks the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.migrate.digest import Digest
from runtime.migrate.plan import TablePlan
from runtime.migrate.sqlite_source import quote_sqlite, table_rows

#: Called before a chunk commits (picklable: it travels to the workers with the chunk).
BeforeCommit = Callable[[], None]


@dataclass
class ChunkResult:
    table: str  # plan label
    chunk: tuple[int, int]
    rows_read: int = 0
    rows_written: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: The source side of verification, when it was computed from the copy's scan.
    digest: Digest | None = None
    #: Rows PostgreSQL refused (rowid -> problem); verification leaves them out too.
    refused: dict[int, str] = field(default_factory=dict)
    #: "arrow" (arrow_copy.py) or "python" (rules, rejects, refusals).
    path: str = "python"
    #: A plan from declared types whose promise this chunk broke (why): nothing was written,
    #: and the table is to be profiled and copied again (copy_phase.py).
    replan: str | None = None


def source_select(
    plan: TablePlan, chunk: tuple[int, int], ordered: bool
) -> tuple[str, tuple[int, ...]]:
    """SELECT of the snapshot for one chunk: rowid first (None for WITHOUT ROWID), then columns."""
    columns = ", ".join(quote_sqlite(c.source) for c in plan.columns) or "NULL"
    table = table_rows(plan.table)
    rowid = "NULL" if plan.without_rowid else plan.rowid_name
    sql = f"SELECT {rowid}, {columns} FROM {table}"
    params: tuple[int, ...] = ()
    if chunk != (0, -1):
        sql += f" WHERE {plan.rowid_name} BETWEEN ? AND ?"
        params = chunk
    if ordered and plan.hashed_in_key_order:
        sql += f" ORDER BY {plan.rowid_name}"
    return sql, params
