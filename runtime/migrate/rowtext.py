"""Canonical row text: one text per row that SQL on PostgreSQL and Python produce identically.

Verification hashes this text in key order (md5 per chunk). PostgreSQL computes it by SQL over
what the target stores (`md5(string_agg(... ORDER BY key))`), so no row crosses the wire; the
SQLite side formats the rows it reads from the snapshot through the value rules in Python. The
two never share code or data, only this encoding, which is proven equal by property tests.

Encoding per value (NULL is `~`, values are joined by `|`, each row ends with a newline):
- integers: decimal text;
- double precision / real: the IEEE bits as hex (float8send/float4send), so no float printing
  rule (PostgreSQL `2` vs Python `2.0`, exponent switch points) can differ;
- numeric: the shortest plain decimal (trim_scale; zero is `0`);
- text: its length in characters, `:`, the text (the length keeps `|` and newlines unambiguous);
- json: the stored text, as text; jsonb: the text PostgreSQL prints for it (`jsonb_text`), as text;
- boolean `t`/`f`; timestamps: microseconds since the epoch (without time zone: of the wall
  clock); date: days since 1970-01-01; bytea: hex; uuid: the hyphenated lower-case form.
Tables with other column types (interval, character) keep the row-by-row comparison.

Tables of integer, float and text columns only use the cheaper columnar hash (columnar.py).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from runtime.migrate.plan import TablePlan, quote_ident

NULL_TEXT = "~"
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_DATE = date(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_FLOAT8 = struct.Struct(">d")
_FLOAT4 = struct.Struct(">f")


def _float8(value: float) -> str:
    return _FLOAT8.pack(value).hex()


def _float4(value: float) -> str:
    try:
        return _FLOAT4.pack(value).hex()
    except OverflowError:
        return "overflow"  # PostgreSQL never stores it: the hashes differ and say so


def numeric_text(value: Decimal) -> str:
    """The text trim_scale() prints for a numeric of this value (zero is `0`)."""
    if not value:
        return "0"
    text = format(value, "f")  # exact: normalize() would round to the context precision
    return text.rstrip("0").rstrip(".") if "." in text else text


def _text(value: str) -> str:
    return f"{len(value)}:{value}"


def _boolean(value: bool) -> str:
    return "t" if value else "f"


def _timestamptz(value: datetime) -> str:
    return str((value - _EPOCH_UTC) // _MICROSECOND)


def _timestamp(value: datetime) -> str:
    return str((value - _EPOCH_NAIVE) // _MICROSECOND)


def _date(value: date) -> str:
    return str((value - _EPOCH_DATE).days)


def _bytea(value: bytes | memoryview) -> str:
    return bytes(value).hex()


def _json(value: Any) -> str:
    return _text(value.obj)


def _jsonb(value: Any) -> str:
    return _text(jsonb_text(value.obj))


def jsonb_text(text: str) -> str:
    """What PostgreSQL's jsonb output prints for a JSON text: keys unique (the last wins) and
    ordered by length then bytes, `, ` and `: ` separators, numbers as numeric prints them
    (scale kept: `1.50`; exponents expanded: `1e2` is `100`), strings with only `"`, `\\` and
    control characters escaped.

    The usual text takes json's C decoder and encoder, which write those separators and
    escapes: Python only orders the keys (`_jsonb_object`) and, where a number has a fraction
    or an exponent, spells it as numeric does (a string marked by a NUL, which the encoder
    escapes). A text holding `\\u0000` (jsonb refuses it anyway) or one the decoder refuses is
    rendered value by value (`_jsonb_render`), which decides what is accepted, as before."""
    if _NUL_ESCAPE not in text:
        try:
            ordered = _DECODER.decode(text)
        except ValueError:
            pass
        else:
            printed = _ENCODER.encode(ordered)
            return _MARKED_NUMBER.sub(r"\1", printed) if _NUL_ESCAPE in printed else printed
    return _jsonb_render(json.loads(text, parse_float=Decimal))


_NUL_ESCAPE = "\\u0000"
#: A number with a fraction or an exponent, as `_marked_number` hands it to the encoder.
_MARKED_NUMBER = re.compile(r'"\\u0000([-0-9.]*)"')


def _marked_number(text: str) -> str:
    return "\x00" + _jsonb_render(Decimal(text))


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity: left to the value-by-value rendering


def _jsonb_object(value: dict[str, Any]) -> dict[str, Any]:
    """An object as the decoder builds it (the last of a repeated key won), its keys in jsonb's
    order; its inner objects were ordered when they were decoded. The order of a set of keys is
    computed once (`_ORDERS`): a column's objects mostly repeat a few shapes."""
    if len(value) < 2:
        return value
    names = tuple(value)
    order = _ORDERS.get(names, _UNSEEN)
    if order is _UNSEEN:
        order = _jsonb_order(names)
        if len(names) <= _ORDER_KEYS and len(_ORDERS) < _ORDER_SHAPES:
            _ORDERS[names] = order
    if order is None:
        return value
    return {key: value[key] for key in order}


