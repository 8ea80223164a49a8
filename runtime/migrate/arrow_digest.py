"""The source side of the columnar hash (columnar.py), computed from Arrow batches.

numpy gives the byte order and the exact integer sums, pyarrow.compute min and max: no Python
runs per value. Loaded by the worker processes only (pyarrow costs the parent 0.3 s to import).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from runtime.migrate.columnar import KINDS, combine
from runtime.migrate.digest import ColumnAggregate, Digest
from runtime.migrate.plan import TablePlan

#: Target base type -> the Arrow type carrying it (and what binary COPY of it expects).
ARROW_TYPES: dict[str, pa.DataType] = {
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "double precision": pa.float64(),
    "text": pa.string(),
    "character varying": pa.string(),
}


class NulInText(ValueError):
    """A text holds a NUL byte: the text rules decide (plan.py leaves these to the copy)."""


def _text_bytes(column: pa.Array) -> tuple[Any, Any]:
    """(byte offsets of the values, the bytes they span) of a string array without nulls."""
    offsets = np.frombuffer(
        column.buffers()[1], dtype="<i4", count=len(column) + 1, offset=column.offset * 4
    )
    data = column.buffers()[2]
    spanned = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    return offsets, spanned[offsets[0] : offsets[-1]]


def check_no_nul(column: pa.Array) -> None:
    """Raise NulInText if a value of this string array holds a NUL byte (a vectorised scan)."""
    if len(column) and not _text_bytes(column)[1].all():
        raise NulInText(column.type)


def _sha256() -> Any:
    return hashlib.sha256()


class ColumnarDigest:
    """The source side of one chunk, fed batch by batch in key order."""

    def __init__(self, plan: TablePlan, *, validate_utf8: bool = True) -> None:
        #: Off where PostgreSQL receives the same batches: it validates every text of a COPY
        #: itself, and invalid UTF-8 fails the chunk (whose digest is then dropped).
        self.validate_utf8 = validate_utf8
        self.kinds = [KINDS[c.converter] for c in plan.columns]
        self.types = [ARROW_TYPES[c.converter] for c in plan.columns]
        self.names = [c.target for c in plan.columns]
        self.key_index = self.names.index(plan.key[0])
        self.values = [_sha256() for _ in self.kinds]
        self.lengths = [_sha256() for _ in self.kinds]
        self.nulls = [_sha256() for _ in self.kinds]
        self.aggregates = [ColumnAggregate() for _ in self.kinds]
        self.rows = 0

    def add_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """Rows of Python values (the Python copy path, after its rules). Raises NulInText on a
        NUL byte in a text (plan.py leaves them to be found here or by arrow_copy)."""
        if not rows:
            return
        arrays = [
            pa.array(values, type=kind)
            for values, kind in zip(zip(*rows, strict=True), self.types, strict=True)
        ]
        for array in arrays:
            if array.type == pa.string():
                check_no_nul(array)
        self.add(pa.RecordBatch.from_arrays(arrays, names=self.names))

    def add(self, batch: pa.RecordBatch) -> None:
        """One batch whose columns are the plan's, in its order (from arrow_copy.read_batches or
        add_rows, which have looked for NUL bytes). Raises pyarrow.ArrowInvalid on text that is
        not valid UTF-8 (the Python path's rules decide what it becomes)."""
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
                if self.validate_utf8:
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
        offsets, spanned = _text_bytes(column)
        self.values[i].update(spanned)
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
