"""Tables of large rows (files, whole updates): chunks and batches bounded in bytes (sizing.py)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from runtime.migrate import sizing

pytestmark = pytest.mark.postgres


def test_the_bounds_come_from_the_file_and_the_rows() -> None:
    # 300 files of 2 MB in a 600 MB snapshot: a batch of 8 rows, a chunk of 128.
    assert sizing.batch_rows(600 << 20, 300) == 8
    assert sizing.chunk_rows_for(250_000, 600 << 20, 300) == 128
    # 300,000 payments in 142 MB: rows are the bound, as before.
    assert sizing.batch_rows(142 << 20, 300_000) == sizing.BATCH_ROWS
    assert sizing.chunk_rows_for(250_000, 142 << 20, 300_000) == 250_000
    # A row larger than a batch's bytes is still read, one at a time.
    assert sizing.batch_rows(64 << 20, 2) == 1
    assert sizing.chunk_rows_for(250_000, 0, 0) == 250_000


def test_a_table_of_files_is_copied_and_verified_in_chunks_of_bounded_bytes(
    pg_url: str, run_migration: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(sizing, "CHUNK_BYTES", 8 << 20)
    monkeypatch.setattr(sizing, "BATCH_BYTES", 2 << 20)
    source = tmp_path / "files.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE files (id INTEGER PRIMARY KEY, name TEXT, body BLOB)")
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        for i in range(40):
            conn.execute(
                "INSERT INTO files VALUES (?, ?, ?)", (i + 1, f"f{i}", os.urandom(1 << 20))
            )
            conn.execute("INSERT INTO notes VALUES (?, ?)", (i + 1, f"{i:04d}" + "x" * (1 << 20)))
    conn.close()

    assert run_migration(pg_url, {source: "docs"}, dry_run=True)[0] == 0
    out = capsys.readouterr().out
    # 84 MB in the file, 40 rows a table: 2.1 MB a row at most, so 3 rows (8 MB) per chunk.
    assert "files:files -> docs.files (40 rows, 14 chunk(s)" in out
    assert "files:notes -> docs.notes (40 rows, 14 chunk(s)" in out
    code, report = run_migration(pg_url, {source: "docs"})

    assert code == 0, report
    assert {t["table"]: t["verified"] for t in report["sources"][0]["tables"]} == {
        "files": True,
        "notes": True,
    }