def _jsonb_order(names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The keys in jsonb's order, or None when they are in it already."""
    keys = sorted(names)
    if "".join(keys).isascii():
        keys.sort(key=len)  # stable: by length, then bytes
    else:
        keys.sort(key=_jsonb_key_order)
    ordered = tuple(keys)
    return None if ordered == names else ordered


#: Key orders already computed, by the keys in the order the text gives them: bounded in shapes
#: and in keys per shape, so no column of ever-new objects grows it without end.
_ORDERS: dict[tuple[str, ...], tuple[str, ...] | None] = {}
_ORDER_SHAPES = 4096
_ORDER_KEYS = 64
_UNSEEN: Any = object()


_DECODER = json.JSONDecoder(
    parse_float=_marked_number, parse_constant=_no_constant, object_hook=_jsonb_object
)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "), check_circular=False)


_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_JSON_SPECIAL = re.compile('["\\\\\x00-\x1f]')


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    return _JSON_ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _jsonb_string(value: str) -> str:
    if _JSON_SPECIAL.search(value) is None:  # the usual string: nothing to escape
        return f'"{value}"'
    return '"' + _JSON_SPECIAL.sub(_json_escape, value) + '"'


def _jsonb_key_order(key: str) -> tuple[int, str]:
    # Length in bytes, then bytes: UTF-8 orders as code points do, so the str itself serves.
    return (len(key) if key.isascii() else len(key.encode()), key)


def _jsonb_render(value: Any) -> str:
    if isinstance(value, str):
        return _jsonb_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if type(value) is int:  # -0 is 0 already, as numeric prints it
        return str(value)
    if isinstance(value, Decimal):
        if value.is_zero():
            value = value.copy_abs()  # numeric has no negative zero
        return format(value, "f")
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_render(item) for item in value) + "]"
    keys = sorted(value, key=_jsonb_key_order)
    return "{" + ", ".join(f"{_jsonb_string(k)}: {_jsonb_render(value[k])}" for k in keys) + "}"


#: converter (target base type) -> (SQL expression over `{c}`, Python formatter of a non-null value)
ENCODINGS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "bigint": ("{c}::text", str),
    "integer": ("{c}::text", str),
    "smallint": ("{c}::text", str),
    "double precision": ("encode(float8send({c}), 'hex')", _float8),
    "real": ("encode(float4send({c}), 'hex')", _float4),
    "numeric": ("CASE WHEN {c} = 0 THEN '0' ELSE trim_scale({c})::text END", numeric_text),
    "text": ("length({c})::text || ':' || {c}", _text),
    "character varying": ("length({c})::text || ':' || {c}", _text),
    "boolean": ("CASE WHEN {c} THEN 't' WHEN NOT {c} THEN 'f' END", _boolean),
    "timestamp with time zone": (
        "(extract(epoch FROM {c}) * 1000000)::numeric(30, 0)::text",
        _timestamptz,
    ),
    "timestamp without time zone": (
        "(extract(epoch FROM {c}) * 1000000)::numeric(30, 0)::text",
        _timestamp,
    ),
    "date": ("({c} - date '1970-01-01')::text", _date),
    "bytea": ("encode({c}, 'hex')", _bytea),
    "uuid": ("{c}::text", str),
    "json": ("length({c}::text)::text || ':' || {c}::text", _json),
    "jsonb": ("length({c}::text)::text || ':' || {c}::text", _jsonb),
}


def supports(plan: TablePlan) -> bool:
    """Row text needs a key order both sides share (the rowid alias) and encodable columns."""
    return plan.rowid_key and all(c.converter in ENCODINGS for c in plan.columns)


def sql_row_text(plan: TablePlan) -> str:
    """SQL expression of one row's canonical text (without the newline)."""
    parts = []
    for column in plan.columns:
        expression = ENCODINGS[column.converter][0].format(c=quote_ident(column.target))
        parts.append(f"coalesce({expression}, '{NULL_TEXT}')")
    return " || '|' || ".join(parts) if parts else "''"


def batch_formatter(plan: TablePlan) -> Callable[[list[tuple[Any, ...]]], str]:
    """The canonical texts of a batch of converted rows, each ending with a newline: what
    `row_formatter` gives, computed column by column (a column without NULLs is one `map`)."""
    formatters = [ENCODINGS[c.converter][1] for c in plan.columns]

    def format_rows(rows: list[tuple[Any, ...]]) -> str:
        if not rows or not formatters:
            return "\n" * len(rows)
        columns = []
        for encode, values in zip(formatters, zip(*rows, strict=True), strict=True):
            if any(value is None for value in values):
                columns.append([NULL_TEXT if value is None else encode(value) for value in values])
            else:
                columns.append(list(map(encode, values)))
        return "\n".join(map("|".join, zip(*columns, strict=True))) + "\n"

    return format_rows


def row_formatter(plan: TablePlan) -> Callable[[tuple[Any, ...]], str]:
    """One converted row's canonical text (without the newline)."""
    format_rows = batch_formatter(plan)
    return lambda row: format_rows([row])[:-1]
