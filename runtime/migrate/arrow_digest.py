"""The source side of the columnar hash (columnar.py), computed from Arrow batches.

numpy gives the byte order: no Python runs per value. Loaded by the worker processes only
(pyarrow costs the parent 0.3 s to import).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from runtime.migrate.columnar import KINDS, chunk_digest
from runtime.migrate.digest import Digest
from runtime.migrate.plan import TablePlan
from runtime.migrate.rowtext import jsonb_text, numeric_text

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


#: Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch; and days.
_PG_EPOCH_MICROS = 946_684_800_000_000
_PG_EPOCH_DAYS = 10_957
#: Arrow types of the Python path's values, for kinds whose values Arrow takes as they are.
_ROW_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"),
    "date": pa.date32(),
}


class ColumnarDigest:
    """The source side of one chunk, fed batch by batch in key order."""

    def __init__(self, plan: TablePlan, *, validate_utf8: bool = True) -> None:
        #: Off where PostgreSQL receives the same batches: it validates every text of a COPY
        #: itself, and invalid UTF-8 fails the chunk (whose digest is then dropped).
        self.validate_utf8 = validate_utf8
        self.kinds = [KINDS[c.converter] for c in plan.columns]
        self.converters = [c.converter for c in plan.columns]
        self.plan = plan
        self.key_index = [c.target for c in plan.columns].index(plan.key[0])
        self.values = [_sha256() for _ in self.kinds]
        self.nulls = [_sha256() for _ in self.kinds]
        #: Per column: whether a text was hashed, after which the next one follows a NUL.
        self.texts_begun = [False for _ in self.kinds]
        self.rows = 0

    def add_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """Rows of Python values (the Python copy path, after its rules). Raises NulInText on a
        NUL byte in a text (plan.py leaves them to be found here or by arrow_copy)."""
        if not rows:
            return
        columns = list(zip(*rows, strict=True))
        key = pa.array(columns[self.key_index], pa.int64())
        self.rows += len(rows)
        for i, values in enumerate(columns):
            kind, converter = self.kinds[i], self.converters[i]
            if kind == "numeric":
                array = pa.array([None if v is None else numeric_text(v) for v in values])
            elif kind == "json":
                array = pa.array([None if v is None else v.obj for v in values], pa.string())
            elif kind == "jsonb":
                texts = [None if v is None else jsonb_text(v.obj) for v in values]
                array = pa.array(texts, pa.string())
            elif converter in _ROW_TYPES:
                array = pa.array(values, _ROW_TYPES[converter])
            else:
                array = pa.array(values, ARROW_TYPES[converter])
            if array.type == pa.string():
                check_no_nul(array)
            self._add_column(i, key, array)

    def add(self, batch: pa.RecordBatch) -> None:
        """One batch whose columns are the plan's, in its order, as the fast copy sends them
        (from arrow_copy.read_batches, which has looked for NUL bytes). Raises
        pyarrow.ArrowInvalid on text that is not valid UTF-8 (the Python path's rules decide
        what it becomes)."""
        self.rows += batch.num_rows
        key = batch.column(self.key_index)
        for i, column in enumerate(batch.columns):
            self._add_column(i, key, column)

    def _add_column(self, i: int, key: pa.Array, column: pa.Array) -> None:
        """One column of a batch."""
        if column.null_count:
            self.nulls[i].update(_int8(pc.filter(key, pc.is_null(column))))
            column = pc.drop_null(column)
        if not len(column):
            return
        kind = self.kinds[i]
        if kind in ("text", "json"):
            if self.validate_utf8:
                column.validate(full=True)
            self._add_text(i, column)
        elif kind == "jsonb":
            self._add_text(i, _jsonb_texts(column))
        elif kind == "numeric":
            if pa.types.is_decimal(column.type):
                self._add_text(i, _decimal_texts(column))
            else:
                self._add_text(i, column)  # numeric_text of the Python path's values
        elif kind == "bool":
            self.values[i].update(column.to_numpy(zero_copy_only=False).astype(np.uint8))
        elif kind == "timestamp":
            micros = pc.cast(column, pa.int64()).to_numpy() - _PG_EPOCH_MICROS
            self.values[i].update(micros.astype(">i8"))
        elif kind == "date":
            days = pc.cast(column, pa.int32()).to_numpy().astype(np.int64) - _PG_EPOCH_DAYS
            self.values[i].update(days.astype(">i4"))
        else:
            values = column.to_numpy()
            self.values[i].update(values.astype(">i8" if kind == "int" else ">f8"))

    def _add_text(self, i: int, column: pa.Array) -> None:
        """Non-null texts, a NUL between two (columnar.py), as string_agg() joins them."""
        if self.texts_begun[i]:
            self.values[i].update(b"\0")
        self.texts_begun[i] = True
        # Each text followed by a NUL, in C; the batch's last NUL is left to the next batch.
        ended = pc.binary_join_element_wise(column, "", "\0")
        _, spanned = _text_bytes(ended)
        self.values[i].update(spanned[:-1])

    def parts(self) -> list[str]:
        parts = []
        for i in range(len(self.kinds)):
            parts.append(self.values[i].hexdigest())
            parts.append(self.nulls[i].hexdigest())
        return parts

    def digest(self) -> Digest:
        return chunk_digest(self.plan, self.rows, self.parts())


def _decimal_texts(column: pa.Array) -> pa.Array:
    """The texts trim_scale() prints for decimal128 values of a scale of at most 6 (Arrow then
    prints them without an exponent): trailing zeros of the fraction and a bare point dropped."""
    texts = pc.cast(column, pa.string())
    if column.type.scale == 0:
        return texts
    trimmed = pc.replace_substring_regex(texts, r"\.?0+$", "")
    return pc.if_else(pc.equal(trimmed, "-"), "0", pc.if_else(pc.equal(trimmed, ""), "0", trimmed))


def _jsonb_texts(column: pa.Array) -> pa.Array:
    """What jsonb prints for each JSON text (rowtext.jsonb_text, in Python: no C normaliser of
    jsonb's printing exists here); the fast copy's values carry jsonb's version byte."""
    if pa.types.is_binary(column.type):
        texts = [jsonb_text(value[1:].decode()) for value in column.to_pylist()]
    else:
        texts = list(map(jsonb_text, column.to_pylist()))
    return pa.array(texts, pa.string())


def _int8(array: pa.Array) -> Any:
    return array.to_numpy().astype(">i8")
