"""SQLite DEFAULTs as PostgreSQL's (runtime/migrate/defaults.py)."""

from __future__ import annotations

import pytest

from runtime.migrate.defaults import pg_default

UTC_NOW = "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')"
SECONDS = "floor(extract(epoch FROM CURRENT_TIMESTAMP))::bigint"


@pytest.mark.parametrize(
    ("expression", "declared", "pg_type", "expected"),
    [
        # Constants: what SQLite stores in a column of the declared type, by the copy's rule.
        ("0", "BOOLEAN", "boolean", "false"),
        ("TRUE", "BOOL", "boolean", "true"),
        ("'yes'", "BOOLEAN", "boolean", "true"),
        ("'RUB'", "TEXT", "text", "'RUB'"),
        ("'it''s'", "TEXT", "text", "'it''s'"),
        ("'0'", "INTEGER", "text", "'0'"),  # INTEGER affinity stores the integer 0
        ("0", "TEXT", "text", "'0'"),  # TEXT affinity stores the text '0'
        ("1.0", "NUMERIC", "numeric", "1"),  # NUMERIC affinity stores the integer 1
        ("0.00", "DECIMAL(10,2)", "numeric", "0"),
        ("'1.50'", "MONEY", "numeric", "1.5"),  # NUMERIC affinity stores the real 1.5
        ("(-0.5)", "REAL", "double precision", "-0.5"),
        ("0x10", "INTEGER", "bigint", "16"),
        ("'{}'", "JSON", "json", "'{}'::json"),
        ("'2024-01-02'", "DATE", "date", "'2024-01-02'::date"),
        ("X'0102'", "BLOB", "bytea", "E'\\\\001\\\\002'::bytea"),
        ("NULL", "TEXT", "text", ""),
        # The time, as SQLite writes it: UTC, whole seconds.
        ("CURRENT_TIMESTAMP", "DATETIME", "timestamp with time zone", None),
        ("(datetime('now'))", "TEXT", "text", f"to_char({UTC_NOW}, 'YYYY-MM-DD HH24:MI:SS')"),
        ("current_date", "DATE", "date", f"{UTC_NOW}::date"),
        ("(date('now'))", "TEXT", "text", f"to_char({UTC_NOW}, 'YYYY-MM-DD')"),
        ("CURRENT_TIME", "TEXT", "text", f"to_char({UTC_NOW}, 'HH24:MI:SS')"),
        ("(strftime('%s','now'))", "INTEGER", "bigint", SECONDS),
        ("(unixepoch())", "INTEGER", "bigint", SECONDS),
        ("(CAST(strftime('%s', 'now') AS INTEGER))", "INTEGER", "bigint", SECONDS),
    ],
)
def test_a_default_sqlite_stores_is_postgresqls(
    expression: str, declared: str, pg_type: str, expected: str | None
) -> None:
    if expected is None:
        expected = "date_trunc('second', CURRENT_TIMESTAMP)"
    assert pg_default(expression, declared, pg_type) == expected


@pytest.mark.parametrize(
    ("expression", "declared", "pg_type"),
    [
        ("(random())", "INTEGER", "bigint"),  # no faithful translation
        ("(lower(hex(randomblob(16))))", "TEXT", "text"),
        ("(datetime('now', 'localtime'))", "DATETIME", "timestamp with time zone"),
        ("CURRENT_TIME", "TIME", "timestamp with time zone"),  # a time of day is no instant
        ("'abc'", "INTEGER", "bigint"),  # the column's type cannot hold it
        ("'a\x00b'", "TEXT", "text"),
        ("0); DROP TABLE users; --", "INTEGER", "bigint"),  # hostile: never run
        ("0", "INT) ; SELECT (1", "bigint"),  # a declared type no CREATE TABLE accepts
    ],
)
def test_a_default_without_a_faithful_translation_has_none(
    expression: str, declared: str, pg_type: str
) -> None:
    assert pg_default(expression, declared, pg_type) is None
