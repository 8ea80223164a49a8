"""Copy one chunk of one table: read the snapshot in batches, convert, stream binary COPY.

Runs in a worker process (one chunk at a time, several workers in parallel). Memory is bounded by
the batch size whatever the table size. Rows that no rule can convert go to a JSONL reject file.
`copy_chunk` takes the fast path (arrow_copy.py) where it applies, else the Python path
(python_copy.py), which alone needs psycopg: the workers' fork server does not import it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.migrate import columnar
from runtime.migrate.digest import Digest
from runtime.migrate.plan import TablePlan
from runtime.migrate.sqlite_source import quote_sqlite
from runtime.migrate.values import CONVERTERS, Converter, Reject

#: Called before a chunk commits (picklable: it travels to the workers with the chunk).
BeforeCommit = Callable[[], None]
VALUE_REPR_LIMIT = 200


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
    #: and the table is to be profiled and copied again (engine.py).
    replan: str | None = None


def source_select(
    plan: TablePlan, chunk: tuple[int, int], ordered: bool
) -> tuple[str, tuple[int, ...]]:
    """SELECT of the snapshot for one chunk: rowid first (None for WITHOUT ROWID), then columns."""
    columns = ", ".join(quote_sqlite(c.source) for c in plan.columns) or "NULL"
    table = quote_sqlite(plan.table)
    rowid = "NULL" if plan.without_rowid else "rowid"
    sql = f"SELECT {rowid}, {columns} FROM {table}"
    params: tuple[int, ...] = ()
    if chunk != (0, -1):
        sql += " WHERE rowid BETWEEN ? AND ?"
        params = chunk
    if ordered:
        if plan.key and not plan.rowid_key:
            source_of = {c.target: c.source for c in plan.columns}
            sql += " ORDER BY " + ", ".join(quote_sqlite(source_of[k]) for k in plan.key)
        elif not plan.without_rowid:
            sql += " ORDER BY rowid"
    return sql, params


class RowConverter:
    """Applies the column converters of a plan; raises RowRejected naming the failing column.

    Columns the profile proved clean are passed through untouched; with strict_utf8 off (after
    invalid UTF-8 was met) every text column goes through its rule again.
    """

    def __init__(self, plan: TablePlan, *, strict_utf8: bool = True) -> None:
        self.converters: list[Converter] = [CONVERTERS[c.converter] for c in plan.columns]
        self.names = [c.source for c in plan.columns]
        self.active = [
            (i, self.converters[i])
            for i, c in enumerate(plan.columns)
            if not (c.passthrough and (strict_utf8 or c.converter != "text"))
        ]
        self.required = [i for i, c in enumerate(plan.columns) if c.not_null and not c.passthrough]
        self.key_columns = set(plan.key)
        self.required_problem = {
            i: "null_in_primary_key"
            if plan.columns[i].target in self.key_columns
            else "null_in_not_null_column"
            for i in self.required
        }
        self.excluded = plan.excluded_rowids
        self.trivial = not self.active and not self.required and not self.excluded

    def convert(self, rowid: int | None, values: tuple[Any, ...]) -> tuple[Any, ...]:
        if rowid is not None and rowid in self.excluded:
            raise RowRejected(self.excluded[rowid], None, None)
        if not self.active and not self.required:
            return values
        row = list(values)
        try:
            for i, convert in self.active:
                row[i] = convert(row[i])
        except Reject:
            for name, convert, value in zip(self.names, self.converters, values, strict=True):
                try:
                    convert(value)
                except Reject as exc:
                    raise RowRejected(exc.problem, name, value) from None
            raise
        for i in self.required:
            if row[i] is None:
                raise RowRejected(self.required_problem[i], self.names[i], None)
        return tuple(row)


class RowRejected(Exception):
    def __init__(self, problem: str, column: str | None, value: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.column = column
        self.value = value


def reject_record(
    plan: TablePlan,
    rowid: int | None,
    values: tuple[Any, ...],
    rejected: RowRejected,
    detail: str | None = None,
) -> dict[str, Any]:
    by_source = dict(zip((c.source for c in plan.columns), values, strict=True))
    if plan.source_key == ("rowid",):
        key: dict[str, Any] = {"rowid": rowid}
    else:
        key = {k: _jsonable(by_source.get(k)) for k in plan.source_key}
    return {
        "source": plan.source_name,
        "table": plan.table,
        "target": plan.label,
        "key": key,
        "column": rejected.column,
        "problem": rejected.problem,
        "value": None if rejected.column is None else repr(rejected.value)[:VALUE_REPR_LIMIT],
        **({"detail": detail} if detail else {}),
    }


#: Marks the reject records of rows PostgreSQL refused (`load_refusals` reads them back).
REFUSED_BY = "postgresql"


def refusal_record(
    plan: TablePlan, rowid: int | None, values: tuple[Any, ...], problem: str, detail: str
) -> dict[str, Any]:
    """The reject record of a row the target refused; keeps the rowid, so a later verification
    (`domos migrate verify`, `--resume`) leaves the same rows out of the source side."""
    record = reject_record(plan, rowid, values, RowRejected(problem, None, None), detail)
    return {**record, "rowid": rowid, "refused_by": REFUSED_BY}


def load_refusals(*paths: Path) -> dict[str, dict[int, str]]:
    """Rows the target refused in an earlier run, per table label: rowid -> problem."""
    refusals: dict[str, dict[int, str]] = {}
    for path in paths:
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                if record.get("refused_by") == REFUSED_BY and record.get("rowid") is not None:
                    table = refusals.setdefault(record["target"], {})
                    table[int(record["rowid"])] = record["problem"]
    return refusals


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, int | float | str):
        return value
    return repr(value)


def copy_chunk(
    plan: TablePlan,
    chunk: tuple[int, int],
    target_url: str,
    reject_path: str,
    *,
    digest: bool = False,
    before_commit: BeforeCommit | None = None,
) -> ChunkResult:
    """Copy one chunk in one transaction: by the fast path (arrow_copy.py) where it applies,
    else on the Python path; invalid UTF-8 makes that start over with lenient reads.

    With `digest`, a table that needs no rule also gets the source side of its verification
    from the same scan (see columnar.py); otherwise `result.digest` stays None.
    `before_commit` runs just before the chunk commits; what it raises rolls the chunk back
    (integrity_gate.py).
    """
    # Here, not at the top: the parent process imports this module but never loads pyarrow.
    from runtime.migrate import arrow_copy
    from runtime.migrate.arrow_digest import ColumnarDigest, NulInText

    started = time.perf_counter()
    digest = digest and columnar.digested_by_copy(plan)
    strict = True
    fallback = None
    if arrow_copy.applies(plan):
        hashed = ColumnarDigest(plan, validate_utf8=False) if digest else None
        try:
            rows = arrow_copy.copy_chunk(plan, chunk, target_url, hashed, before_commit)
        except arrow_copy.DeclaredTypeBroken as exc:
            return ChunkResult(plan.label, chunk, replan=str(exc))
        except (arrow_copy.Unavailable, NulInText) as exc:
            if plan.from_declared_types:  # rules are chosen from a profile, never from a guess
                return ChunkResult(plan.label, chunk, replan=f"fast copy unavailable: {exc!r}")
            fallback = repr(exc)
            strict = not isinstance(exc, NulInText)
        else:
            return ChunkResult(
                table=plan.label,
                chunk=chunk,
                rows_read=rows,
                rows_written=rows,
                seconds=time.perf_counter() - started,
                digest=None if hashed is None else hashed.digest(),
                path="arrow",
            )
    elif plan.from_declared_types:  # its storage classes are the fast copy's to prove
        return ChunkResult(plan.label, chunk, replan="the fast copy does not apply")
    from runtime.migrate import python_copy  # psycopg: only where a chunk needs it

    result = python_copy.copy(
        plan,
        chunk,
        target_url,
        reject_path,
        strict=strict,
        digest=digest,
        before_commit=before_commit,
        fast_path_failure=fallback,
    )
    result.seconds = time.perf_counter() - started
    return result
