"""Value rules: how each SQLite value becomes a PostgreSQL value, or why the row is rejected.

SQLite stores any value in any column, so every target type has one converter that accepts the
stored classes it can convert without losing information and raises `Reject` for the rest. The
same converters feed the COPY stream and the SQLite side of verification, so both sides of the
content hash see the same values; the PostgreSQL side is read back from the target by SQL.

Stated rules (also in docs/cutover.md):
- text is read as bytes and decoded as UTF-8; invalid UTF-8 and NUL bytes reject the row;
- integers: integer values, integral reals, and text holding a decimal integer; else rejected;
- floats: integers, reals, and text holding a number; numeric: the same, exactly (via repr);
- booleans: 0/1 and the texts true/false/t/f/yes/no/1/0; anything else rejected;
- timestamps: ISO 8601 text (`YYYY-MM-DD[ T]HH:MM[:SS[.ffffff]]` with optional `Z`/offset;
  without an offset the text is UTC, as SQLite's CURRENT_TIMESTAMP writes it), or numbers as unix
  time: |n| < 1e11 seconds, |n| < 1e14 milliseconds; anything else rejected;
- dates: `YYYY-MM-DD`, or a timestamp whose time of day is midnight;
- bytea: blobs as they are, text as its UTF-8 bytes, numbers as the bytes of their decimal text
  (a column mixing blobs with other classes: bytea is the one type holding them all);
- json/jsonb: the text is sent as it is stored (PostgreSQL parses it; jsonb keeps its value, not
  its spelling: see docs/cutover.md); texts with a NUL byte are rejected.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_interface,
)
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg.types.json import Json, Jsonb

SourceValue = Any
Converter = Callable[[SourceValue], Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_LIMIT = 1e11  # beyond year 5138 as seconds: the number must be milliseconds
_MILLISECONDS_LIMIT = 1e14


class InvalidText(bytes):
    """A TEXT value whose bytes are not valid UTF-8 (kept raw so nothing crashes on read)."""


def decode_text(raw: bytes) -> str | InvalidText:
    """sqlite3 text_factory: decode UTF-8, or keep the bytes marked as invalid."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidText(raw)


