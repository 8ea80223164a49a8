"""The Arrow rules (arrow_rules.py) against the Python rules (values.py), which are the spec.

For generated columns of stored values (every storage class, well-formed and malformed texts,
edge cases of each rule), the Arrow rules either hand the batch to the Python path
(NotConvertible) or convert it; when they convert it, the Python rules reject none of its values
and PostgreSQL stores exactly the same values either way: the Python path's values sent by
psycopg's binary COPY, the Arrow path's by the ADBC driver, both read back as PostgreSQL prints
them. Deterministic cases check the usual values do take the Arrow path.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import adbc_driver_manager
import adbc_driver_postgresql
import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from runtime.migrate import arrow_rules
from runtime.migrate.arrow_digest import NulInText, check_no_nul
from runtime.migrate.inference import hint_sql, intent_of
from runtime.migrate.plan import ColumnPlan
from runtime.migrate.values import CONVERTERS, COPY_TYPES, Reject

pytestmark = pytest.mark.postgres

Outcome = list[str | None] | str  # what PostgreSQL prints per row, or the error's class


def _classes(values: list[Any]) -> dict[str, pa.Array]:
    """The column as the fast copy reads it: one array per storage class (arrow_copy._read)."""
    return {
        name: pa.array([v if type(v) is kind else None for v in values], arrow)
        for (name, arrow), kind in zip(
            arrow_rules.CLASS_TYPES.items(), (int, float, str), strict=True
        )
    }


def _arrow(column: ColumnPlan, values: list[Any]) -> pa.Array | None:
    """The Arrow path's array, or None where it hands the batch to the Python path (a NUL byte
    is found by the reader before the rules run, as arrow_copy.read_batches does)."""
    classes = _classes(values)
    try:
        check_no_nul(classes["text"])
        return arrow_rules.convert(column, classes)
    except (arrow_rules.NotConvertible, NulInText):
        return None


def _python(column: ColumnPlan, values: list[Any]) -> list[Any] | None:
    """The Python rule's values, or None where it rejects (or fails on) one of them."""
    convert = CONVERTERS[column.converter]
    try:
        return [convert(value) for value in values]
    except (Reject, ValueError, OverflowError):
        return None


def _table(conn: psycopg.Connection[Any], name: str, pg_type: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id serial, c {pg_type})")


def _printed(conn: psycopg.Connection[Any], name: str) -> list[str | None]:
    rows = conn.execute(f"SELECT c::text FROM {name} ORDER BY id").fetchall()
    return [row[0] for row in rows]


