"""Columnar content hash: each column's values in key order, in PostgreSQL's binary form.

Verification hashes what each side holds, independently. The source side hashes the Arrow batches
read from the snapshot (the batches the fast copy streams, or the rows of the Python path turned
into Arrow arrays); the target side is computed by SQL in PostgreSQL (`postgres_hash_columns`).
Per column and chunk, three md5s:
- values: the non-null values in key order as PostgreSQL's send functions write them (int8send
  of every integer type, float8send; a text's UTF-8 bytes);
- lengths (texts only): each text's byte length as int4send, so no separator is needed and no
  text can imitate one;
- nulls: the keys (int8send) of the rows where the column is NULL.
The chunk's content hash is md5 of these, in column order. numpy gives the byte order and the
exact integer sums, pyarrow.compute min and max: no Python runs per value. Floats are compared by
their bits, so no float printing rule can differ between the sides.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from runtime.migrate.digest import ColumnAggregate, Digest
from runtime.migrate.plan import TablePlan, quote_ident

#: Target base type -> how its values are hashed.
KINDS: dict[str, str] = {
    "bigint": "int",
    "integer": "int",
    "smallint": "int",
    "double precision": "float",
    "text": "text",
    "character varying": "text",
}
#: Target base type -> the Arrow type carrying it (and what binary COPY of it expects).
ARROW_TYPES: dict[str, pa.DataType] = {
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "double precision": pa.float64(),
    "text": pa.string(),
    "character varying": pa.string(),
}
_EMPTY = hashlib.md5(b"", usedforsecurity=False).hexdigest()


def supports(plan: TablePlan) -> bool:
    """Keyed by its integer rowid alias (the order both sides share), of columnar types only."""
    return plan.rowid_key and bool(plan.columns) and all(c.converter in KINDS for c in plan.columns)


def digested_by_copy(plan: TablePlan) -> bool:
    """No rule applies and no row is left out: what the copy reads is what it sends, so its own
    scan gives the source side."""
    return supports(plan) and not plan.excluded_rowids and all(c.passthrough for c in plan.columns)


def combine(parts: list[str]) -> str:
    """The chunk's content hash from its column hashes (both sides use this)."""
    return hashlib.md5("|".join(parts).encode(), usedforsecurity=False).hexdigest()


def _md5() -> Any:
    return hashlib.md5(usedforsecurity=False)


class ColumnarDigest:
    """The source side of one chunk, fed batch by batch in key order."""

    def __init__(self, plan: TablePlan) -> None:
        self.plan = plan
        self.kinds = [KINDS[c.converter] for c in plan.columns]
        self.types = [ARROW_TYPES[c.converter] for c in plan.columns]
        self.names = [c.target for c in plan.columns]
        self.key_index = self.names.index(plan.key[0])
        self.values = [_md5() for _ in self.kinds]
        self.lengths = [_md5() for _ in self.kinds]
        self.nulls = [_md5() for _ in self.kinds]
        self.aggregates = [ColumnAggregate() for _ in self.kinds]
        self.rows = 0

    def add_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """Rows of Python values (the Python copy path, after its rules)."""
        if not rows:
            return
        arrays = [
            pa.array(values, type=kind)
            for values, kind in zip(zip(*rows, strict=True), self.types, strict=True)
        ]
        self.add(pa.RecordBatch.from_arrays(arrays, names=self.names))

    def add(self, batch: pa.RecordBatch) -> None:
        """One batch whose columns are the plan's, in its order. Raises pyarrow.ArrowInvalid on
        text that is not valid UTF-8 (the Python path's rules decide what it becomes)."""
        self.rows += batch.num_rows
        key = batch.column(self.key_index)
        for i, column in enumerate(batch.columns):
            if column.null_count:
                self.nulls[i].update(_int8(pc.filter(key, pc.is_null(column))))
                column = pc.drop_null(column)
            if not len(column):
                continue
            aggregate = ColumnAggregate(non_null=len(column))
            if self.kinds[i] == "text":
                column.validate(full=True)
                self._add_text(i, column)
            else:
                values = column.to_numpy()
                if self.kinds[i] == "int":
                    values = values.astype(np.int64, copy=False)
                    self.values[i].update(values.astype(">i8"))
                    # Exact whatever the magnitude: high and low 32 bits summed apart fit int64.
                    high = int((values >> 32).sum())
                    low = int((values & 0xFFFFFFFF).sum())
                    aggregate.total = (high << 32) + low
                else:
                    self.values[i].update(values.astype(">f8"))
                    aggregate.total = float(pc.sum(column).as_py())
            extremes = pc.min_max(column)
            aggregate.minimum = extremes["min"].as_py()
            aggregate.maximum = extremes["max"].as_py()
            self.aggregates[i].merge(aggregate)

    def _add_text(self, i: int, column: pa.Array) -> None:
        offsets = np.frombuffer(
            column.buffers()[1], dtype="<i4", count=len(column) + 1, offset=column.offset * 4
        )
        data = column.buffers()[2]
        if data is not None:
            self.values[i].update(memoryview(data)[offsets[0] : offsets[-1]])
        self.lengths[i].update(np.diff(offsets).astype(">i4"))

    def parts(self) -> list[str]:
        parts = []
        for i, kind in enumerate(self.kinds):
            parts.append(self.values[i].hexdigest())
            if kind == "text":
                parts.append(self.lengths[i].hexdigest())
            parts.append(self.nulls[i].hexdigest())
        return parts

    def digest(self) -> Digest:
        digest = Digest(rows=self.rows, hash_parts=[combine(self.parts())])
        digest.aggregates = dict(zip(self.names, self.aggregates, strict=True))
        return digest


def _int8(array: pa.Array) -> Any:
    return array.to_numpy().astype(">i8")


def _string_agg(expression: str, where: str | None = None) -> str:
    aggregate = f"string_agg({expression}, ''::bytea)"
    if where is not None:
        aggregate += f" FILTER (WHERE {where})"
    return f"md5(coalesce({aggregate}, ''::bytea))"


def postgres_hash_columns(plan: TablePlan) -> list[str]:
    """The SQL expressions giving `ColumnarDigest.parts()` over an ordered scan of the target."""
    key = f"int8send({quote_ident(plan.key[0])}::bigint)"
    expressions = []
    for column in plan.columns:
        q = quote_ident(column.target)
        kind = KINDS[column.converter]
        if kind == "int":
            expressions.append(_string_agg(f"int8send({q}::bigint)"))
        elif kind == "float":
            expressions.append(_string_agg(f"float8send({q})"))
        else:
            # md5 of the text itself hashes its UTF-8 bytes (the server encoding is checked):
            # a third cheaper than aggregating convert_to() copies.
            expressions.append(f"md5(coalesce(string_agg({q}, ''), ''))")
            expressions.append(_string_agg(f"int4send(octet_length({q}))"))
        # A NOT NULL column has no null keys: the constant saves a filter per row.
        expressions.append(f"'{_EMPTY}'" if column.not_null else _string_agg(key, f"{q} IS NULL"))
    return expressions
