"""The fast copy path: snapshot -> Arrow batches -> binary COPY, all in C (ADBC drivers).

Taken for chunks of tables whose every column is passed through as stored or converted by the
Arrow rules (arrow_rules.py: JSON, dates, date-times, booleans, numerics), no row left out. No
Python runs per row or value: the SQLite driver fills Arrow batches (a typed column read once per
storage class it holds), pyarrow compute converts the typed columns, the PostgreSQL driver streams
them as binary COPY, and the source side of verification hashes the same batches column by
column as they pass (columnar.py; jsonb's printing alone is computed in Python).
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
import pyarrow.compute as pc

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
    """The storage classes a typed column is read in, one SELECT expression each: those the
    profile counted; where it counted none, those its Arrow rule converts. Any other is caught
    by `_marker`."""
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


def _marker(plan: TablePlan) -> str:
    """The first column of every row read: 0 for a row holding only the storage classes the
    plan's declared types promise, where the driver cannot tell; else how many it breaks.

    Computed in the scan that reads the row (a separate query cost a second scan of the chunk);
    a plan from a profile needs no check: the profile counted every stored class."""
    checks = []
    for column in plan.columns:
        if not column.passthrough:
            checks.append(_outside(quote_sqlite(column.source), [*_read_classes(column), "null"]))
    if plan.from_declared_types:
        for column in plan.columns:
            if column.converter in _STRING_TYPES:
                # typeof() of a NULL is 'null': a NOT NULL column holding one breaks it too.
                allowed = ["text"] if column.not_null else ["text", "null"]
                checks.append(_outside(quote_sqlite(column.source), allowed))
    return " + ".join(checks) or "0"


_STORAGE_CLASSES = ("integer", "real", "text", "blob", "null")


def _outside(q: str, allowed: list[str]) -> str:
    """1 where the value's storage class is not one of `allowed`, else 0. SQLite evaluates
    `typeof(x) NOT IN (...)` by probing a list per row, slower than one or two comparisons."""
    others = [name for name in _STORAGE_CLASSES if name not in allowed]
    if len(others) == 1:
        return f"(typeof({q}) = '{others[0]}')"
    stored = [name for name in allowed if name != "null"]
    if len(stored) == 1:
        test = f"typeof({q}) <> '{stored[0]}'"
    else:
        test = f"typeof({q}) NOT IN ({', '.join(repr(name) for name in stored)})"
    return f"({q} IS NOT NULL AND {test})" if "null" in allowed else f"({test})"


def _read(plan: TablePlan) -> list[tuple[str, pa.DataType]]:
    """(SELECT expression, Arrow type) of what is read per column: a passed-through column as
    stored; a typed column once per storage class, NULL where the value is of another."""
    read = []
    for column in plan.columns:
        q = quote_sqlite(column.source)
        if column.passthrough:
            read.append((q, ARROW_TYPES[column.converter]))
            continue
        for name in _read_classes(column):
            read.append((f"CASE WHEN typeof({q}) = '{name}' THEN {q} END", CLASS_TYPES[name]))
    return read


def _select(plan: TablePlan, chunk: tuple[int, int]) -> str:
    """The chunk in key order behind one typed row (marked 1 in the first column; the rows'
    first column is their `_marker`)."""
    read = _read(plan)
    literals = ", ".join(_TYPED_LITERALS[arrow] for _, arrow in read)
    columns = ", ".join(expression for expression, _ in read)
    rows = f"SELECT {_marker(plan)}, {columns} FROM {table_rows(plan.table)}"
    if chunk != (0, -1):
        rows += f" WHERE {plan.rowid_name} BETWEEN {int(chunk[0])} AND {int(chunk[1])}"
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


def _converted(plan: TablePlan, arrays: list[pa.Array]) -> list[pa.Array]:
    """The columns to send from the arrays read (`_read`): typed columns through the Arrow
    rules, which raise NotConvertible for what the Python rules are to decide."""
    result = []
    position = 0
    for column in plan.columns:
        if column.passthrough:
            result.append(arrays[position])
            position += 1
            continue
        names = _read_classes(column)
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
    read_types = [arrow for _, arrow in _read(plan)]
    uri = f"{Path(plan.source_path).absolute().as_uri()}?mode=ro"  # percent-encoded path
    database = stack.enter_context(closing(adbc_driver_sqlite.connect(uri)))
    connection = stack.enter_context(closing(adbc_driver_manager.AdbcConnection(database)))
    statement = stack.enter_context(closing(adbc_driver_manager.AdbcStatement(connection)))
    statement.set_options(**{"adbc.sqlite.query.batch_rows": str(plan.batch_rows)})
    statement.set_sql_query(_select(plan, chunk))
    handle, _ = statement.execute_query()
    reader = pa.RecordBatchReader.from_stream(handle)
    first = True
    check = plan.from_declared_types or any(not c.passthrough for c in plan.columns)
    for batch in reader:
        if first:
            marker = batch.column(0)
            if not len(marker) or marker[0].as_py() != 1:
                raise Unavailable("the typed first row did not come first")
            batch = batch.slice(1)
            first = False
        if check and batch.num_rows and pc.max(batch.column(0)).as_py() != 0:
            # before PostgreSQL sees the batch
            if plan.from_declared_types:
                raise DeclaredTypeBroken()
            raise Unavailable("a storage class the profile did not count")
        arrays = batch.columns[1:]
        if [a.type for a in arrays] != read_types:
            raise Unavailable(f"columns read as {[str(a.type) for a in arrays]}")
        for array in arrays:
            if array.type == pa.string():  # before PostgreSQL sees it (plan.py)
                check_no_nul(array)
        yield pa.RecordBatch.from_arrays(_converted(plan, arrays), schema=schema)


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
