"""The fast copy path: snapshot -> Arrow batches -> binary COPY, all in C (ADBC drivers).

Taken for chunks of tables whose every column is passed through as stored or converted by the
Arrow rules (arrow_rules.py: JSON, dates, date-times, booleans, numerics), no row left out. No
Python runs per row or value: the SQLite driver fills Arrow batches (a typed column read once per
storage class the chunk's census finds it holding), pyarrow compute converts the typed columns,
the PostgreSQL driver streams them as binary COPY, and the source side of verification hashes
the same batches column by column as they pass (columnar.py; jsonb's printing alone is computed
in Python).
A value outside what the Arrow rules convert exactly as the Python rules do hands the chunk to
the Python path (`Unavailable`), as does a storage class the profile did not count.

Anything unexpected rolls the chunk back and raises `Unavailable`, and the copier copies that
chunk on the Python path, which has a rule or a reject for every case: a storage class the first
rows did not announce (the driver types each column from its first batch), invalid UTF-8, a row
PostgreSQL refuses. A NUL byte in a text (which the profile leaves to this path to find) raises
NulInText before PostgreSQL sees the batch: the Python path then runs the text rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import adbc_driver_manager
import adbc_driver_postgresql
import adbc_driver_sqlite
import pyarrow as pa

from runtime.migrate import arrow_rules
from runtime.migrate.arrow_digest import ARROW_TYPES, ColumnarDigest, NulInText, check_no_nul
from runtime.migrate.arrow_rules import CLASS_TYPES
from runtime.migrate.columnar import KINDS, arrow_rule
from runtime.migrate.plan import ColumnPlan, TablePlan
from runtime.migrate.sqlite_source import quote_sqlite, table_rows

#: The typed first row's literal per Arrow type: the driver types a column by its first values,
#: so a column whose first rows are NULL would be typed int64 and fail on its first text.
_TYPED_LITERALS = {pa.int64(): "0", pa.float64(): "0.0", pa.string(): "''"}
ERRORS = (adbc_driver_manager.Error, OSError, pa.ArrowException)


class Unavailable(Exception):
    """The chunk must take the Python path; nothing of it was committed."""


def applies(plan: TablePlan) -> bool:
    """Every column passed through as stored, or converted by the Arrow rules (arrow_rules.py);
    no row left out."""
    return (
        bool(plan.columns)
        and not plan.excluded_rowids
        and all(_passed(c) or _typed(c) for c in plan.columns)
    )


def _passed(column: ColumnPlan) -> bool:
    return column.passthrough and ARROW_TYPES.get(column.converter) in _TYPED_LITERALS


def _typed(column: ColumnPlan) -> bool:
    """Converted by an Arrow rule (and hashed by the columnar digest)."""
    return not column.passthrough and arrow_rule(column) and column.converter in KINDS


def _read_classes(column: ColumnPlan) -> list[str]:
    """The storage classes a typed column may hold: those the profile counted; where it counted
    none, those its Arrow rule converts. A chunk's census (`_layout`) refuses any other."""
    counted = column.classes or {}
    classes = [name for name in CLASS_TYPES if counted.get(name)]
    return classes or list(arrow_rules.classes_taken(column.converter))


#: Target types read as Arrow strings, which must hold texts: the SQLite driver reads a blob
#: (or a number) into a string column as if it were text. An int64 or double column needs no
#: check: the driver refuses anything but an integer, or a real, there (REAL affinity reads a
#: stored integer back as a real). A number in a TEXT column is also what the integrity check
#: reports.
_STRING_TYPES = frozenset({"text", "character varying"})


class DeclaredTypeBroken(Unavailable):
    """A row of a plan from declared types holds a storage class its declared type excludes
    (plan.py `declared_columns`): the table is to be profiled and copied again."""

    def __init__(self) -> None:
        super().__init__("a storage class its declared type excludes")


#: Per column of the plan: the storage classes read for it, one SELECT expression each; None
#: for a column passed through as stored (one expression, the column itself).
Layout = list[tuple[str, ...] | None]


def _censused(plan: TablePlan) -> list[ColumnPlan]:
    """The columns whose storage classes a chunk's census counts: the typed ones (which classes
    to read, and none outside what their rule converts) and, in a plan from declared types, the
    text ones (a blob or a number there breaks the promise)."""
    return [
        c
        for c in plan.columns
        if not c.passthrough or (plan.from_declared_types and c.converter in _STRING_TYPES)
    ]


