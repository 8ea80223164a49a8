"""A column's SQLite DEFAULT as PostgreSQL's, for the tables the migration creates.

Without it, the application's first INSERT after the cut-over that leaves out `is_admin`,
`currency` or `created_at` stores NULL where SQLite stored 0, 'RUB' or the time, or fails on a NOT
NULL column. Two kinds of default are carried over:
- a constant (a number, a string, a blob, NULL, TRUE/FALSE): SQLite itself stores it in a column
  of the declared type (its affinity: DEFAULT '0' in an INTEGER column is the integer 0), the
  copy's value rule converts it to the column's type, and PostgreSQL gets that literal;
- the current time as SQLite writes it (CURRENT_TIMESTAMP, CURRENT_DATE, CURRENT_TIME,
  datetime('now'), date('now'), time('now'), strftime('%s', 'now'), unixepoch()): UTC, whole
  seconds, in the form the column's type holds it.
Anything else (random(), the local time, an expression over other functions) has no faithful
translation: the column gets no default and the plan reports it.
"""

from __future__ import annotations

import re
import sqlite3

from runtime.migrate.values import CONVERTERS, Reject

_CONSTANT = re.compile(
    r"""[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?  # a number
    |0[xX][0-9a-fA-F]+                            # a hexadecimal integer
    |'([^']|'')*'                                 # a string
    |[xX]'[0-9a-fA-F]*'                           # a blob
    |NULL|TRUE|FALSE""",
    re.VERBOSE | re.IGNORECASE,
)
_NOW = r"""'now'(\s*,\s*'utc')?"""
#: The current time in SQLite's forms -> what SQLite stores.
_CLOCKS = {
    "timestamp": re.compile(
        rf"CURRENT_TIMESTAMP|datetime\({_NOW}\)|strftime\('%Y-%m-%d %H:%M:%S',\s*{_NOW}\)",
        re.IGNORECASE,
    ),
    "date": re.compile(rf"CURRENT_DATE|date\({_NOW}\)", re.IGNORECASE),
    "time": re.compile(rf"CURRENT_TIME|time\({_NOW}\)", re.IGNORECASE),
    "seconds": re.compile(
        rf"strftime\('%s',\s*{_NOW}\)|unixepoch\(({_NOW})?\)"
        rf"|CAST\(\s*strftime\('%s',\s*{_NOW}\)\s+AS\s+INTEGER\s*\)",
        re.IGNORECASE,
    ),
}
_UTC_NOW = "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')"
_SECONDS = "floor(extract(epoch FROM CURRENT_TIMESTAMP))::bigint"
#: (what SQLite stores, the column's type) -> PostgreSQL's expression of it.
_CLOCK_SQL = {
    ("timestamp", "timestamp with time zone"): "date_trunc('second', CURRENT_TIMESTAMP)",
    ("timestamp", "timestamp without time zone"): f"date_trunc('second', {_UTC_NOW})",
    ("timestamp", "text"): f"to_char({_UTC_NOW}, 'YYYY-MM-DD HH24:MI:SS')",
    ("date", "date"): f"{_UTC_NOW}::date",
    ("date", "timestamp with time zone"): f"(date_trunc('day', {_UTC_NOW}) AT TIME ZONE 'UTC')",
    ("date", "timestamp without time zone"): f"date_trunc('day', {_UTC_NOW})",
    ("date", "text"): f"to_char({_UTC_NOW}, 'YYYY-MM-DD')",
    ("time", "text"): f"to_char({_UTC_NOW}, 'HH24:MI:SS')",
    ("seconds", "bigint"): _SECONDS,
    ("seconds", "double precision"): _SECONDS,
    ("seconds", "numeric"): _SECONDS,
    ("seconds", "timestamp with time zone"): "date_trunc('second', CURRENT_TIMESTAMP)",
    ("seconds", "text"): f"{_SECONDS}::text",
}


def pg_default(expression: str, declared: str, pg_type: str) -> str | None:
    """PostgreSQL's DEFAULT for a SQLite one: "" for none (DEFAULT NULL), None where no
    faithful translation exists."""
    text = _unwrap(expression)
    for stored, pattern in _CLOCKS.items():
        if pattern.fullmatch(text):
            return _CLOCK_SQL.get((stored, pg_type))
    if not _CONSTANT.fullmatch(text):
        return None
    try:
        value = CONVERTERS[pg_type](_stored(text, declared))
    except (Reject, KeyError, sqlite3.Error):
        return None
    from psycopg import sql  # the planning parent has it; the workers' fork server does not

    return "" if value is None else sql.Literal(value).as_string(None).strip()


def _unwrap(expression: str) -> str:
    text = expression.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return text


def _stored(constant: str, declared: str) -> object:
    """What SQLite stores for this constant in a column of this declared type: SQLite decides
    (in memory, a table of one column). `constant` matched _CONSTANT, and `declared` was
    accepted by SQLite as a type name in the source's own CREATE TABLE."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE TABLE d (c {declared} DEFAULT ({constant}))")
        conn.execute("INSERT INTO d DEFAULT VALUES")
        row = conn.execute("SELECT c FROM d").fetchone()
    finally:
        conn.close()
    return row[0]
