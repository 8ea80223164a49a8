"""The Python copy path: value rules, reject file, refusals by PostgreSQL (psycopg binary COPY).

Taken for chunks the fast path (arrow_copy.py) cannot copy as they are stored; imported by a
worker the first time it needs it (copier.copy_chunk).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import structlog

from runtime.migrate.chunk import BeforeCommit, ChunkResult, source_select
from runtime.migrate.plan import TablePlan, quote_ident
from runtime.migrate.rejects import refusal_record, reject_record
from runtime.migrate.row_rules import RowConverter, RowRejected
from runtime.migrate.sqlite_source import open_snapshot
from runtime.migrate.values import COPY_TYPES
from runtime.migrate.verify import chunk_digest

log = structlog.get_logger("domos.migrate")

#: What PostgreSQL raises for one row's values: a CHECK, NOT NULL or unique constraint of an
#: existing table, a value beyond the column's type. The chunk is then copied again batch by
#: batch, and the rows PostgreSQL refuses go to the reject file (`_copy_chunk_isolating`).
TARGET_ROW_ERRORS = (psycopg.errors.IntegrityError, psycopg.errors.DataError)


def copy(
    plan: TablePlan,
    chunk: tuple[int, int],
    target_url: str,
    reject_path: str,
    *,
    strict: bool,
    digest: bool,
    before_commit: BeforeCommit | None,
    fast_path_failure: str | None = None,
) -> ChunkResult:
    """Strict UTF-8 reads where no rule applies; invalid UTF-8 or a NUL byte in a text makes it
    start over with lenient reads, which run the text rules on every text column.
    `fast_path_failure`: why the fast path gave the chunk up, if it tried."""
    from runtime.migrate.arrow_digest import NulInText  # workers only (see copier.copy_chunk)

    if fast_path_failure is not None:
        log.info("fast_copy_unavailable", table=plan.label, chunk=chunk, reason=fast_path_failure)
    try:
        if strict:
            try:
                return _copy_chunk(
                    plan,
                    chunk,
                    target_url,
                    reject_path,
                    before_commit,
                    strict_utf8=True,
                    digest=digest,
                )
            except (sqlite3.OperationalError, NulInText) as exc:
                if isinstance(exc, sqlite3.OperationalError) and "decode" not in str(exc).lower():
                    raise
                Path(reject_path).unlink(missing_ok=True)
        return _copy_chunk(plan, chunk, target_url, reject_path, before_commit, strict_utf8=False)
    except TARGET_ROW_ERRORS:
        Path(reject_path).unlink(missing_ok=True)
        return _copy_chunk_isolating(plan, chunk, target_url, reject_path, before_commit)


def _copy_chunk(
    plan: TablePlan,
    chunk: tuple[int, int],
    target_url: str,
    reject_path: str,
    before_commit: BeforeCommit | None,
    *,
    strict_utf8: bool,
    digest: bool = False,
) -> ChunkResult:
    result = ChunkResult(table=plan.label, chunk=chunk)
    converter = RowConverter(plan, strict_utf8=strict_utf8)
    source = open_snapshot(Path(plan.source_path), strict_utf8=strict_utf8)
    # The digest hashes the rows sent (as converted), read in rowid order (free on a rowid
    # range), which is key order: the source side of verification without a second scan.
    hashed = chunk_digest(plan) if digest else None
    select, params = source_select(plan, chunk, ordered=hashed is not None)
    copy_sql = _copy_statement(plan)
    rejects_file = None
    try:
        with psycopg.connect(target_url) as target, target.cursor() as cursor:
            with cursor.copy(copy_sql) as copy:
                copy.set_types([COPY_TYPES[c.converter] for c in plan.columns])
                reader = source.execute(select, params)
                write_row = copy.write_row
                while batch := reader.fetchmany(plan.batch_rows):
                    result.rows_read += len(batch)
                    if converter.trivial:
                        rows = [row[1:] for row in batch]
                        if hashed is not None:
                            hashed.add_rows(rows)
                        for values in rows:
                            write_row(values)
                        result.rows_written += len(batch)
                        continue
                    converted = []
                    for row in batch:
                        values = row[1:]
                        try:
                            converted.append(converter.convert(row[0], values))
                        except RowRejected as rejected:
                            if rejects_file is None:
                                rejects_file = open(reject_path, "a", encoding="utf-8")  # noqa: SIM115
                            record = reject_record(plan, row[0], values, rejected)
                            rejects_file.write(json.dumps(record, ensure_ascii=False) + "\n")
                            result.rejects[rejected.problem] = (
                                result.rejects.get(rejected.problem, 0) + 1
                            )
                    for values in converted:
                        write_row(values)
                    result.rows_written += len(converted)
                    if hashed is not None:
                        hashed.add_rows(converted)
            if before_commit is not None:
                before_commit()
            target.commit()
        if hashed is not None:
            result.digest = hashed.digest()
            result.digest.skipped_rows = sum(result.rejects.values())
    finally:
        source.close()
        if rejects_file is not None:
            rejects_file.close()
    return result


def _copy_chunk_isolating(
    plan: TablePlan,
    chunk: tuple[int, int],
    target_url: str,
    reject_path: str,
    before_commit: BeforeCommit | None,
) -> ChunkResult:
    """The slow path after PostgreSQL refused a row: batch by batch, each in a savepoint; a
    refused batch is halved until the refused rows stand alone, and those go to the reject file
    with PostgreSQL's reason. Lenient UTF-8 reads: the text rules give valid text unchanged."""
    log.warning("chunk_copied_row_by_row", table=plan.label, chunk=chunk)
    result = ChunkResult(table=plan.label, chunk=chunk)
    converter = RowConverter(plan, strict_utf8=False)
    source = open_snapshot(Path(plan.source_path), strict_utf8=False)
    select, params = source_select(plan, chunk, ordered=False)
    copy_sql = _copy_statement(plan)
    types = [COPY_TYPES[c.converter] for c in plan.columns]
    try:
        with (
            open(reject_path, "a", encoding="utf-8") as rejects,
            psycopg.connect(target_url) as target,
            target.transaction(),
        ):

            def reject(rowid: int | None, values: tuple[Any, ...], rejected: RowRejected) -> None:
                record = reject_record(plan, rowid, values, rejected)
                rejects.write(json.dumps(record, ensure_ascii=False) + "\n")
                result.rejects[rejected.problem] = result.rejects.get(rejected.problem, 0) + 1

            def refuse(rowid: int | None, values: tuple[Any, ...], exc: psycopg.Error) -> None:
                problem = _problem(exc)
                record = refusal_record(plan, rowid, values, problem, str(exc).splitlines()[0])
                rejects.write(json.dumps(record, ensure_ascii=False) + "\n")
                result.rejects[problem] = result.rejects.get(problem, 0) + 1
                if rowid is not None:
                    result.refused[rowid] = problem

            def copy_rows(rows: list[tuple[int | None, tuple[Any, ...], tuple[Any, ...]]]) -> int:
                if not rows:
                    return 0
                try:
                    with (
                        target.transaction(),
                        target.cursor() as cursor,
                        cursor.copy(copy_sql) as copy,
                    ):
                        copy.set_types(types)
                        for _, _, converted in rows:
                            copy.write_row(converted)
                    return len(rows)
                except TARGET_ROW_ERRORS as exc:
                    if len(rows) > 1:
                        middle = len(rows) // 2
                        return copy_rows(rows[:middle]) + copy_rows(rows[middle:])
                    rowid, values, _ = rows[0]
                    refuse(rowid, values, exc)
                    return 0

            reader = source.execute(select, params)
            while batch := reader.fetchmany(plan.batch_rows):
                result.rows_read += len(batch)
                rows = []
                for row in batch:
                    try:
                        rows.append((row[0], row[1:], converter.convert(row[0], row[1:])))
                    except RowRejected as rejected:
                        reject(row[0], row[1:], rejected)
                result.rows_written += copy_rows(rows)
            if before_commit is not None:
                before_commit()
    finally:
        source.close()
    return result


def _copy_statement(plan: TablePlan) -> str:
    columns = ", ".join(quote_ident(c.target) for c in plan.columns)
    return f"COPY {plan.qualified} ({columns}) FROM STDIN (FORMAT BINARY)"


def _problem(exc: psycopg.Error) -> str:
    """`check_violation:flats_price_check`, `not_null_violation`, `numeric_value_out_of_range`."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
    constraint = exc.diag.constraint_name
    return f"{name}:{constraint}" if constraint else name
