"""The row text encoding: PostgreSQL's SQL and the Python formatter agree on every value.

Values go into a real table by binary COPY (as the copier writes them); the SQL expression reads
them back as text and must equal what the Python formatter makes of the same values. And the
digest of a chunk detects any change of one value, however small.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.migrate import columnar, rowtext
from runtime.migrate.plan import ColumnPlan, TablePlan, quote_ident
from runtime.migrate.values import CONVERTERS, COPY_TYPES
from runtime.migrate.verify import postgres_digest, sqlite_digest
from tests.fixtures.migrate_plans import id_keyed_plan, key_column

pytestmark = pytest.mark.postgres

_JSON_STRINGS = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _JSON_STRINGS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_JSON_STRINGS, inner, max_size=4),
    max_leaves=12,
)
#: JSON texts as bots write them (any spacing, escaped or raw non-ASCII), and number spellings
#: jsonb prints its own way.
_JSON_TEXTS = st.one_of(
    st.builds(
        lambda value, ascii, spaced: json.dumps(
            value, ensure_ascii=ascii, separators=(", ", ": ") if spaced else (",", ":")
        ),
        _JSON_VALUES,
        st.booleans(),
        st.booleans(),
    ),
    st.sampled_from(
        [
            '{"b": 1.50, "aa": [1e2, -0.0, 100e-2, 1.5E-3], "a": null, "a": true}',
            "1e400",
            '  [ "x\\ny\\u0001\\\\\\"\\/", "\\ud83d\\ude00" ] ',
            '{"": {}, "é": [], "ab": "|~"}',
        ]
    ),
)

_OFFSETS = st.builds(
    timezone, st.integers(-14 * 60, 14 * 60).map(lambda minutes: timedelta(minutes=minutes))
)

#: One strategy per encoded type, over the values the value rules can hand to COPY.
STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "bigint": st.integers(-(2**63), 2**63 - 1),
    "integer": st.integers(-(2**31), 2**31 - 1),
    "smallint": st.integers(-(2**15), 2**15 - 1),
    "double precision": st.floats(allow_nan=False),
    "real": st.floats(width=32, allow_nan=False),
    "numeric": st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**30), max_value=10**30),
        st.integers(0, 12).flatmap(
            lambda places: st.decimals(allow_nan=False, allow_infinity=False, places=places)
        ),
    ),
    "text": st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    "character varying": st.sampled_from(["", "|", "~", "1:|", "\n", "a|b\nc", "é", "🏠"]),
    "boolean": st.booleans(),
    "timestamp with time zone": st.datetimes(timezones=st.one_of(st.just(UTC), _OFFSETS)),
    "timestamp without time zone": st.datetimes(),
    "date": st.dates(),
    "bytea": st.binary(max_size=64),
    "uuid": st.uuids(),
    "json": st.builds(lambda text: CONVERTERS["json"](text), st.deferred(lambda: _JSON_TEXTS)),
    "jsonb": st.builds(lambda text: CONVERTERS["jsonb"](text), st.deferred(lambda: _JSON_TEXTS)),
}
TYPES = list(STRATEGIES)
assert set(TYPES) == set(rowtext.ENCODINGS), "every encoding has a property test"


def _plan(types: list[str], *, schema: str = "public", source_path: str = "") -> TablePlan:
    columns = [key_column(passthrough=False)]
    columns += [
        ColumnPlan(f"c{i}", f"c{i}", kind, False, False, "test") for i, kind in enumerate(types)
    ]
    return id_keyed_plan(columns, source_name="t", source_path=source_path, schema=schema, rows=0)


@pytest.fixture(scope="module")
def all_types_table(make_pg_database: Any) -> tuple[str, TablePlan]:
    url = make_pg_database()
    plan = _plan(TYPES)
    columns = ", ".join(f"{quote_ident(c.target)} {c.pg_type}" for c in plan.columns)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE t ({columns})")
    return url, plan


_ROWS = st.lists(
    st.tuples(*(st.one_of(st.none(), strategy) for strategy in STRATEGIES.values())),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_ROWS)
def test_sql_and_python_row_texts_are_identical(
    all_types_table: tuple[str, TablePlan], rows: list[tuple[Any, ...]]
) -> None:
    url, plan = all_types_table
    numbered = [(i, *row) for i, row in enumerate(rows)]
    with psycopg.connect(url, options="-c TimeZone=UTC") as conn:
        conn.execute("TRUNCATE t")
        names = ", ".join(quote_ident(c.target) for c in plan.columns)
        with conn.cursor().copy(f"COPY t ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([COPY_TYPES[c.converter] for c in plan.columns])
            for row in numbered:
                copy.write_row(row)
        from_sql = [
            text
            for (text,) in conn.execute(f"SELECT {rowtext.sql_row_text(plan)} FROM t ORDER BY id")
        ]
        conn.rollback()
    format_row = rowtext.row_formatter(plan)
    assert from_sql == [format_row(row) for row in numbered]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2.0, "4000000000000000"),
        (-0.0, "8000000000000000"),
        (1e16, "4341c37937e08000"),
        (float("inf"), "7ff0000000000000"),
    ],
)
def test_floats_are_encoded_by_their_bits_not_their_printing(value: float, expected: str) -> None:
    assert rowtext.ENCODINGS["double precision"][1](value) == expected


def test_text_lengths_keep_separators_unambiguous() -> None:
    format_row = rowtext.row_formatter(_plan(["text", "text"]))
    assert format_row((1, "a|3:b", None)) != format_row((1, "a", "b|~"))
    assert format_row((1, "~", None)) == "1|1:~|~"


def test_row_text_digests_match_and_one_character_is_detected(pg_url: str, tmp_path: Path) -> None:
    """A table with a type outside the columnar hash (uuid) is hashed by its row texts."""
    source = tmp_path / "s.sqlite"
    ids = [uuid.UUID(int=i * 7919) for i in range(1, 501)]
    with sqlite3.connect(source) as lite:
        lite.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, c0 UUID, c1 TEXT)")
        lite.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            [(i, str(ids[i - 1]), f"row {i}|x") for i in range(1, 501)],
        )
    lite.close()
    plan = _plan(["uuid", "text"], source_path=str(source))
    plan.rows = 500
    assert rowtext.supports(plan)
    assert not columnar.supports(plan)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, c0 uuid, c1 text)")
        with conn.cursor().copy("COPY t FROM STDIN") as copy:
            for i in range(1, 501):
                copy.write_row((i, ids[i - 1], f"row {i}|x"))

        def digests_equal() -> bool:
            ours, theirs = sqlite_digest(plan, (0, -1)), postgres_digest(plan, (None, None), pg_url)
            assert ours.rows == theirs.rows == 500
            return ours.content_hash == theirs.content_hash

        assert digests_equal()
        text = "".join(f"{i}|{ids[i - 1]}|{len(f'row {i}|x')}:row {i}|x\n" for i in range(1, 501))
        expected = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
        assert postgres_digest(plan, (None, None), pg_url).content_hash == expected
        conn.execute("UPDATE t SET c1 = 'row 250|y' WHERE id = 250")
        assert not digests_equal()
        conn.execute("UPDATE t SET c1 = 'row 250|x' WHERE id = 250")
        assert digests_equal()
