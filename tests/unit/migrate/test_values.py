"""The stated value rules, one table per target type."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from runtime.migrate.column_profile import ColumnProfile
from runtime.migrate.plan import generated_name, infer_type, plan_chunks, truncated
from runtime.migrate.values import (
    InvalidText,
    Reject,
    canonical,
    decode_text,
    to_boolean,
    to_date,
    to_integer,
    to_numeric,
    to_text,
    to_timestamptz,
)


@pytest.mark.parametrize(
    ("convert", "value", "expected"),
    [
        (to_integer, 5, 5),
        (to_integer, " 42 ", 42),
        (to_integer, 3.0, 3),
        (to_boolean, 1, True),
        (to_boolean, "F", False),
        (to_numeric, 0.1, Decimal("0.1")),
        (to_numeric, "12.50", Decimal("12.50")),
        (to_text, 7, "7"),
        (to_timestamptz, "2024-01-02 03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (to_timestamptz, "2024-01-02T06:04:05+03:00", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (to_timestamptz, 1704164645, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (to_timestamptz, 1704164645000, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (to_timestamptz, "1704164645", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (to_date, "2024-01-02", date(2024, 1, 2)),
        (to_date, "2024-01-02 00:00:00", date(2024, 1, 2)),
    ],
)
def test_rule_converts(convert, value, expected):
    assert convert(value) == expected
    assert convert(None) is None


@pytest.mark.parametrize(
    ("convert", "value", "problem"),
    [
        (to_integer, "many", "text_in_integer_column"),
        (to_integer, 2.5, "fraction_in_integer_column"),
        (to_integer, b"\x00", "blob_in_integer_column"),
        (to_boolean, 2, "non_boolean_number"),
        (to_boolean, "maybe", "non_boolean_text"),
        (to_text, "a\x00b", "nul_byte_in_text"),
        (to_text, InvalidText(b"\xff"), "invalid_utf8"),
        (to_timestamptz, "next tuesday", "unparseable_timestamp"),
        (to_timestamptz, 10**15, "unix_time_out_of_range"),
        # Seconds before year 1: Python's datetime cannot hold it (was an OverflowError that
        # stopped the whole table instead of rejecting the row).
        (to_timestamptz, -63_000_000_000, "unix_time_out_of_range"),
        (to_timestamptz, "-63000000000", "unix_time_out_of_range"),
        (to_date, "2024-01-02 10:00:00", "time_of_day_in_date_column"),
        (to_numeric, "NaN", "text_in_numeric_column"),
    ],
)
def test_rule_rejects(convert, value, problem):
    with pytest.raises(Reject) as caught:
        convert(value)
    assert caught.value.problem == problem


def test_invalid_utf8_is_kept_as_marked_bytes():
    assert decode_text("é".encode()) == "é"
    assert isinstance(decode_text(b"\xff\xfe"), InvalidText)


def test_canonical_values_agree_across_representations():
    assert canonical(Decimal("1.50")) == canonical(Decimal("1.5"))
    assert canonical(Decimal("100")) == canonical(Decimal("1E+2"))
    moscow = datetime.fromisoformat("2024-01-02T06:04:05+03:00")
    assert repr(canonical(moscow)) == repr(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))


@pytest.mark.parametrize(
    ("declared", "profile", "alias", "expected"),
    [
        ("INTEGER", ColumnProfile(integer=3), True, "bigint"),
        ("INT", ColumnProfile(integer=3, real=1), False, "double precision"),
        ("INT", ColumnProfile(integer=3, real=1, integral_reals=1), False, "bigint"),
        ("INT", ColumnProfile(integer=3, real=1, wide_integers=1), False, "numeric"),
        ("INT", ColumnProfile(integer=3, text=1), False, "text"),
        ("BOOLEAN", ColumnProfile(integer=3, boolean_values=3), False, "boolean"),
        ("BOOLEAN", ColumnProfile(integer=3, boolean_values=2), False, "bigint"),
        ("DATETIME", ColumnProfile(text=3, datetime_values=3), False, "timestamp with time zone"),
        ("DATETIME", ColumnProfile(text=3, datetime_values=2), False, "text"),
        ("DATE", ColumnProfile(text=3, datetime_values=3, day_texts=3), False, "date"),
        (
            "DATE",
            ColumnProfile(text=3, datetime_values=3, day_texts=2),
            False,
            "timestamp with time zone",
        ),
        ("JSON", ColumnProfile(text=3, json_texts=3), False, "json"),
        ("JSON", ColumnProfile(text=3, json_texts=2), False, "text"),
        ("NVARCHAR(40)", ColumnProfile(text=3), False, "text"),
        (
            "NUMERIC(10,2)",
            ColumnProfile(real=3, decimal_values=3, decimal_fit=3),
            False,
            "numeric(10,2)",
        ),
        ("NUMERIC(10,2)", ColumnProfile(real=3, decimal_values=3, decimal_fit=2), False, "numeric"),
        ("MONEY", ColumnProfile(real=3, text=1, decimal_values=3), False, "text"),
        ("MONEY", ColumnProfile(real=3, decimal_values=3), False, "numeric"),
        ("DECIMAL(10,2)", ColumnProfile(null=3), False, "numeric(10,2)"),
        ("", ColumnProfile(blob=2), False, "bytea"),
        ("TEXT", ColumnProfile(blob=2, text=5), False, "bytea"),
        ("", ColumnProfile(integer=2, text=1), False, "text"),
        ("", ColumnProfile(real=2), False, "double precision"),
    ],
)
def test_infer_type(declared, profile, alias, expected):
    assert infer_type(declared, profile, alias)[0] == expected


def test_names_are_truncated_like_postgresql_and_generated_names_fit():
    assert truncated("я" * 40) == "я" * 31  # 62 bytes: a 2-byte character is never split
    long_name = generated_name("t" * 60, "column", suffix="fkey")
    assert len(long_name.encode()) <= 63
    assert long_name != generated_name("t" * 60, "column2", suffix="fkey")


def test_chunks_cover_every_rowid():
    chunks = plan_chunks(1, 1000, 1000, 300)
    assert chunks[0][0] == 1
    assert chunks[-1][1] == 1000
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(chunks))
    assert plan_chunks(0, -1, 0, 300) == [(0, -1)]
