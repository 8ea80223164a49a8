"""The Python copy's own digest of a chunk is the one verification would compute by reading it.

Tables whose types need rules (JSON, text dates, booleans, DECIMAL money) take the Python path;
its digest of the rows it converted replaces a second read of the chunk (verify_schedule.py),
so it must be the same digest, rejected rows counted the same way, whichever hash applies.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from runtime.migrate import plan as planning
from runtime.migrate.copier import copy_chunk
from runtime.migrate.digest import Digest
from runtime.migrate.plan import Source, TablePlan
from runtime.migrate.sqlite_source import foreign_key_violations, open_snapshot, read_tables
from runtime.migrate.verify import compare, pg_ranges, postgres_digest, sqlite_digest

pytestmark = pytest.mark.postgres


def _legacy(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE payments (
                id INTEGER PRIMARY KEY, amount DECIMAL(10,2), fee MONEY, paid BOOLEAN,
                payload JSON, created_at DATETIME, day DATE, note TEXT
            );
            CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER);
            """
        )
        conn.executemany(
            "INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    ("990.00", 149.9, 1990, None)[i % 4],
                    round(i * 0.035, 2),
                    ("true", 0, 1, "f", None)[i % 5],
                    json.dumps({"b": i, "aa": [1.50, -0.0, "é"], "a": None}, ensure_ascii=i % 2),
                    f"2024-01-{1 + i % 28:02d} 10:{i % 60:02d}:00" if i % 7 else 1_700_000_000 + i,
                    f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}",
                    ("bad\x00note" if i == 1501 else f"note {i}") if i % 3 else None,
                )
                for i in range(1, rows + 1)
            ],
        )
        # A NUL byte no type holds: the row is rejected by the copy and by verification.
        conn.executemany(
            "INSERT INTO notes VALUES (?, ?, ?)",
            [(i, "a\x00b" if i == 3 else f"body {i}", i) for i in range(1, 50)],
        )
    conn.close()


def _plans(path: Path) -> list[TablePlan]:
    conn = open_snapshot(path)
    try:
        source = Source(name="s", path=path, schema="public")
        return planning.plan_infer(
            source, path, conn, read_tables(conn), foreign_key_violations(conn), 700, None
        )
    finally:
        conn.close()


@pytest.mark.parametrize("json_type", ["json", "jsonb"])
def test_the_python_copy_digests_what_verification_reads(
    pg_url: str, tmp_path: Path, json_type: str
) -> None:
    path = tmp_path / "legacy.sqlite"
    _legacy(path, 2000)
    plans = {p.table: p for p in _plans(path)}
    payments = plans["payments"]
    assert [c.pg_type for c in payments.columns][1:7] == [
        "numeric(10,2)",
        "numeric",
        "boolean",
        "json",
        "timestamp with time zone",
        "date",
    ]
    if json_type == "jsonb":  # a target column declared jsonb, as existing mode may find it
        payments.columns[4] = replace(payments.columns[4], pg_type="jsonb")
        assert payments.create_sql is not None
        payments.create_sql = payments.create_sql.replace('"payload" json', '"payload" jsonb')
        assert '"payload" jsonb' in payments.create_sql
    assert len(payments.chunks) > 1
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for plan in plans.values():
            assert plan.create_sql is not None
            conn.execute(plan.create_sql)
    copied, target = Digest(), Digest()
    for index, (chunk, bounds) in enumerate(zip(payments.chunks, pg_ranges(payments), strict=True)):
        reject_path = str(tmp_path / f"payments.{index}.jsonl")
        result = copy_chunk(payments, chunk, pg_url, reject_path, digest=True)
        assert result.path == "python"
        assert result.digest is not None
        read = sqlite_digest(payments, chunk)
        assert result.digest.rows == read.rows == result.rows_written
        assert result.digest.skipped_rows == read.skipped_rows == sum(result.rejects.values())
        assert result.digest.content_hash == read.content_hash
        assert result.digest.column_hashes == read.column_hashes
        copied.merge(result.digest)
        target.merge(postgres_digest(payments, bounds, pg_url))
    assert copied.rows == 1999
    assert copied.skipped_rows == 1
    assert compare(payments, copied, target) == []
    # A NUL byte sends the chunk to lenient reads, which leave the digest to verification.
    notes = plans["notes"]
    result = copy_chunk(notes, notes.chunks[0], pg_url, str(tmp_path / "notes.jsonl"), digest=True)
    assert result.rejects == {"nul_byte_in_text": 1}
    assert result.digest is None
    assert sqlite_digest(notes, notes.chunks[0]).skipped_rows == 1
