"""Value types that callers see identically on SQLite and PostgreSQL.

- Timestamps: aware UTC `datetime` in and out. A naive datetime is taken as UTC on both backends
  (PostgreSQL sessions run with TimeZone=UTC). SQLite stores ISO-8601 UTC text of one fixed width,
  microseconds included, `2024-05-01T12:00:00.123456Z`, so text order is time order; the DB-side
  default (`{{now}}` in migrations) yields the same width (SQLite's clock has millisecond
  precision, padded with `000`).
- Booleans: `bool` (SQLite stores 0/1 in a BOOLEAN column).
- JSON: `dict` / `list` parameters are stored as JSON (JSONB on PostgreSQL, JSON text on SQLite)
  and come back decoded. Lists therefore never mean PostgreSQL arrays in domos SQL.
- int, str, bytes, None pass through.

SQLite decodes by declared column type (`detect_types=PARSE_DECLTYPES`): TIMESTAMPTZ, BOOLEAN and
JSON columns. An expression without a declared type (`SELECT max(created_at)`) comes back as the
stored text; select the column itself, or compare in SQL, when the type matters.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.adapt import AdaptersMap
from psycopg.types.json import JsonbDumper

#: Width of a stored SQLite timestamp, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
SQLITE_TIMESTAMP_WIDTH = 27


def format_sqlite_timestamp(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    # isoformat pads the year to four digits, unlike strftime("%Y") on glibc.
    return value.isoformat(timespec="microseconds") + "Z"


def parse_sqlite_timestamp(raw: bytes) -> datetime:
    # fromisoformat accepts the trailing Z on 3.11+, and also older rows written as +00:00.
    value = datetime.fromisoformat(raw.decode())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_bool(raw: bytes) -> bool:
    return raw not in (b"0", b"")


def _parse_json(raw: bytes) -> Any:
    return json.loads(raw)


def _dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# Converters are looked up by the first word of a column's declared type, and only on
# connections opened with detect_types. The registry is process-wide: another user that opens
# with PARSE_DECLTYPES gets them too (Django does; services/web/databases.py opens the domain
# databases without detect_types so its JSONField decodes the text itself).
sqlite3.register_converter("TIMESTAMPTZ", parse_sqlite_timestamp)
sqlite3.register_converter("BOOLEAN", _parse_bool)
sqlite3.register_converter("JSON", _parse_json)

# Parameter adaptation is done per call rather than with global sqlite3.register_adapter, which
# would change the behaviour of every other sqlite3 user in the process (Django, scripts).
_SQLITE_PARAM_ADAPTERS: dict[type, Any] = {
    datetime: format_sqlite_timestamp,
    dict: _dump_json,
    list: _dump_json,
}


def adapt_sqlite_params(params: Sequence[Any]) -> Sequence[Any]:
    adapters = _SQLITE_PARAM_ADAPTERS
    for value in params:
        if type(value) in adapters:
            break
    else:
        return params
    return [
        adapter(value) if (adapter := adapters.get(type(value))) is not None else value
        for value in params
    ]


def postgres_adapters() -> AdaptersMap:
    """psycopg adapters for domos connections: dict and list parameters are dumped as JSONB."""
    adapters = AdaptersMap(psycopg.adapters)
    adapters.register_dumper(dict, JsonbDumper)
    adapters.register_dumper(list, JsonbDumper)
    return adapters
