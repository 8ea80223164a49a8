"""The columnar digest and the fast copy path (Arrow batches, binary COPY by ADBC).

The digest's encoding is checked against PostgreSQL's send formats computed by hand, the three
ways of computing it (PostgreSQL's SQL, the Arrow batches of the fast path, the Python rows of
the slow path) must agree on any data, and any change of one value must be detected. The fast
path must be taken where it applies and hand anything unexpected to the Python path.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.migrate import arrow_copy, columnar, sizing
from runtime.migrate.arrow_digest import ColumnarDigest
from runtime.migrate.copier import copy_chunk
from runtime.migrate.engine import verify_only
from runtime.migrate.plan import ColumnPlan, Source, TablePlan, quote_ident
from runtime.migrate.run import Options
from runtime.migrate.values import CONVERTERS, COPY_TYPES
from runtime.migrate.verify import (
    _arrow_digest,
    _sqlite_digest,
    compare,
    postgres_digest,
    sqlite_digest,
)
from tests.fixtures.migrate_plans import id_keyed_plan, key_column

pytestmark = pytest.mark.postgres

DECLARED = {"bigint": "INTEGER", "double precision": "REAL", "text": "TEXT"}


def _plan(path: Path, kinds: list[str], rows: int, *, passthrough: bool = True) -> TablePlan:
    columns = [key_column(passthrough=passthrough)]
    columns += [
        ColumnPlan(f"c{i}", f"c{i}", kind, False, False, "test", passthrough=passthrough)
        for i, kind in enumerate(kinds)
    ]
    return id_keyed_plan(columns, source_path=str(path), rows=rows)


def _source(path: Path, kinds: list[str], rows: list[tuple[Any, ...]]) -> None:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        declared = ", ".join(f"c{i} {DECLARED[kind]}" for i, kind in enumerate(kinds))
        conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {declared})")
        marks = ", ".join("?" * (len(kinds) + 1))
        conn.executemany(f"INSERT INTO t VALUES ({marks})", rows)
    conn.close()


def _target(url: str, plan: TablePlan, rows: list[tuple[Any, ...]] | None = None) -> None:
    columns = ", ".join(f"{quote_ident(c.target)} {c.pg_type}" for c in plan.columns)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute(f"CREATE TABLE t ({columns}, PRIMARY KEY (id))")
        if rows:
            with conn.cursor().copy("COPY t FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_hash_is_postgresql_send_format_and_one_change_is_detected(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The target's texts are hashed as UTF-8 whatever encoding libpq would ask for.
    monkeypatch.setenv("PGCLIENTENCODING", "WIN1251")
    kinds = ["double precision", "text", "bigint"]
    rows = [
        (i, i / 3, None if i % 7 == 0 else f"ряд {i}|\n", -(2**63) + i if i % 2 else None)
        for i in range(1, 501)
    ]
    _source(tmp_path / "s.sqlite", kinds, rows)
    plan = _plan(tmp_path / "s.sqlite", kinds, len(rows))
    _target(pg_url, plan, rows)
    # By hand: every value as PostgreSQL's send function writes it, the NULLs' keys apart.
    texts = [r[2].encode() for r in rows if r[2] is not None]
    parts = [
        _sha256(b"".join(struct.pack(">q", r[0]) for r in rows)),
        _sha256(b""),
        _sha256(b"".join(struct.pack(">d", r[1]) for r in rows)),
        _sha256(b""),
        _sha256(b"\0".join(texts)),
        _sha256(b"".join(struct.pack(">q", r[0]) for r in rows if r[2] is None)),
        _sha256(b"".join(struct.pack(">q", r[3]) for r in rows if r[3] is not None)),
        _sha256(b"".join(struct.pack(">q", r[0]) for r in rows if r[3] is None)),
    ]
    expected = columnar.combine(parts)

    def hashes() -> tuple[str, str]:
        ours = sqlite_digest(plan, (0, -1))
        theirs = postgres_digest(plan, (None, None), pg_url)
        assert ours.rows == theirs.rows == 500
        return ours.content_hash, theirs.content_hash

    assert hashes() == (expected, expected)
    changes = [
        "UPDATE t SET c0 = c0 + c0 * 2.3e-16 WHERE id = 250",  # one ulp
        "UPDATE t SET c1 = 'ряд 250|' WHERE id = 250",  # the newline lost
        "UPDATE t SET c1 = 'ряд 7|\n' WHERE id = 7",  # a NULL became a text
        "UPDATE t SET c2 = NULL WHERE id = 1",  # a value became NULL
        # Two texts trade one character across their boundary: same bytes, other boundary.
        "UPDATE t SET c1 = CASE id WHEN 1 THEN 'ряд 1|\nр' ELSE 'яд 2|\n' END WHERE id IN (1, 2)",
    ]
    for change in changes:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(change)
        ours, theirs = hashes()
        assert ours != theirs, change
        _target(pg_url, plan, rows)  # back to the copy
    assert hashes() == (expected, expected)


VALUES: dict[str, st.SearchStrategy[Any]] = {
    "bigint": st.integers(-(2**63), 2**63 - 1),
    # Sums of 30 rows stay in float range (PostgreSQL's sum() raises on overflow).
    "double precision": st.one_of(
        st.floats(min_value=-1e300, max_value=1e300),
        st.sampled_from([float("inf"), float("-inf")]),
    ),
    "text": st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
}
KINDS = list(VALUES)
ROWS = st.lists(
    st.tuples(*(st.one_of(st.none(), VALUES[kind]) for kind in KINDS)), min_size=1, max_size=30
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=ROWS)
def test_sql_arrow_and_python_digests_agree(
    pg_url: str, tmp_path: Path, rows: list[tuple[Any, ...]]
) -> None:
    """Any values, NULLs anywhere, sums beyond 64 bits: all three sides give one digest."""
    numbered = [(i + 1, *row) for i, row in enumerate(rows)]
    path = tmp_path / "s.sqlite"
    _source(path, KINDS, numbered)
    plan = _plan(path, KINDS, len(numbered))
    with sqlite3.connect(path) as conn:  # what SQLite holds (it stores -0.0 as 0)
        stored = conn.execute("SELECT * FROM t ORDER BY id").fetchall()
    conn.close()
    _target(pg_url, plan, stored)
    from_arrow = _arrow_digest(plan, (0, -1))
    assert from_arrow is not None
    from_rows = _sqlite_digest(plan, (0, -1), strict_utf8=True)
    from_sql = postgres_digest(plan, (None, None), pg_url)
    assert from_arrow.content_hash == from_rows.content_hash == from_sql.content_hash
    assert compare(plan, from_arrow, from_sql) == []
    assert compare(plan, from_rows, from_sql) == []


def test_the_fast_copy_digests_its_own_batches(pg_url: str, tmp_path: Path) -> None:
    kinds = ["double precision", "text"]
    rows = [
        (i, i / 7 if i % 5 else None, f"ряд {i}|\n" if i % 3 else None) for i in range(1, 20001)
    ]
    _source(tmp_path / "s.sqlite", kinds, rows)
    plan = _plan(tmp_path / "s.sqlite", kinds, len(rows))
    plan.chunks = [(1, 10000), (10001, 20000)]
    assert arrow_copy.applies(plan)
    assert columnar.digested_by_copy(plan)
    _target(pg_url, plan)
    copied = [
        copy_chunk(plan, chunk, pg_url, str(tmp_path / "rejects.jsonl"), digest=True)
        for chunk in plan.chunks
    ]
    for result, bounds in zip(copied, [(None, 10000), (10001, None)], strict=True):
        assert result.path == "arrow"
        assert result.digest is not None
        assert result.rows_written == result.digest.rows == 10000
        from_rows = _sqlite_digest(plan, result.chunk, strict_utf8=True)
        assert result.digest.content_hash == from_rows.content_hash
        assert compare(plan, result.digest, postgres_digest(plan, bounds, pg_url)) == []
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE t SET c1 = 'ряд 15000|' WHERE id = 15010")
    assert compare(plan, copied[0].digest, postgres_digest(plan, (None, 10000), pg_url)) == []
    problems = compare(plan, copied[1].digest, postgres_digest(plan, (10001, None), pg_url))
    assert "content hash differs" in problems


def test_empty_texts_across_batches_hash_as_postgresql_joins_them(
    pg_url: str, tmp_path: Path
) -> None:
    """The NUL between two texts spans batches (a batch of 3 rows here) and empty texts: the
    sides agree, and moving an empty text, or making one NULL, is seen."""
    kinds = ["text"]
    rows = [(i, "" if i % 3 in (0, 1) else f"t{i}") for i in range(1, 23)]
    _source(tmp_path / "s.sqlite", kinds, rows)
    plan = _plan(tmp_path / "s.sqlite", kinds, len(rows))
    plan.batch_rows = 3
    _target(pg_url, plan, rows)
    from_arrow = _arrow_digest(plan, (0, -1))
    assert from_arrow is not None
    by_hand = _sha256(b"\0".join(r[1].encode() for r in rows))
    assert from_arrow.column_hashes["c0"] == [columnar.combine([by_hand, _sha256(b"")])]
    assert compare(plan, from_arrow, postgres_digest(plan, (None, None), pg_url)) == []
    for change in [
        "UPDATE t SET c0 = CASE id WHEN 2 THEN '' ELSE 't2' END WHERE id IN (2, 3)",
        "UPDATE t SET c0 = NULL WHERE id = 3",
    ]:
        _target(pg_url, plan, rows)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(change)
        problems = compare(plan, from_arrow, postgres_digest(plan, (None, None), pg_url))
        assert "content hash differs" in problems, change


def test_columns_null_in_the_first_batches_keep_their_type(pg_url: str, tmp_path: Path) -> None:
    """The SQLite driver types a column by its first rows: a typed first row keeps a column
    that starts with more than a batch of NULLs from being read as integers."""
    kinds = ["text", "double precision"]
    first_value = sizing.BATCH_ROWS + 500
    rows = [(i, None, None) if i < first_value else (i, f"t{i}", i / 2) for i in range(1, 12001)]
    _source(tmp_path / "s.sqlite", kinds, rows)
    plan = _plan(tmp_path / "s.sqlite", kinds, len(rows))
    _target(pg_url, plan)
    result = copy_chunk(plan, (0, -1), pg_url, str(tmp_path / "rejects.jsonl"), digest=True)
    assert result.path == "arrow"
    assert result.rows_written == 12000
    assert result.digest is not None
    assert compare(plan, result.digest, postgres_digest(plan, (None, None), pg_url)) == []


def test_rows_the_target_refuses_take_the_python_path(pg_url: str, tmp_path: Path) -> None:
    kinds = ["text"]
    rows = [(i, "long text" if i in (3, 7) else "ok") for i in range(1, 11)]
    _source(tmp_path / "s.sqlite", kinds, rows)
    plan = _plan(tmp_path / "s.sqlite", kinds, len(rows))
    _target(pg_url, plan)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE t ADD CONSTRAINT short CHECK (length(c0) < 5)")
    result = copy_chunk(plan, (0, -1), pg_url, str(tmp_path / "rejects.jsonl"), digest=True)
    assert result.path == "python"
    assert result.rows_written == 8
    assert sorted(result.refused) == [3, 7]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (8,)


def test_a_table_with_rules_is_not_copied_by_the_fast_path(tmp_path: Path) -> None:
    plan = _plan(tmp_path / "s.sqlite", ["text"], 0)
    plan.columns[1] = replace(plan.columns[1], passthrough=False)
    assert not arrow_copy.applies(plan)
    assert not columnar.digested_by_copy(plan)
    assert columnar.supports(plan)  # its digest is still columnar, from the Python rows


def test_nul_bytes_the_profile_left_to_the_fast_copy_are_rejected_by_the_text_rule(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """A table the fast copy takes whole is not searched for NUL bytes by the profile: the copy
    finds them, and the chunks that hold one take the Python path, where the text rule rejects
    those rows; the copy, a later verification and the report all agree."""
    source = tmp_path / "notes.sqlite"
    rows = [
        (i, f"note {i}" if i not in (3, 15000) else "nul\x00byte", i / 4) for i in range(1, 20001)
    ]
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, score REAL)")
        conn.executemany("INSERT INTO notes VALUES (?, ?, ?)", rows)
    conn.close()
    code, report = run_migration(pg_url, {source: "notes"}, chunk_rows=5000)
    assert code == 1, "rejects without --allow-rejects fail the run"
    (table,) = report["sources"][0]["tables"]
    assert table["verified"] is True, table["verification_problems"]
    assert table["rejects"] == {"nul_byte_in_text": 2}
    assert table["rows_written"] == 19998
    assert table["copy_paths"] == ["arrow", "python"]
    options = Options(
        sources=[Source("notes", source, "notes")],
        target_url=pg_url,
        work_dir=tmp_path / "work",
        progress=False,
    )
    code, again = verify_only(options)
    assert code == 1
    assert again["verified"] is True
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM notes.notes WHERE id IN (3, 15000)"
        ).fetchone() == (0,)


def test_typed_columns_take_the_fast_path_and_verification_finds_one_changed_value(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """JSON, dates, date-times (texts and unix seconds), booleans (0/1 and texts) and DECIMAL
    money are converted by the Arrow rules; the copy's digest proves every row, and a later
    verification finds any one value changed in the target, column by column."""
    source = tmp_path / "legacy.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute(
            "CREATE TABLE pay (id INTEGER PRIMARY KEY, amount DECIMAL(10,2), fee MONEY, "
            "paid BOOLEAN, blocked BOOLEAN, payload JSON, created DATETIME, seen TIMESTAMP, "
            "birthday DATE)"
        )
        conn.executemany(
            "INSERT INTO pay VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    ("990.00", "2490.50", 149.9)[i % 3],
                    i % 97 + 0.25 if i % 7 else None,
                    i % 2,
                    "true" if i % 5 else "false",
                    f'{{"order": {i}, "amount": {{"value": "{i}.50"}}, "ok": true}}',
                    f"2024-01-{1 + i % 28:02d} 10:{i % 60:02d}:00",
                    1_700_000_000 + i if i % 4 else None,
                    f"19{60 + i % 30}-0{1 + i % 9}-1{i % 10}",
                )
                for i in range(1, 3001)
            ],
        )
    conn.close()
    code, report = run_migration(pg_url, {source: "legacy"}, chunk_rows=1000)
    (table,) = report["sources"][0]["tables"]
    assert code == 0, table
    assert table["verified"] is True, table["verification_problems"]
    assert table["copy_paths"] == ["arrow"]
    assert table["rows_written"] == 3000
    options = Options(
        sources=[Source("legacy", source, "legacy")],
        target_url=pg_url,
        work_dir=tmp_path / "work",
        progress=False,
    )
    changes = [
        "amount = amount + 0.01",
        "fee = 1.5",
        "paid = NOT paid",
        "blocked = NULL",
        'payload = \'{"order": 1500, "amount": {"value": "1500.5"}, "ok": true}\'',
        "created = created + interval '1 microsecond'",
        "seen = seen + interval '1 second'",
        "birthday = birthday + 1",
    ]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept AS SELECT * FROM legacy.pay WHERE id = 1501")
        for change in changes:
            conn.execute(f"UPDATE legacy.pay SET {change} WHERE id = 1501")
            code, again = verify_only(options)
            assert again["verified"] is False, change
            # The column's own hash names it.
            problems = again["sources"][0]["tables"][0]["verification_problems"]
            assert f"columns that differ: {change.split(' = ')[0]}" in problems, change
            conn.execute("DELETE FROM legacy.pay WHERE id = 1501")
            conn.execute("INSERT INTO legacy.pay SELECT * FROM kept")
    code, again = verify_only(options)
    assert code == 0
    assert again["verified"] is True


_JSON_STRINGS = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=5
)
_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    _JSON_STRINGS,
)
_JSON_TEXTS = st.builds(
    lambda value, indent: json.dumps(value, indent=indent),
    st.recursive(
        _JSON_SCALARS,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_JSON_STRINGS, inner),
        max_leaves=6,
    ),
    st.sampled_from([None, 1]),
)
#: Values as the Python rules give them, per target type of the typed kinds.
TYPED_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "boolean": st.booleans(),
    "timestamp with time zone": st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    "timestamp without time zone": st.datetimes(min_value=datetime(1, 1, 2)),
    "date": st.dates(),
    "numeric(10,2)": st.decimals(min_value=-(10**8) + 1, max_value=10**8 - 1, places=2),
    "numeric": st.decimals(min_value=-(10**20), max_value=10**20, allow_nan=False),
    "json": _JSON_TEXTS.map(CONVERTERS["json"]),
    "jsonb": _JSON_TEXTS.map(CONVERTERS["jsonb"]),
}
TYPED_KINDS = list(TYPED_VALUES)
TYPED_ROWS = st.lists(
    st.tuples(*(st.one_of(st.none(), TYPED_VALUES[kind]) for kind in TYPED_KINDS)),
    min_size=1,
    max_size=20,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=TYPED_ROWS)
def test_typed_columns_python_and_sql_digests_agree(
    pg_url: str, tmp_path: Path, rows: list[tuple[Any, ...]]
) -> None:
    """The columnar hash of the typed kinds: the Python path's converted values (add_rows) and
    PostgreSQL's SQL over what it stored from them give one digest, column by column."""
    numbered = [(i + 1, *row) for i, row in enumerate(rows)]
    plan = _plan(tmp_path / "unused.sqlite", TYPED_KINDS, len(numbered))
    columns = ", ".join(f"{quote_ident(c.target)} {c.pg_type}" for c in plan.columns)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute(f"CREATE TABLE t ({columns}, PRIMARY KEY (id))")
        with conn.cursor().copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([COPY_TYPES[c.converter] for c in plan.columns])
            for row in numbered:
                copy.write_row(row)
    source = ColumnarDigest(plan)
    source.add_rows(numbered)
    ours = source.digest()
    theirs = postgres_digest(plan, (None, None), pg_url)
    assert ours.content_hash == theirs.content_hash
    assert ours.column_hashes == theirs.column_hashes
    assert compare(plan, ours, theirs) == []
