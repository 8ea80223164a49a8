"""The online backup helper: a snapshot written over the previous one is a faithful copy."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from runtime.online_backup import online_backup


def _database(path: Path, rows: int, *, page_size: int = 4096, wal: bool = False) -> None:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA page_size = {page_size}")
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX t_v ON t (v)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", ((f"row {i} " * 20,) for i in range(rows)))
    conn.commit()
    conn.close()


def _contents(path: Path) -> tuple[list[str], int, list[tuple[str]]]:
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        page_count = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        return (
            list(conn.iterdump()),
            page_count * page_size,
            conn.execute("PRAGMA integrity_check").fetchall(),
        )
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"rows": 5000}, {"rows": 300}),  # the previous snapshot was larger
        ({"rows": 300}, {"rows": 5000, "page_size": 8192}),  # larger, other page size
        ({"rows": 3000, "wal": True}, {"rows": 2000}),  # the previous one from a WAL source
    ],
)
def test_a_snapshot_written_over_the_previous_one_is_the_source(
    tmp_path: Path, old: dict[str, int], new: dict[str, int]
) -> None:
    source, snapshot = tmp_path / "source.sqlite", tmp_path / "work" / "snapshot.sqlite"
    _database(source, **old)
    online_backup(source, snapshot, durable=False, reuse=True)
    _database(source, **new)
    online_backup(source, snapshot, durable=False, reuse=True)
    dump, size, integrity = _contents(snapshot)
    expected_dump, expected_size, _ = _contents(source)
    assert dump == expected_dump
    assert snapshot.stat().st_size == size == expected_size
    assert integrity == [("ok",)]
    assert not snapshot.with_name(snapshot.name + ".partial").exists()


def test_a_previous_file_that_is_no_database_is_replaced(tmp_path: Path) -> None:
    source, snapshot = tmp_path / "source.sqlite", tmp_path / "snapshot.sqlite"
    _database(source, rows=500)
    snapshot.write_bytes(b"not a database at all" * 1000)
    online_backup(source, snapshot, durable=False, reuse=True)
    assert _contents(snapshot)[0] == _contents(source)[0]
