"""The profile's checks (SQL run by SQLite) accept only what the chosen type's rule converts."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import Any

import pytest

from runtime.migrate import inference
from runtime.migrate.inference import Intent, intent_of
from runtime.migrate.sqlite_source import read_tables
from runtime.migrate.values import CONVERTERS, Reject

#: Values a legacy column may hold: the forms bots write, and near misses of each.
SAMPLES: list[Any] = [
    # dates and date-times
    "2024-01-02",
    "2024-02-30",
    "0000-01-01",
    "2024-1-2",
    "2024-01-02 03:04",
    "2024-01-02 03:04:05",
    "2024-01-02T03:04:05",
    "2024-01-02 03:04:05.1",
    "2024-01-02 03:04:05.123456",
    "2024-01-02 03:04:05.1234567",
    "2024-01-02T03:04:05Z",
    "2024-01-02T03:04:05.250Z",
    "2024-01-02 03:04:05+03:00",
    "2024-01-02 03:04:05-07:30",
    "2024-01-02 03:04:05+24:00",
    "2024-01-02 03:04:05 +03:00",
    "2024-01-02 24:00:00",
    "2024-01-02 23:59:60",
    "2024-01-02 03:04:5",
    "2024-01-02x03:04:05",
    " 2024-01-02",
    "02.01.2024",
    "02.01.2024 03:04",
    "next tuesday",
    1704164645,
    1704164645123,
    1704164645.5,
    -5,
    10**15,
    # booleans
    0,
    1,
    2,
    0.0,
    1.0,
    "true",
    "False",
    "yes",
    "t",
    "on",
    "maybe",
    " 1",
    # decimals and money
    990,
    990.0,
    "990.00",
    "990.005",
    "990.000",
    "-12.5",
    "+7",
    ".5",
    "5.",
    "1e3",
    "1.2.3",
    "12 RUB",
    "",
    "-",
    ".",
    "--5",
    0.1 + 0.2,
    12345678.99,
    123456789.5,
    1e300,
    float("inf"),
    # JSON
    '{"a": 1, "b": [true, null, "x"]}',
    "[]",
    '"text"',
    "42",
    "1e400",
    '{"a": 1,}',
    "{'a': 1}",
    "NaN",
    '{"emoji": "\\ud83d\\ude00"}',
    '{"lone": "\\ud800"}',
    '{"nul": "\\u0000"}',
    '{"a": "\\\\u0000"}',
    b"\x00\x01",
    None,
]


def _count(condition: str, value: Any) -> bool:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v)")  # no affinity: every value keeps its class
    conn.execute("INSERT INTO t VALUES (?)", (value,))
    (hit,) = conn.execute(f"SELECT coalesce(sum({condition}), 0) FROM t").fetchone()
    return bool(hit)


def _converts(pg_type: str, value: Any) -> bool:
    try:
        CONVERTERS[pg_type](value)
    except (Reject, OverflowError):
        return False
    return True


CHECKS = [
    ("datetime", inference.datetime_sql, "timestamp with time zone"),
    ("epoch", inference.epoch_sql, "timestamp with time zone"),
    ("day", inference.day_sql, "date"),
    ("boolean", inference.boolean_sql, "boolean"),
    ("decimal", inference.decimal_sql, "numeric"),
]


@pytest.mark.parametrize(("name", "check", "pg_type"), CHECKS, ids=[c[0] for c in CHECKS])
def test_each_check_accepts_only_values_its_type_converts(name, check, pg_type):
    accepted = [value for value in SAMPLES if _count(check('"v"'), value)]
    assert accepted, f"{name} accepts nothing"
    refused = [value for value in accepted if not _converts(pg_type, value)]
    assert refused == [], f"{name} accepts values {pg_type} rejects"


def test_the_checks_accept_the_forms_bots_write():
    datetime_sql = inference.datetime_sql('"v"')
    for value in [
        "2024-01-02",
        "2024-01-02 03:04",
        "2024-01-02 03:04:05",
        "2024-01-02T03:04:05.123456",
        "2024-01-02T03:04:05Z",
        "2024-01-02 03:04:05+03:00",
        "2024-01-02 03:04:05.1",
    ]:
        assert _count(datetime_sql, value), value
    for value in ["2024-02-30", "2024-01-02 24:00:00", "02.01.2024", "2024-01-02 03:04:05 +03:00"]:
        assert not _count(datetime_sql, value), value
    assert _count(inference.boolean_sql('"v"'), "False")
    assert not _count(inference.boolean_sql('"v"'), 2)
    assert not _count(inference.decimal_sql('"v"'), "12 RUB")
    assert not _count(inference.decimal_sql('"v"'), "--5")


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        (990, True),
        (990.5, True),
        ("990.00", True),
        ("990.000", True),
        ("-12345678.99", True),
        ("990.005", False),
        (0.1 + 0.2, False),
        (123456789.5, False),
        ("123456789", False),
        (1e300, False),
        (float("inf"), False),
    ],
)
def test_decimal_fit_means_numeric_p_s_stores_the_value_unrounded(value, fits):
    assert _count(inference.decimal_fit_sql('"v"', 10, 2), value) is fits
    if fits:
        number = CONVERTERS["numeric"](value)
        assert number == round(number, 2)
        assert abs(number) < Decimal(10) ** 8


def test_json_check_is_sqlite_json() -> None:
    valid = [v for v in SAMPLES if _count(inference.json_sql('"v"'), v)]
    assert not {'{"a": 1,}', "{'a': 1}", "NaN"} & set(valid)
    # Escapes jsonb refuses (\u0000, a lone surrogate) are valid JSON, which json keeps.
    assert {
        '{"a": 1, "b": [true, null, "x"]}',
        "1e400",
        '{"lone": "\\ud800"}',
        '{"nul": "\\u0000"}',
    } <= set(valid)


@pytest.mark.parametrize(
    ("declared", "intent"),
    [
        ("JSON", Intent("json")),
        ("JSONB", Intent("json")),
        ("DATETIME", Intent("datetime")),
        ("TIMESTAMP", Intent("datetime")),
        ("DATE", Intent("date")),
        ("BOOLEAN", Intent("boolean")),
        ("BOOL", Intent("boolean")),
        ("DECIMAL(10,2)", Intent("decimal", 10, 2)),
        ("NUMERIC(10, 2)", Intent("decimal", 10, 2)),
        ("DECIMAL(12)", Intent("decimal", 12, 0)),
        ("MONEY", Intent("decimal")),
        ("INTEGER", Intent("none")),
        ("VARCHAR(255)", Intent("none")),
        ("", Intent("none")),
    ],
)
def test_declared_types_name_their_intent(declared, intent):
    assert intent_of(declared) == intent


def test_a_json_payments_table_profiles_to_json_numeric_timestamptz_boolean():
    """The table of issue 17: every column of NUMERIC affinity, none of it numbers."""
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE payments (id INTEGER PRIMARY KEY, payload JSON, amount DECIMAL(10,2), "
        "paid BOOLEAN, created_at DATETIME, price MONEY)"
    )
    conn.executemany(
        "INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?)",
        [
            (1, '{"id": "2c5b", "status": "succeeded"}', 990.0, 1, "2024-01-02 03:04:05", 9.9),
            (2, '{"id": "2c5c", "status": "canceled"}', "1490.00", 0, "2024-01-03T03:04:05Z", 5),
            (3, None, None, "true", None, "12 RUB"),
        ],
    )
    (table,) = read_tables(conn)
    from runtime.migrate.plan import _infer_columns
    from runtime.migrate.sqlite_source import profile_table

    columns = {c.source: c for c in _infer_columns(table, profile_table(conn, table))}
    assert {name: c.pg_type for name, c in columns.items()} == {
        "id": "bigint",
        "payload": "json",
        "amount": "numeric(10,2)",
        "paid": "boolean",
        "created_at": "timestamp with time zone",
        "price": "text",
    }
    assert columns["payload"].classes == {"text": 2, "null": 1}
    assert columns["price"].classes == {"integer": 1, "real": 1, "text": 1}
    assert "but 1 of 3 values are not" in columns["price"].note