class Reject(Exception):
    """The value cannot be converted by any stated rule; the row goes to the reject file."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _text(value: SourceValue) -> str:
    if type(value) is str:
        if "\x00" in value:
            raise Reject("nul_byte_in_text")
        return value
    if isinstance(value, InvalidText):
        raise Reject("invalid_utf8")
    if isinstance(value, bool | int):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    raise Reject("blob_in_text_column")


def _source_text(value: SourceValue) -> str:
    """Text of a value for parsing (numbers, dates); rejects what text rules reject."""
    return _text(value).strip()


def to_text(value: SourceValue) -> str | None:
    return None if value is None else _text(value)


def to_integer(value: SourceValue) -> int | None:
    if value is None:
        return None
    if type(value) is int:
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise Reject("fraction_in_integer_column")
    if isinstance(value, bytes) and not isinstance(value, InvalidText):
        raise Reject("blob_in_integer_column")
    text = _source_text(value)
    try:
        return int(text)
    except ValueError:
        raise Reject("text_in_integer_column") from None


def _bounded(bits: int) -> Converter:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def convert(value: SourceValue) -> int | None:
        number = to_integer(value)
        if number is not None and not low <= number <= high:
            raise Reject(f"integer_out_of_range_int{bits // 8}")
        return number

    return convert


def to_float(value: SourceValue) -> float | None:
    if value is None:
        return None
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    if isinstance(value, bytes) and not isinstance(value, InvalidText):
        raise Reject("blob_in_numeric_column")
    try:
        return float(_source_text(value))
    except ValueError:
        raise Reject("text_in_numeric_column") from None


def to_float4(value: SourceValue) -> float | None:
    number = to_float(value)
    # Round through single precision here so verification compares what PostgreSQL stores.
    return None if number is None else struct.unpack("f", struct.pack("f", number))[0]


def to_numeric(value: SourceValue) -> Decimal | None:
    if value is None:
        return None
    if type(value) is int:
        return Decimal(value)
    if type(value) is float:
        return Decimal(repr(value))  # the shortest text that round-trips: what the user saw
    if isinstance(value, bytes) and not isinstance(value, InvalidText):
        raise Reject("blob_in_numeric_column")
    try:
        number = Decimal(_source_text(value))
    except InvalidOperation:
        raise Reject("text_in_numeric_column") from None
    if not number.is_finite():
        raise Reject("text_in_numeric_column")
    return number


_TRUE_TEXTS = frozenset({"1", "t", "true", "y", "yes", "on"})
_FALSE_TEXTS = frozenset({"0", "f", "false", "n", "no", "off"})


def to_boolean(value: SourceValue) -> bool | None:
    if value is None:
        return None
    if type(value) is int or type(value) is float:
        if value == 1:
            return True
        if value == 0:
            return False
        raise Reject("non_boolean_number")
    text = _source_text(value).lower()
    if text in _TRUE_TEXTS:
        return True
    if text in _FALSE_TEXTS:
        return False
    raise Reject("non_boolean_text")


def _unix_time(number: float) -> datetime:
    magnitude = abs(number)
    if magnitude < _SECONDS_LIMIT:
        seconds = number
    elif magnitude < _MILLISECONDS_LIMIT:
        seconds = number / 1000
    else:
        raise Reject("unix_time_out_of_range")
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError:  # before year 1 or after 9999: no datetime holds it
        raise Reject("unix_time_out_of_range") from None


def _parse_timestamp(text: str) -> datetime:
    candidate = text.replace("Z", "+00:00").replace("z", "+00:00")
    if len(candidate) >= 11 and candidate[10] == " ":
        candidate = candidate[:10] + "T" + candidate[11:]
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        raise Reject("unparseable_timestamp") from None
    return parsed


def to_timestamptz(value: SourceValue) -> datetime | None:
    if value is None:
        return None
    if type(value) is int or type(value) is float:
        return _unix_time(value)
    text = _source_text(value)
    if _looks_numeric(text):
        return _unix_time(float(text))
    parsed = _parse_timestamp(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_timestamp(value: SourceValue) -> datetime | None:
    """timestamp without time zone: wall-clock text kept; offsets and unix time become UTC."""
    if value is None:
        return None
    if type(value) is str and not _looks_numeric(value.strip()):
        parsed = _parse_timestamp(_source_text(value))
        return parsed if parsed.tzinfo is None else parsed.astimezone(UTC).replace(tzinfo=None)
    moment = to_timestamptz(value)
    return None if moment is None else moment.replace(tzinfo=None)


def to_date(value: SourceValue) -> date | None:
    if value is None:
        return None
    if type(value) is str and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise Reject("unparseable_date") from None
    moment = to_timestamp(value)
    assert moment is not None
    if moment.time() != datetime.min.time():
        raise Reject("time_of_day_in_date_column")
    return moment.date()


def to_bytea(value: SourceValue) -> bytes | None:
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, InvalidText):
        return bytes(value)
    if type(value) is str:
        return value.encode("utf-8")
    if type(value) is int:
        return str(value).encode()
    if type(value) is float:
        return repr(value).encode()
    raise Reject("number_in_blob_column")


def to_uuid(value: SourceValue) -> uuid.UUID | None:
    if value is None:
        return None
    if type(value) is bytes and len(value) == 16:
        return uuid.UUID(bytes=value)
    try:
        return uuid.UUID(_source_text(value))
    except ValueError:
        raise Reject("invalid_uuid") from None


def to_inet(value: SourceValue) -> IPv4Address | IPv6Address | IPv4Interface | IPv6Interface | None:
    """Django's GenericIPAddressField (django-axes' login records) on SQLite: the address as
    text; psycopg writes and reads an address with no prefix as ip_address, else ip_interface."""
    if value is None:
        return None
    text = _source_text(value).strip()
    try:
        return ip_interface(text) if "/" in text else ip_address(text)
    except ValueError:
        raise Reject("invalid_inet") from None


def _verbatim(text: str) -> str:
    return text


def _json_converter(binary: bool) -> Converter:
    """The stored text itself, sent for PostgreSQL to parse: infer mode chose the type because
    every text is JSON (inference.py), and Python parsing then dumping it again would cost a
    second parse per value and change what is stored (1e400 would become Infinity)."""

    def convert(value: SourceValue) -> Json | Jsonb | None:
        if value is None:
            return None
        # Here: psycopg is loaded where rows are copied by it, not by every worker.
        from psycopg.types.json import Json, Jsonb

        return (Jsonb if binary else Json)(_text(value), dumps=_verbatim)

    return convert


def parse_json(text: str | bytes) -> Any:
    """A JSON text as verification compares it: numbers exact (Decimal), never floats."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def canonical_json(value: Any) -> str:
    """One text per JSON value: keys sorted, numbers as normalised decimals (both sides parse
    theirs with `parse_json`: PostgreSQL's jsonb keeps numbers exactly, a float would not)."""

    def normal(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: normal(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [normal(inner) for inner in item]
        if isinstance(item, bool) or item is None or isinstance(item, str):
            return item
        if isinstance(item, float):
            item = Decimal(repr(item))
        number = Decimal(item).normalize()
        return {"#": "0" if not number else str(number)}  # a number never looks like a string

    return json.dumps(normal(value), sort_keys=True, ensure_ascii=False)


def to_interval(value: SourceValue) -> timedelta | None:
    """Django's DurationField on SQLite: integer microseconds."""
    number = to_integer(value)
    return None if number is None else timedelta(microseconds=number)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: PostgreSQL type name (as format_type() prints it, without modifiers) -> converter.
CONVERTERS: dict[str, Converter] = {
    "bigint": _bounded(64),
    "integer": _bounded(32),
    "smallint": _bounded(16),
    "double precision": to_float,
    "real": to_float4,
    "numeric": to_numeric,
    "text": to_text,
    "character varying": to_text,
    "character": to_text,
    "boolean": to_boolean,
    "timestamp with time zone": to_timestamptz,
    "timestamp without time zone": to_timestamp,
    "date": to_date,
    "bytea": to_bytea,
    "uuid": to_uuid,
    "inet": to_inet,
    "json": _json_converter(binary=False),
    "jsonb": _json_converter(binary=True),
    "interval": to_interval,
}

#: The binary COPY type name psycopg needs for each supported type.
COPY_TYPES: dict[str, str] = {
    "bigint": "int8",
    "integer": "int4",
    "smallint": "int2",
    "double precision": "float8",
    "real": "float4",
    "numeric": "numeric",
    "text": "text",
    "character varying": "varchar",
    "character": "bpchar",
    "boolean": "bool",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "date": "date",
    "bytea": "bytea",
    "uuid": "uuid",
    "inet": "inet",
    "json": "json",
    "jsonb": "jsonb",
    "interval": "interval",
}


def base_type(formatted: str) -> str:
    """`character varying(20)` -> `character varying`; `numeric(10,2)` -> `numeric`."""
    return formatted.split("(", 1)[0].strip().removesuffix("[]")


def canonical(value: Any) -> Any:
    """One representation per value, so both sides of verification compare equal values.

    Rows are hashed as `repr(tuple(canonical(v) ...))`: ints, floats, str, bytes, bool, UUID,
    date and timedelta have one repr each; the others are normalised here.
    """
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if isinstance(value, Decimal):
        return str(value.normalize()) if value else "0"
    if isinstance(value, dict | list):
        return canonical_json(value)
    if isinstance(value, memoryview):
        return bytes(value)
    from psycopg.types.json import Json, Jsonb  # see _json_converter

    if isinstance(value, Json | Jsonb):
        return canonical_json_value(value)
    return value


def canonical_json_value(value: Any) -> Any:
    """canonical() of a json/jsonb column's value: the converter's wrapper of the stored text
    (SQLite side), or the value psycopg loaded with `parse_json` (PostgreSQL side, verify.py)."""
    if value is None:
        return None
    obj = getattr(value, "obj", value)
    if getattr(value, "dumps", None) is _verbatim:
        obj = parse_json(obj)
    return canonical_json(obj)


def canonical_for(pg_type: str) -> Callable[[Any], Any]:
    """The canonical() of one column type."""
    return canonical_json_value if pg_type in ("json", "jsonb") else canonical


#: Types whose values canonical() changes; other columns are hashed as they come.
NEEDS_CANONICAL = frozenset({"timestamp with time zone", "numeric", "json", "jsonb", "bytea"})