def _chunk_rows(plan: TablePlan, chunk: tuple[int, int]) -> str:
    """FROM and WHERE of the chunk's rows."""
    rows = f"FROM {table_rows(plan.table)}"
    if chunk != (0, -1):
        rows += f" WHERE {plan.rowid_name} BETWEEN {int(chunk[0])} AND {int(chunk[1])}"
    return rows


def _census(
    plan: TablePlan, chunk: tuple[int, int], connection: adbc_driver_manager.AdbcConnection
) -> dict[str, frozenset[str]]:
    """Per censused column, the storage classes (typeof() names, "null" included) its values
    hold in the chunk. One scan that reads no value (typeof() looks at the record header), of
    a snapshot nothing writes to: it holds for the read that follows. A column is then read
    once per class it holds rather than per class its rule takes, and a column of one class as
    it is stored: on a legacy bot's payments this scan and the narrower read cost half the
    CASE of every class."""
    columns = _censused(plan)
    if not columns:
        return {}
    classes = ", ".join(f"group_concat(DISTINCT typeof({quote_sqlite(c.source)}))" for c in columns)
    with closing(adbc_driver_manager.AdbcStatement(connection)) as statement:
        statement.set_sql_query(f"SELECT {classes} {_chunk_rows(plan, chunk)}")
        handle, _ = statement.execute_query()
        row = pa.RecordBatchReader.from_stream(handle).read_all().to_pylist()[0]
    return {
        c.source: frozenset(held.split(",")) if held else frozenset()
        for c, held in zip(columns, row.values(), strict=True)
    }


def _layout(plan: TablePlan, census: dict[str, frozenset[str]]) -> Layout:
    """What is read of each column in a chunk whose classes the census counted. Raises
    DeclaredTypeBroken where a class breaks a declared type's promise, and Unavailable where a
    typed column holds a class the profile did not count, before anything is read."""
    layout: Layout = []
    for column in plan.columns:
        held = census.get(column.source, frozenset())
        if column.passthrough:
            if column.source in census:  # a declared text column
                # typeof() of a NULL is 'null': a NOT NULL column holding one breaks it too.
                allowed = {"text"} if column.not_null else {"text", "null"}
                if held - allowed:
                    raise DeclaredTypeBroken()
            layout.append(None)
            continue
        readable = _read_classes(column)
        outside = held - {"null", *readable}
        if outside:
            if plan.from_declared_types:
                raise DeclaredTypeBroken()
            raise Unavailable(f"{column.source}: {sorted(outside)}, not counted by the profile")
        # A column of NULLs alone is read as one of its classes: an array of nulls.
        layout.append(tuple(name for name in readable if name in held) or tuple(readable[:1]))
    return layout


def _read(plan: TablePlan, layout: Layout) -> list[tuple[str, pa.DataType]]:
    """(SELECT expression, Arrow type) of what is read per column: a passed-through column, or
    a typed one holding one class, as stored; a typed column of several classes once per
    class, NULL where the value is of another."""
    read = []
    for column, classes in zip(plan.columns, layout, strict=True):
        q = quote_sqlite(column.source)
        if classes is None:
            read.append((q, ARROW_TYPES[column.converter]))
        elif len(classes) == 1:
            read.append((q, CLASS_TYPES[classes[0]]))
        else:
            for name in classes:
                read.append((f"CASE WHEN typeof({q}) = '{name}' THEN {q} END", CLASS_TYPES[name]))
    return read


def _select(plan: TablePlan, chunk: tuple[int, int], layout: Layout) -> str:
    """The chunk in key order behind one typed row (1 in the first column, the rows' 0)."""
    read = _read(plan, layout)
    literals = ", ".join(_TYPED_LITERALS[arrow] for _, arrow in read)
    columns = ", ".join(expression for expression, _ in read)
    rows = f"SELECT 0, {columns} {_chunk_rows(plan, chunk)}"
    if plan.rowid_key:
        rows += f" ORDER BY {plan.rowid_name}"
    return f"SELECT 1, {literals} UNION ALL SELECT * FROM ({rows})"


def _schema(plan: TablePlan) -> pa.Schema:
    """The batches sent: target names, and the types binary COPY of each target type takes."""
    return pa.schema(
        [
            (c.target, ARROW_TYPES[c.converter] if c.passthrough else arrow_rules.arrow_type(c))
            for c in plan.columns
        ]
    )


