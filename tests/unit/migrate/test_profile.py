"""The two-scan storage-class profile gives the same counts as counting every class."""

from __future__ import annotations

import sqlite3

from runtime.migrate.column_profile import ColumnProfile
from runtime.migrate.sqlite_source import (
    _full_profile_sql,
    count_nul_texts,
    profile_table,
    quote_sqlite,
    read_tables,
)

ROWS = [
    # ints  mixed         reals  texts         untyped  nullable_int  blobs
    (1, 1, 1.5, "a", 2.0, None, b"x"),
    (2, "two", 2.0, "b\x00c", 3.5, 4, b"y"),
    (3, 3.0, 3.0, "d", 4, None, None),
    (4, None, -1.25, "e", "t", 5, b"\x00"),
    (5, b"\x01", 7.0, None, None, None, b"z"),
]


def _full(conn: sqlite3.Connection, table: str, column: str) -> ColumnProfile:
    row = conn.execute(
        f"SELECT {', '.join(_full_profile_sql(quote_sqlite(column)))} FROM {table}"
    ).fetchone()
    return ColumnProfile(*(int(v or 0) for v in row))


def test_profile_matches_a_full_count_per_class():
    conn = sqlite3.connect(":memory:")
    conn.execute(
        'CREATE TABLE t (ints INTEGER, mixed, "reals" REAL, texts TEXT, untyped, '
        "nullable_int INTEGER, blobs BLOB)"
    )
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", ROWS)
    (table,) = read_tables(conn)
    profiles = profile_table(conn, table)
    for column in table.columns:
        expected = _full(conn, "t", column.name)
        got = profiles[column.name]
        if not ("INT" in column.declared or not column.declared):
            expected.integral_reals = got.integral_reals  # only counted where it decides a type
        assert got == expected, column.name
    assert profiles["texts"].nul_texts == 1
    assert profiles["mixed"] == ColumnProfile(
        integer=1, real=1, text=1, blob=1, null=1, integral_reals=1
    )


def test_empty_table_profiles_to_zero_counts():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    (table,) = read_tables(conn)
    assert profile_table(conn, table) == {"a": ColumnProfile(), "b": ColumnProfile()}


def test_nul_bytes_left_uncounted_are_counted_apart_to_the_same_figures(tmp_path):
    path = tmp_path / "s.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, texts TEXT, mixed, ints INTEGER)")
    rows = [(i, "a\x00b" if i % 3 == 0 else "ok", "x\x00" if i == 1 else i, i) for i in range(9)]
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    (table,) = read_tables(conn)
    counted = profile_table(conn, table)
    later = profile_table(conn, table, count_nul=False)
    assert later["texts"].nul_texts is None  # one storage class: left to the fast copy
    assert later["mixed"].nul_texts == 1  # mixed classes are counted in full anyway
    count_nul_texts(conn, table, later)
    assert later == counted
    assert counted["texts"].nul_texts == 3
