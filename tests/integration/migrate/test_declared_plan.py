"""Plans from declared types, the integrity gate and bytewise text.

Infer mode plans a table whose declared types promise the fast copy without profiling it; the
copy checks the promise chunk by chunk, and a broken one makes the table planned again from its
profile and copied again, with nothing of the first attempt left behind. No chunk commits before
its snapshot passed its integrity check, though the copy starts while the check runs; what is
copied never depends on a source index, which that check does not compare with its table.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime.errors import MigrationError
from runtime.migrate import integrity_gate
from runtime.migrate import plan as planning
from runtime.migrate.engine import verify_only
from runtime.migrate.plan import Source
from runtime.migrate.run import Options
from tests.fixtures.damaged_sqlite import make_damaged_sqlite, make_swapped_key_indexes

pytestmark = pytest.mark.postgres

ROWS = 20_000


def _readings(path: Path, odd: dict[int, tuple[Any, ...]] | None = None) -> None:
    """id, an INTEGER, a REAL and a TEXT column; `odd` replaces whole rows by id."""
    rows = [(i, i * 3, i / 8, f"показание {i}") for i in range(1, ROWS + 1)]
    for row_id, values in (odd or {}).items():
        rows[row_id - 1] = (row_id, *values)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, n INTEGER, r REAL, t TEXT)")
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)
    conn.close()


def _table(report: dict[str, Any]) -> dict[str, Any]:
    (table,) = report["sources"][0]["tables"]
    return table


def _types(table: dict[str, Any]) -> dict[str, str]:
    return {c["target"]: c["type"] for c in table["columns"]}


def _reverify(pg_url: str, source: Path, work: Path) -> dict[str, Any]:
    """`domos migrate verify`: plans every table from its profile."""
    options = Options(
        sources=[Source(source.stem, source, "s")],
        target_url=pg_url,
        work_dir=work,
        progress=False,
    )
    _, report = verify_only(options)
    return report


def _migrated_unprofiled(
    pg_url: str, run_migration: Any, source: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Migrate `source` with profiling forbidden; its table planned from the declared types,
    copied on the Arrow path only and verified."""

    def no_profile(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a table its declared types describe was profiled")

    with monkeypatch.context() as patched:
        patched.setattr(planning, "profile_table", no_profile)
        code, report = run_migration(pg_url, {source: "s"}, chunk_rows=5000)
    assert code == 0
    table = _table(report)
    assert table["plan_basis"] == "declared"
    assert table["replanned"] is None
    assert table["copy_paths"] == ["arrow"]
    assert table["verified"] is True, table["verification_problems"]
    return table


def test_declared_types_skip_the_profile_and_the_copy_proves_them(
    pg_url: str, run_migration: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "clean.sqlite"
    _readings(source)
    table = _migrated_unprofiled(pg_url, run_migration, source, monkeypatch)
    assert _types(table) == {"id": "bigint", "n": "bigint", "r": "double precision", "t": "text"}
    # The profile, run by a separate verification, finds what the declared types promised.
    again = _reverify(pg_url, source, tmp_path / "verify")
    assert again["verified"] is True
    assert _table(again)["plan_basis"] == "profile"
    assert _types(_table(again)) == _types(table)


def _legacy(path: Path, odd: dict[int, tuple[Any, ...]] | None = None) -> None:
    """A legacy bot's payments: JSON, BOOLEAN, DATETIME, DATE and DECIMAL(10,2) columns."""
    rows = [
        (
            i,
            f'{{"order": {i}, "paid": {"true" if i % 2 else "false"}}}',
            i % 2,
            f"2024-03-{1 + i % 28:02d} 12:{i % 60:02d}:05",
            f"19{60 + i % 40}-0{1 + i % 9}-1{i % 10}",
            ("990.00", 149.9, 2490.5)[i % 3],
        )
        for i in range(1, ROWS + 1)
    ]
    for row_id, values in (odd or {}).items():
        rows[row_id - 1] = (row_id, *values)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE payments (id INTEGER PRIMARY KEY, payload JSON, paid BOOLEAN, "
            "created DATETIME, birthday DATE, amount DECIMAL(10,2))"
        )
        conn.executemany("INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()


LEGACY_TYPES = {
    "id": "bigint",
    "payload": "json",
    "paid": "boolean",
    "created": "timestamp with time zone",
    "birthday": "date",
    "amount": "numeric(10,2)",
}


def test_declared_intents_skip_the_profile_and_the_arrow_rules_prove_them(
    pg_url: str, run_migration: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON, BOOLEAN, DATETIME, DATE and DECIMAL(p,s) take the types a profile would give
    values that all match, unprofiled: the Arrow rules convert every value or replan."""
    source = tmp_path / "legacy.sqlite"
    _legacy(source)
    table = _migrated_unprofiled(pg_url, run_migration, source, monkeypatch)
    assert _types(table) == LEGACY_TYPES
    again = _reverify(pg_url, source, tmp_path / "verify")
    assert again["verified"] is True
    assert _types(_table(again)) == LEGACY_TYPES


def test_a_date_time_in_a_date_column_replans_the_table(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """The Arrow date rule takes only days: in the third chunk a date-time hands the table to
    its profile, which makes the column timestamptz, and the table is copied again."""
    source = tmp_path / "legacy.sqlite"
    _legacy(source, {15_000: ("{}", 1, "2024-03-01 12:00:05", "1970-01-01 10:00:00", 5)})
    code, report = run_migration(pg_url, {source: "s"}, chunk_rows=5000)
    assert code == 0
    table = _table(report)
    assert table["plan_basis"] == "profile"
    assert "fast copy unavailable" in table["replanned"]
    assert _types(table) == {**LEGACY_TYPES, "birthday": "timestamp with time zone"}
    assert table["verified"] is True, table["verification_problems"]
    assert table["rows_written"] == ROWS


def test_a_fractional_real_in_an_integer_column_replans_the_table(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """The profile would have made the column double precision: past the driver's first
    batch, in the third chunk, the real makes the table profiled and copied again."""
    source = tmp_path / "reals.sqlite"
    _readings(source, {15_000: (2.5, 1.0, "half")})
    code, report = run_migration(pg_url, {source: "s"}, chunk_rows=5000)
    assert code == 0
    table = _table(report)
    assert table["plan_basis"] == "profile"
    assert "fast copy unavailable" in table["replanned"]
    assert _types(table)["n"] == "double precision"
    assert table["verified"] is True, table["verification_problems"]
    assert table["rows_written"] == ROWS
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM s.readings").fetchone() == (
            ROWS,
            ROWS,
        )
        assert conn.execute("SELECT n FROM s.readings WHERE id = 15000").fetchone() == (2.5,)
        assert conn.execute("SELECT n FROM s.readings WHERE id = 14999").fetchone() == (44997.0,)
    assert _reverify(pg_url, source, tmp_path / "verify")["verified"] is True


@pytest.mark.parametrize(
    ("chunk_rows", "blob_id"),
    [(5000, 12_000), (ROWS, 19_000)],
    ids=["third-chunk", "third-batch-of-one-chunk"],
)
def test_a_blob_in_a_text_column_makes_it_bytea_not_read_as_text(
    pg_url: str, run_migration: Any, tmp_path: Path, chunk_rows: int, blob_id: int
) -> None:
    """The SQLite driver reads a blob into a string column as if it were text; the copy's own
    check (in the scan that reads every batch) finds it, and the profiled plan makes the column
    bytea, the one type holding the blob and the texts (issue 17: no row is rejected for it)."""
    source = tmp_path / "blob.sqlite"
    _readings(source, {blob_id: (1, 1.0, b"valid utf-8 bytes")})
    code, report = run_migration(pg_url, {source: "s"}, chunk_rows=chunk_rows)
    assert code == 0, report
    table = _table(report)
    assert "storage class" in table["replanned"]
    assert table["rejects"] == {}
    assert _types(table)["t"] == "bytea"
    assert table["rows_written"] == ROWS
    assert table["verified"] is True, table["verification_problems"]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT t FROM s.readings WHERE id = %s", (blob_id,)).fetchone() == (
            b"valid utf-8 bytes",
        )
        assert conn.execute("SELECT t FROM s.readings WHERE id = 7").fetchone() == (
            "показание 7".encode(),
        )


def test_a_text_in_a_real_column_is_refused_by_the_driver_and_replanned(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """No SQL check guards a REAL column: the driver refuses a text in a double column, which
    is enough to have the table profiled; the text makes the column text (issue 17)."""
    source = tmp_path / "text_in_real.sqlite"
    _readings(source, {15_000: (7, "n/a", "bad price")})
    code, report = run_migration(pg_url, {source: "s"}, chunk_rows=5000)
    assert code == 0, report
    table = _table(report)
    assert "fast copy unavailable" in table["replanned"]
    assert _types(table)["r"] == "text"
    assert table["rejects"] == {}
    assert table["rows_written"] == ROWS
    assert table["verified"] is True, table["verification_problems"]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(
            "SELECT r FROM s.readings WHERE id IN (2, 15000) ORDER BY id"
        ).fetchall() == [
            ("0.25",),
            ("n/a",),
        ]


def test_invalid_utf8_is_found_by_postgresql_and_judged_by_the_text_rule(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """The fast copy does not validate UTF-8 itself (its digest neither): PostgreSQL refuses
    the chunk, and the text rule decides on the Python path."""
    source = tmp_path / "utf8.sqlite"
    _readings(source)
    with sqlite3.connect(source) as conn:
        conn.execute(
            "UPDATE readings SET t = CAST(? AS TEXT) WHERE id = 15000", (b"\xff\xfe broken",)
        )
    conn.close()
    code, report = run_migration(pg_url, {source: "s"}, chunk_rows=5000)
    assert code == 1
    table = _table(report)
    assert table["rejects"] == {"invalid_utf8": 1}
    assert table["rows_written"] == ROWS - 1
    assert "python" in table["copy_paths"]
    assert table["verified"] is True, table["verification_problems"]
    assert _reverify(pg_url, source, tmp_path / "verify")["verified"] is True


def test_text_orders_bytewise_as_it_did_in_sqlite(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """SQLite's default BINARY collation is PostgreSQL's "C"; a column with its own collation
    keeps the database default (no COLLATE is guessed), and the plan reports it (exit 1)."""
    source = tmp_path / "names.sqlite"
    names = ["b", "B", "a", "é", "Z", "ä", "a b", "ab", "A"]
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE TABLE tags (id INTEGER PRIMARY KEY, tag TEXT COLLATE NOCASE)")
        conn.executemany("INSERT INTO names (name) VALUES (?)", [(n,) for n in names])
        conn.executemany("INSERT INTO tags (tag) VALUES (?)", [(n,) for n in names])
        in_sqlite = [row[0] for row in conn.execute("SELECT name FROM names ORDER BY name")]
    conn.close()
    code, report = run_migration(pg_url, {source: "s"})
    assert code == 1
    problems = {t["table"]: t["problems"] for t in report["sources"][0]["tables"]}
    assert problems == {"names": {}, "tags": {"collation_not_migrated:NOCASE": 1}}
    collations = {
        t["table"]: {c["target"]: c["collation"] for c in t["columns"]}
        for t in report["sources"][0]["tables"]
    }
    assert collations == {"names": {"id": None, "name": "C"}, "tags": {"id": None, "tag": None}}
    with psycopg.connect(pg_url) as conn:
        in_postgres = [row[0] for row in conn.execute("SELECT name FROM s.names ORDER BY name")]
        declared = conn.execute(
            "SELECT collation_name FROM information_schema.columns "
            "WHERE table_schema = 's' AND column_name IN ('name', 'tag') ORDER BY column_name"
        ).fetchall()
    assert in_postgres == in_sqlite
    assert declared == [("C",), (None,)]


def test_a_damaged_snapshot_commits_nothing(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    source = tmp_path / "damaged.sqlite"
    make_damaged_sqlite(source)
    with pytest.raises(
        MigrationError, match=r"(?s)integrity check failed: .*2nd reference to page.*items_label"
    ):
        run_migration(pg_url, {source: "s"})
    # The copy started while the check ran (the table was created), and committed nothing.
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM s.items").fetchone() == (0,)


def test_rows_are_read_from_their_tables_never_through_an_index(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    source = tmp_path / "swapped.sqlite"
    make_swapped_key_indexes(source, children=False)
    with sqlite3.connect(source) as sqlite:
        # What the damage is: SQLite's own answers through the index of `names` are wrong.
        by_key = sqlite.execute("SELECT n FROM names ORDER BY name").fetchall()
        assert by_key == [(i,) for i in reversed(range(3000))]
        assert sqlite.execute("SELECT n FROM names WHERE name = 'n00005'").fetchall() == []
        assert sqlite.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        assert "missing from index" in sqlite.execute("PRAGMA integrity_check").fetchone()[0]
    code, report = run_migration(pg_url, {source: "s"})
    assert code == 0, report
    tables = {t["table"]: t for t in report["sources"][0]["tables"]}
    assert {name: t["rows_source"] for name, t in tables.items()} == {"names": 3000, "spare": 3000}
    assert {name: t["rows_written"] for name, t in tables.items()} == {"names": 3000, "spare": 3000}
    assert all(t["verified"] for t in tables.values()), report
    with psycopg.connect(pg_url) as conn:
        names = conn.execute("SELECT name, n FROM s.names ORDER BY name").fetchall()
    assert names == [(f"n{i:05d}", i) for i in range(3000)]


def test_a_damaged_parent_key_index_fails_the_check(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """foreign_key_check finds parent keys through their index: the tables it relies on get the
    full integrity_check, else 3,000 valid tags would be refused as orphans."""
    source = tmp_path / "swapped.sqlite"
    make_swapped_key_indexes(source, children=True)
    with sqlite3.connect(source) as sqlite:
        assert len(sqlite.execute("PRAGMA foreign_key_check").fetchall()) == 3000
    with pytest.raises(
        MigrationError, match=r"integrity check failed: .*missing from index sqlite_autoindex_names"
    ):
        run_migration(pg_url, {source: "s"})
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM s.tags").fetchone() == (0,)


def test_the_gate_holds_commits_until_the_verdict(tmp_path: Path) -> None:
    snapshot = tmp_path / "s.sqlite"
    integrity_gate.clear(snapshot)
    passed: list[float] = []
    waiter = threading.Thread(
        target=lambda: (integrity_gate.wait_passed(snapshot), passed.append(time.monotonic()))
    )
    waiter.start()
    time.sleep(0.2)
    assert not passed, "a chunk committed before the check ended"
    recorded = time.monotonic()
    integrity_gate.record(snapshot, [])
    waiter.join(timeout=5)
    assert passed
    assert passed[0] >= recorded
    integrity_gate.clear(snapshot)
    integrity_gate.record(snapshot, ["row 1 missing from index items_label"])
    with pytest.raises(integrity_gate.IntegrityFailed, match="row 1 missing from index"):
        integrity_gate.wait_passed(snapshot)


def test_a_check_that_cannot_run_fails_the_gate(tmp_path: Path) -> None:
    snapshot = tmp_path / "missing.sqlite"
    integrity_gate.clear(snapshot)
    [problem] = integrity_gate.check(snapshot)
    assert re.search(r"could not run: .*failed to open .*missing\.sqlite", problem)
    with pytest.raises(integrity_gate.IntegrityFailed, match="could not run"):
        integrity_gate.wait_passed(snapshot)


def test_each_chunk_reads_its_columns_in_the_classes_it_holds(
    pg_url: str, run_migration: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of one table whose columns hold different storage classes (texts only, texts and
    reals and integers, NULLs only, integers only): each chunk's census decides what it reads,
    and every value arrives as the rules make it."""
    source = tmp_path / "mixed.sqlite"
    quarter = ROWS // 4

    def amount(i: int) -> Any:
        return (
            (f"{i}.50", None, None, i)[(i - 1) // quarter]
            if (i - 1) // quarter != 1
            else (f"{i}.25", i / 4, i)[i % 3]
        )

    def flag(i: int) -> Any:
        return (i % 2, ("true", "false")[i % 2], None, i % 2)[(i - 1) // quarter]

    rows = [(i, amount(i), flag(i)) for i in range(1, ROWS + 1)]
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, amount DECIMAL(10,2), ok BOOLEAN)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    conn.close()
    table = _migrated_unprofiled(pg_url, run_migration, source, monkeypatch)
    assert _types(table) == {"id": "bigint", "amount": "numeric(10,2)", "ok": "boolean"}
    with psycopg.connect(pg_url) as conn:
        got = conn.execute("SELECT id, amount::text, ok FROM s.t ORDER BY id").fetchall()
    expected = [
        (
            i,
            None if a is None else f"{float(a):.2f}",
            None if f is None else f in (1, "true"),
        )
        for i, a, f in rows
    ]
    assert got == expected
