"""The source-side digest built by SQLite in SQL equals the one built row by row in Python.

Both read the same snapshot: the SQL path (passthrough integer/float/text tables) must give the
same row texts, content hash, row count and aggregates as the Python path it replaces, and hand
back to the Python path where a rule could fire (invalid UTF-8, integer sums beyond 64 bits).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.migrate import rowtext
from runtime.migrate.digest import ColumnAggregate, Digest, sqlite_sql_digest
from runtime.migrate.plan import ColumnPlan, TablePlan
from runtime.migrate.verify import _float_sums_match, _sqlite_digest, compare

KINDS = {"n": "bigint", "x": "double precision", "s": "text"}
DECLARED = {"bigint": "INTEGER", "double precision": "REAL", "text": "TEXT"}
VALUES: dict[str, st.SearchStrategy[Any]] = {
    # Sums of 40 rows stay within int64 and float range (overflow has its own test).
    "bigint": st.integers(-(2**56), 2**56),
    "double precision": st.floats(allow_nan=False, min_value=-1e300, max_value=1e300),
    "text": st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
}
ROWS = st.lists(
    st.tuples(*(st.one_of(st.none(), VALUES[kind]) for kind in KINDS.values())), max_size=40
)


def _plan(path: Path, rows: int, chunk: tuple[int, int] = (0, -1)) -> TablePlan:
    columns = [ColumnPlan("id", "id", "bigint", True, True, "key", passthrough=True)]
    columns += [
        ColumnPlan(name, name, kind, False, False, "test", passthrough=True)
        for name, kind in KINDS.items()
    ]
    return TablePlan(
        source_name="t",
        source_path=str(path),
        table="t",
        schema="public",
        target="t",
        columns=columns,
        key=("id",),
        rowid_key=True,
        without_rowid=False,
        source_key=("id",),
        rows=rows,
        chunks=[chunk],
        create_sql=None,
    )


def _source(path: Path, rows: list[tuple[Any, ...]], ids: list[int] | None = None) -> None:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        declared = ", ".join(f"{name} {DECLARED[kind]}" for name, kind in KINDS.items())
        conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {declared})")
        numbered = [(ids[i] if ids else i + 1, *row) for i, row in enumerate(rows)]
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", numbered)
    conn.close()


def _same(plan: TablePlan, sql: Digest, python: Digest) -> None:
    assert (sql.rows, sql.content_hash) == (python.rows, python.content_hash)
    assert compare(plan, python, sql) == []  # aggregates: counts, min, max, sums


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=ROWS)
def test_sql_digest_equals_the_python_digest(tmp_path: Path, rows: list[tuple[Any, ...]]) -> None:
    path = tmp_path / "s.sqlite"
    _source(path, rows)
    plan = _plan(path, len(rows))
    assert rowtext.sqlite_supports(plan)
    sql = sqlite_sql_digest(plan, (0, -1))
    assert sql is not None
    _same(plan, sql, _sqlite_digest(plan, (0, -1), strict_utf8=True))


def test_row_texts_match_value_by_value(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    rows = [
        (0, -0.0, ""),
        (None, float("inf"), "a|3:b\nc"),
        (-(2**63), float("-inf"), "~"),
        (2**63 - 1, 1e16, "дом 🏠"),
        (7, None, None),
    ]
    _source(path, rows)
    plan = _plan(path, len(rows))
    conn = sqlite3.connect(path)
    rowtext.register_sqlite_functions(conn)
    from_sql = [t for (t,) in conn.execute(f"SELECT {rowtext.sqlite_row_text(plan)} FROM t")]
    stored = conn.execute("SELECT * FROM t").fetchall()  # as SQLite keeps them: -0.0 is 0.0
    conn.close()
    format_row = rowtext.row_formatter(plan)
    assert from_sql == [format_row(row) for row in stored]
    assert from_sql[3] == f"4|{2**63 - 1}|{rowtext.ENCODINGS['double precision'][1](1e16)}|5:дом 🏠"
    assert from_sql[4] == "5|7|~|~"


def test_blocks_follow_sparse_rowids_and_chunk_bounds(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ids = [1, 2, 10**12, 10**12 + 5, 2**62]
    rows = [(i, i / 7, f"row {i}") for i in range(5)]
    _source(path, rows, ids)
    whole = sqlite_sql_digest(_plan(path, 5), (0, -1))
    assert whole is not None
    assert whole.rows == 5
    _same(_plan(path, 5), whole, _sqlite_digest(_plan(path, 5), (0, -1), strict_utf8=True))
    middle = sqlite_sql_digest(_plan(path, 2, (3, 10**12)), (3, 10**12))
    assert middle is not None
    assert middle.rows == 1
    middle_plan = _plan(path, 2, (3, 10**12))
    _same(middle_plan, middle, _sqlite_digest(middle_plan, (3, 10**12), strict_utf8=True))


def test_invalid_utf8_and_overflowing_sums_go_back_to_the_python_path(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _source(path, [(1, 1.0, "ok")])
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO t VALUES (2, 1, 1.0, CAST(x'ff41' AS TEXT))")
    conn.close()
    assert sqlite_sql_digest(_plan(path, 2), (0, -1)) is None

    _source(path, [(2**62, 1.0, "a"), (2**62, 2.0, "b"), (2**62, 3.0, "c")])
    assert sqlite_sql_digest(_plan(path, 3), (0, -1)) is None


def test_rule_columns_keep_the_python_path(tmp_path: Path) -> None:
    plan = _plan(tmp_path / "s.sqlite", 0)
    plan.columns[1] = ColumnPlan("n", "n", "bigint", False, False, "text in numbers")
    assert not rowtext.sqlite_supports(plan)
    plan = _plan(tmp_path / "s.sqlite", 0)
    plan.excluded_rowids = {1: "foreign_key_violation"}
    assert not rowtext.sqlite_supports(plan)


def test_float_sums_allow_for_the_order_of_additions_only() -> None:
    # [-1e300, 1e300, 1.0]: SQLite adds in order (0.0), fsum is exact (1.0).
    cancelling = ColumnAggregate(3, -1e300, 1e300, 1.0)
    assert _float_sums_match(0.0, 1.0, cancelling)
    assert not _float_sums_match(0.0, 1e290, cancelling)
    small = ColumnAggregate(1000, 0.5, 2.0, 1234.5)
    assert _float_sums_match(1234.5, 1234.5 + 1e-12, small)
    assert not _float_sums_match(1234.5, 1234.6, small)
    assert not _float_sums_match(float("inf"), 1.0, small)