def _stored_by_python(url: str, column: ColumnPlan, converted: list[Any]) -> Outcome:
    with psycopg.connect(url, autocommit=True, options="-c TimeZone=UTC") as conn:
        _table(conn, "by_python", column.pg_type)
        try:
            with conn.cursor().copy("COPY by_python (c) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([COPY_TYPES[column.converter]])
                for value in converted:
                    copy.write_row((value,))
        except psycopg.errors.DataError as exc:
            return type(exc).__name__
        return _printed(conn, "by_python")


def _stored_by_arrow(url: str, column: ColumnPlan, array: pa.Array) -> Outcome:
    with psycopg.connect(url, autocommit=True, options="-c TimeZone=UTC") as conn:
        _table(conn, "by_arrow", column.pg_type)
        ids = pa.array(range(1, len(array) + 1), pa.int32())
        batch = pa.RecordBatch.from_arrays([ids, array], names=["id", "c"])
        try:
            with (
                adbc_driver_postgresql.connect(url) as database,
                adbc_driver_manager.AdbcConnection(database) as connection,
                adbc_driver_manager.AdbcStatement(connection) as statement,
            ):
                statement.set_options(
                    **{
                        "adbc.ingest.target_table": "by_arrow",
                        "adbc.ingest.mode": "adbc.ingest.mode.append",
                    }
                )
                statement.bind_stream(pa.RecordBatchReader.from_batches(batch.schema, [batch]))
                statement.execute_update()  # the connection commits it (autocommit)
        except adbc_driver_manager.Error as exc:
            return _error_class(exc)
        return _printed(conn, "by_arrow")


def _error_class(exc: adbc_driver_manager.Error) -> str:
    """The PostgreSQL error class the driver reports, named as psycopg names it."""
    state = getattr(exc, "sqlstate", None) or ""
    return psycopg.errors.lookup(state).__name__ if state else repr(exc)


def _agree(url: str, pg_type: str, values: list[Any], *, not_null: bool = False) -> bool:
    """The property; returns whether the Arrow path took the values."""
    column = ColumnPlan("c", "c", pg_type, not_null, False, "test")
    array = _arrow(column, values)
    if currently_in_test_context():  # how often each path is taken: --hypothesis-show-statistics
        event("Arrow rules" if array is not None else "Python rules")
    if array is None:
        return False  # the Python rules decide, as on the Python path
    converted = _python(column, values)
    assert converted is not None, "the Arrow rules took a value the Python rules reject"
    if not_null:
        assert None not in converted
    assert array.type == arrow_rules.arrow_type(column)
    assert _stored_by_arrow(url, column, array) == _stored_by_python(url, column, converted)
    return True


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PADDING = st.sampled_from(["", "", "", " ", "\t", "\xa0", "\n"])


def _spelled(words: list[str]) -> st.SearchStrategy[str]:
    """A word in random letter case, sometimes padded."""

    def spell(word: str, upper: list[bool], pad: str) -> str:
        return pad + "".join(c.upper() if u else c for c, u in zip(word, upper, strict=False)) + pad

    return st.builds(
        spell, st.sampled_from(words), st.lists(st.booleans(), min_size=8, max_size=8), PADDING
    )


INT64 = st.integers(-(2**63), 2**63 - 1)


def _column(
    usual: list[st.SearchStrategy[Any]], unusual: list[st.SearchStrategy[Any]]
) -> st.SearchStrategy[list[Any]]:
    """A batch of stored values: half the time only usual ones (the Arrow rules' to convert,
    mostly), else any mix (mostly the Python rules', whose batch it then is)."""
    usual_only = st.lists(st.one_of(st.none(), *usual), min_size=1, max_size=12)
    mixed = st.lists(st.one_of(st.none(), *usual, *unusual), min_size=1, max_size=12)
    return st.one_of(usual_only, mixed)


BOOLEANS = _column(
    [st.integers(0, 1), st.sampled_from([0.0, 1.0]), _spelled(["1", "0", "true", "false", "t"])],
    [
        INT64,
        st.sampled_from([-0.0, 0.5, 2.0, float("nan")]),
        _spelled(["1", "0", "t", "f", "true", "false", "y", "n", "yes", "no", "on", "off", "2"]),
        st.text(max_size=5),
    ],
)


@SETTINGS
@given(values=BOOLEANS)
@example(values=["1", "0", "true", 1, 0, 1.0])
def test_boolean(pg_url: str, values: list[Any]) -> None:
    _agree(pg_url, "boolean", values)


DAYS = st.dates(min_value=date(1, 1, 1)).map(date.isoformat)
MALFORMED_DAYS = st.sampled_from(
    [
        "2023-02-29",
        "2024-02-29",
        "1900-02-29",
        "2000-02-29",
        "0000-01-01",
        "2023-13-01",
        "2023-00-10",
        "2023-04-31",
        "2023-1-1",
        " 2023-01-01",
        "2023-W01-1",
        "20230101",
        "2023-01-01 00:00:00",
        "2023-01-01T00:00",
        "２０２３-01-01",
    ]
)
EPOCHS = st.one_of(
    st.integers(-(2**40), 2**40),
    st.integers(-(10**14), 10**14),
    st.sampled_from([10**11 - 1, 10**11, -62_135_596_800, -62_135_596_801, 0, 1_700_000_000]),
    st.integers(-(10**11), 10**11).map(float),
    st.floats(allow_nan=True, allow_infinity=True),
)


@SETTINGS
@given(values=_column([DAYS], [MALFORMED_DAYS, st.text(max_size=12), EPOCHS]))
@example(values=["2024-02-29", None, "1999-12-31", "0001-01-01", "9999-12-31"])
def test_date(pg_url: str, values: list[Any]) -> None:
    _agree(pg_url, "date", values)


def _timestamp_text(
    moment: datetime, separator: str, digits: int, zone: str, date_only: bool
) -> str:
    if date_only:
        return moment.date().isoformat()
    text = moment.strftime("%Y-%m-%d") + separator + moment.strftime("%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}{moment.microsecond % 10}"[:digits]
    return text + zone


TIMESTAMP_TEXTS = st.builds(
    _timestamp_text,
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from([" ", "T", "t", "  "]),
    st.integers(0, 7),
    st.sampled_from(
        ["", "", "Z", "z", "+00:00", "+05:30", "-23:59", "+24:00", "+05:75", "-00:00", "+0530"]
    ),
    st.booleans(),
)
MALFORMED_TIMESTAMPS = st.sampled_from(
    [
        "2023-01-01 24:00:00",
        "2023-01-01 23:60:00",
        "2023-01-01 23:59:60",
        "2023-02-30 10:00:00",
        "0000-01-01 00:00:00",
        "2023-01-01 10:00",
        " 2023-01-01 10:00:00",
        "1700000000",
        "1e9",
        "2023-01-01 10:00:00.1234567",
    ]
)
USUAL_EPOCHS = st.integers(-62_135_596_800, 10**11 - 1)
TIMESTAMPS = _column(
    [TIMESTAMP_TEXTS, USUAL_EPOCHS], [MALFORMED_TIMESTAMPS, EPOCHS, st.text(max_size=8)]
)


@SETTINGS
@given(values=TIMESTAMPS)
@example(values=["2024-01-02 03:04:05", "2024-01-02T06:04:05+03:00", 1704164645, "2024-01-02"])
def test_timestamptz(pg_url: str, values: list[Any]) -> None:
    _agree(pg_url, "timestamp with time zone", values)


@SETTINGS
@given(values=TIMESTAMPS)
def test_timestamp(pg_url: str, values: list[Any]) -> None:
    _agree(pg_url, "timestamp without time zone", values)


def _decimal_text(number: Decimal, zeros: int, pad: str, plus: bool) -> str:
    text = format(number, "f")
    if zeros and "." not in text:
        text += "."
    text += "0" * zeros
    return pad + ("+" if plus and not text.startswith("-") else "") + text + pad


DECIMAL_TEXTS = st.builds(
    _decimal_text,
    st.integers(0, 8).flatmap(
        lambda places: st.decimals(allow_nan=False, allow_infinity=False, places=places)
    ),
    st.integers(0, 3),
    st.sampled_from(["", "", "", " "]),
    st.booleans(),
)
MONEY = st.integers(-(10**9), 10**9).map(lambda n: n / 100)
NUMBERS = _column(
    [st.integers(-(10**7), 10**7), MONEY, MONEY.map(lambda x: f"{x:.2f}"), DECIMAL_TEXTS],
    [
        INT64,
        st.tuples(st.integers(-(10**9), 10**9), st.integers(0, 8)).map(lambda t: t[0] / 10 ** t[1]),
        st.floats(),
        st.decimals(allow_nan=False, allow_infinity=False).map(str),
        st.sampled_from(["1e3", ".5", "5.", "-0", "-0.00", "007.50", "1_000", "١٢", "0.0000001"]),
    ],
)


@SETTINGS
@given(values=NUMBERS)
@example(values=["990.00", 990.0, 149.9, 5, None, "-0.5", "007.1", 99999999.99])
def test_bounded_numeric(pg_url: str, values: list[Any]) -> None:
    _agree(pg_url, "numeric(10,2)", values)


@SETTINGS
@given(values=NUMBERS)
def test_bounded_numeric_of_scale_zero(pg_url: str, values: list[Any]) -> None:
    _agree(pg_url, "numeric(12,0)", values)


@SETTINGS
@given(values=NUMBERS)
@example(values=[34.65, 5, "12.5", None, 0.000015, 87.17, "-0", 2**62])
def test_unbounded_numeric(pg_url: str, values: list[Any]) -> None:
    _agree(pg_url, "numeric", values)


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=6),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
JSON_TEXTS = st.builds(
    lambda value, indent, ascii_only, pad: (
        pad + json.dumps(value, indent=indent, ensure_ascii=ascii_only) + pad
    ),
    JSON_VALUES,
    st.sampled_from([None, 0, 2]),
    st.booleans(),
    PADDING,
)
JSONS = _column(
    [JSON_TEXTS],
    [
        st.sampled_from(
            ['{"a": 1, "a": 2}', '{"n": 1.50}', "[1e400]", '"\\u0000"', "{", "", "nan"]
        ),
        INT64,
        st.text(max_size=4),
    ],
)


@SETTINGS
@given(values=JSONS)
@example(values=['{"b": 1, "a": [1, 2]}', " [1] ", None, '{"x":1.50}'])
def test_jsonb(pg_url: str, values: list[Any]) -> None:
    _agree(pg_url, "jsonb", values)


@SETTINGS
@given(values=JSONS)
def test_json(pg_url: str, values: list[Any]) -> None:
    _agree(pg_url, "json", values)


TYPICAL: dict[str, list[Any]] = {
    "boolean": [1, 0, None, "true", "FALSE", 1.0],
    "date": ["2024-02-29", None, "1960-01-01"],
    "timestamp with time zone": [
        "2024-01-02 03:04:05",
        "2024-01-02T03:04:05.123Z",
        "2024-01-02T06:04:05+03:00",
        1_704_164_645,
        None,
    ],
    "timestamp without time zone": ["2024-01-02 03:04:05", 1_704_164_645, None],
    "numeric(10,2)": ["990.00", 990.0, 149.9, 5, None, "2490.50"],
    "numeric": [34.65, 5, "12.5", None, 87.17],
    "jsonb": ['{"id": "x", "amount": {"value": "990.00"}}', None],
    "json": ['{"lang": "ru", "notify": true}', None],
}


@pytest.mark.parametrize("pg_type", list(TYPICAL))
def test_the_usual_values_take_the_arrow_path(pg_url: str, pg_type: str) -> None:
    assert _agree(pg_url, pg_type, TYPICAL[pg_type])
    assert _agree(pg_url, pg_type, [v for v in TYPICAL[pg_type] if v is not None], not_null=True)


def test_a_null_in_a_not_null_column_is_left_to_the_python_rule() -> None:
    column = ColumnPlan("c", "c", "boolean", True, False, "test")
    with pytest.raises(arrow_rules.NotConvertible):
        arrow_rules.convert(column, _classes([1, None]))


CASES: list[tuple[str, Any]] = [
    ("timestamp with time zone", 10**12),  # milliseconds: Python's float arithmetic decides
    ("date", "2023-02-30"),
    ("numeric(10,2)", "990.005"),
    ("numeric", 5.0),  # Decimal('5.0') keeps its scale; the driver would send 5
    ("numeric", "1.50"),
    ("boolean", " true"),
    ("timestamp with time zone", " 2024-01-01"),
]


@pytest.mark.parametrize(("pg_type", "value"), CASES)
def test_values_the_python_rule_decides(pg_type: str, value: Any) -> None:
    """Milliseconds, impossible days, decimals beyond the scale, the written scale of a decimal
    (5.0, 1.50) and padded texts are the Python rules' to convert or reject."""
    column = ColumnPlan("c", "c", pg_type, False, False, "test")
    with pytest.raises(arrow_rules.NotConvertible):
        arrow_rules.convert(column, _classes([value]))


#: Declared type -> (the type a profile gives it when every value matches, the check it counts).
INTENTS: dict[str, tuple[str, str, st.SearchStrategy[list[Any]]]] = {
    "JSON": ("json", "json_texts", JSONS),
    "BOOLEAN": ("boolean", "boolean_values", BOOLEANS),
    "DATE": ("date", "day_texts", _column([DAYS], [MALFORMED_DAYS, EPOCHS])),
    "DATETIME": ("timestamp with time zone", "datetime_values", TIMESTAMPS),
    "DECIMAL(10,2)": ("numeric(10,2)", "decimal_fit", NUMBERS),
    "MONEY": ("numeric", "decimal_values", NUMBERS),
}


def _json_takes(url: str, texts: list[Any]) -> bool:
    """PostgreSQL's json input takes every text (the fast copy's COPY would fail otherwise)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for text in texts:
            try:
                conn.execute("SELECT %s::text::json", (text,))
            except psycopg.errors.DataError:
                return False
    return True


@pytest.mark.parametrize("declared", list(INTENTS))
def test_what_the_arrow_rules_take_the_profile_accepts(pg_url: str, declared: str) -> None:
    """A table planned from its declared types is copied whole by the Arrow rules only where a
    profile would have chosen the same type: every value they take (and, for JSON, PostgreSQL's
    json input takes) passes the profile's check for that type (inference.py), as SQLite stores
    it under the declared type's affinity."""
    pg_type, check, columns = INTENTS[declared]

    @SETTINGS
    @given(values=columns)
    def accepted_are_profiled_alike(values: list[Any]) -> None:
        conn = sqlite3.connect(":memory:")
        try:
            conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, c {declared})")
            conn.executemany("INSERT INTO t (c) VALUES (?)", [(v,) for v in values])
            stored = [row[0] for row in conn.execute("SELECT c FROM t ORDER BY id")]
            array = _arrow(ColumnPlan("c", "c", pg_type, False, False, "test"), stored)
            if array is not None and declared == "JSON":
                array = array if _json_takes(pg_url, stored) else None
            event("Arrow rules" if array is not None else "Python rules")
            if array is None:
                return
            condition = hint_sql(intent_of(declared), '"c"')[check]
            row = conn.execute(f"SELECT count(*), sum({condition}) FROM t WHERE c IS NOT NULL")
            non_null, passed = row.fetchone()
            assert (passed or 0) == non_null, stored
        finally:
            conn.close()

    accepted_are_profiled_alike()