def _converted(plan: TablePlan, layout: Layout, arrays: list[pa.Array]) -> list[pa.Array]:
    """The columns to send from the arrays read (`_read`): typed columns through the Arrow
    rules, which raise NotConvertible for what the Python rules are to decide."""
    result = []
    position = 0
    for column, names in zip(plan.columns, layout, strict=True):
        if names is None:
            result.append(arrays[position])
            position += 1
            continue
        classes = dict(zip(names, arrays[position : position + len(names)], strict=True))
        position += len(names)
        try:
            result.append(arrow_rules.convert(column, classes))
        except arrow_rules.NotConvertible as exc:
            raise Unavailable(f"{column.source}: {exc}") from None
    return result


def read_batches(
    plan: TablePlan, chunk: tuple[int, int], stack: ExitStack
) -> Iterator[pa.RecordBatch]:
    """The chunk's rows as Arrow batches of the target's column names and types."""
    schema = _schema(plan)
    uri = f"{Path(plan.source_path).absolute().as_uri()}?mode=ro"  # percent-encoded path
    database = stack.enter_context(closing(adbc_driver_sqlite.connect(uri)))
    connection = stack.enter_context(closing(adbc_driver_manager.AdbcConnection(database)))
    layout = _layout(plan, _census(plan, chunk, connection))
    read_types = [arrow for _, arrow in _read(plan, layout)]
    statement = stack.enter_context(closing(adbc_driver_manager.AdbcStatement(connection)))
    statement.set_options(**{"adbc.sqlite.query.batch_rows": str(plan.batch_rows)})
    statement.set_sql_query(_select(plan, chunk, layout))
    handle, _ = statement.execute_query()
    reader = pa.RecordBatchReader.from_stream(handle)
    first = True
    for batch in reader:
        if first:
            marker = batch.column(0)
            if not len(marker) or marker[0].as_py() != 1:
                raise Unavailable("the typed first row did not come first")
            batch = batch.slice(1)
            first = False
        arrays = batch.columns[1:]
        if [a.type for a in arrays] != read_types:
            raise Unavailable(f"columns read as {[str(a.type) for a in arrays]}")
        for array in arrays:
            if array.type == pa.string():  # before PostgreSQL sees it (plan.py)
                check_no_nul(array)
        yield pa.RecordBatch.from_arrays(_converted(plan, layout, arrays), schema=schema)


def copy_chunk(
    plan: TablePlan,
    chunk: tuple[int, int],
    target_url: str,
    digest: ColumnarDigest | None,
    before_commit: Callable[[], None] | None = None,
) -> int:
    """Copy one chunk in one transaction; returns the rows written. `digest` (when given) is fed
    every batch on its way; `before_commit` runs before COMMIT (what it raises rolls back)."""
    failure: list[BaseException] = []
    try:
        with ExitStack() as stack:
            batches = read_batches(plan, chunk, stack)

            def hashed() -> Iterator[pa.RecordBatch]:
                try:
                    for batch in batches:
                        if digest is not None:
                            digest.add(batch)
                        yield batch
                except BaseException as exc:  # surfaces in C as a stream error: keep the cause
                    failure.append(exc)
                    raise

            database = stack.enter_context(closing(adbc_driver_postgresql.connect(target_url)))
            connection = stack.enter_context(closing(adbc_driver_manager.AdbcConnection(database)))
            connection.set_autocommit(False)
            statement = stack.enter_context(closing(adbc_driver_manager.AdbcStatement(connection)))
            statement.set_options(
                **{
                    "adbc.ingest.target_table": plan.target,
                    "adbc.ingest.target_db_schema": plan.schema,
                    "adbc.ingest.mode": "adbc.ingest.mode.append",
                }
            )
            statement.bind_stream(pa.RecordBatchReader.from_batches(_schema(plan), hashed()))
            rows = statement.execute_update()
            if before_commit is not None:
                before_commit()
            connection.commit()
    except (*ERRORS, Unavailable) as exc:
        cause = failure[0] if failure else exc
        if isinstance(cause, NulInText | DeclaredTypeBroken):
            raise cause from None
        raise Unavailable(str(cause).splitlines()[0] if str(cause) else repr(cause)) from cause
    return int(rows)
