"""Legacy files a tester built to break `domos migrate` from outside (session 15), each of which
lost data, verified a wrong copy or crashed with a traceback before its fix."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime.cli import build_parser, main
from runtime.errors import MigrationError

pytestmark = pytest.mark.postgres


def _file(path: Path, script: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(script)
    conn.close()
    return path


def _rows(pg_url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(sql).fetchall()


def test_two_files_of_one_name_go_each_into_its_schema(pg_url: str, tmp_path: Path) -> None:
    """a/data.sqlite and b/data.sqlite shared one snapshot: b's rows went into both schemas and
    verification passed."""
    first = _file(
        tmp_path / "a/data.sqlite",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);INSERT INTO t VALUES (1, 'from a');",
    )
    second = _file(
        tmp_path / "b/data.sqlite",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);INSERT INTO t VALUES (1, 'from b');",
    )
    work = ["--target", pg_url, "--work-dir", str(tmp_path / "work")]
    code = main(["migrate", "--source", f"{first}=s1", "--source", f"{second}=s2", *work])
    assert code == 0
    assert _rows(pg_url, "SELECT v FROM s1.t UNION ALL SELECT v FROM s2.t") == [
        ("from a",),
        ("from b",),
    ]
    # Into one schema they would collide: refused before anything is read.
    assert main(["migrate", "--source", f"{first}=s3", "--source", f"{second}=s3", *work]) == 2


def test_options_before_the_action_are_kept(tmp_path: Path) -> None:
    """`migrate --dry-run run ...` wrote the tables: the action's own defaults replaced the
    options given before it."""
    argv = ["migrate", "--dry-run", "--source", "f.sqlite=s", "--target", "postgresql://x", "run"]
    args = build_parser(argv).parse_args(argv)
    assert (args.dry_run, args.source, args.target) == (True, ["f.sqlite=s"], "postgresql://x")
    argv = ["migrate", "--source", "f.sqlite=s", "verify", "--jobs", "1"]
    args = build_parser(argv).parse_args(argv)
    assert (args.source, args.jobs, args.handler.__name__) == (["f.sqlite=s"], 1, "_verify")


def test_a_foreign_key_of_another_type_is_named_not_a_crash(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """A TEXT child of an INTEGER parent (SQLite compares them by value): PostgreSQL refuses the
    key (DatatypeMismatch), which crashed the run after the copy."""
    source = _file(
        tmp_path / "fk.sqlite",
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "INSERT INTO parent VALUES (1), (2);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY, pid TEXT REFERENCES parent (id));"
        "INSERT INTO child VALUES (1, '1'), (2, '2');",
    )
    code, report = run_migration(pg_url, {source: "fk"})
    [child] = [t for t in report["sources"][0]["tables"] if t["table"] == "child"]
    assert child["verified"] is True
    assert any("types differ" in p for p in child["constraint_problems"])
    assert code == 1
    assert _rows(pg_url, "SELECT id, pid FROM fk.child ORDER BY id") == [(1, "1"), (2, "2")]


@pytest.mark.parametrize(
    "clause",
    [
        "WITHOUT ROWID, STRICT",
        "STRICT, WITHOUT ROWID",
        "WITHOUT ROWID -- c",
        "WITHOUT ROWID /* c */",
    ],
)
def test_without_rowid_is_seen_whatever_follows_it(
    pg_url: str, run_migration: Any, tmp_path: Path, clause: str
) -> None:
    """Only `... WITHOUT ROWID` at the very end was recognised; else "no such column: rowid"."""
    source = _file(
        tmp_path / "w.sqlite",
        f"CREATE TABLE w (k TEXT PRIMARY KEY, v INTEGER) {clause}\n;\n"
        "INSERT INTO w VALUES ('a', 1), ('b', 2);",
    )
    code, report = run_migration(pg_url, {source: "w"})
    assert code == 0, report
    assert _rows(pg_url, "SELECT k, v FROM w.w ORDER BY k") == [("a", 1), ("b", 2)]


def test_a_column_named_like_a_clause_is_not_the_clause(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """`collated_at` is no COLLATE clause: the texts keep their byte order (collation "C")."""
    source = _file(
        tmp_path / "c.sqlite",
        "CREATE TABLE c (id INTEGER PRIMARY KEY, name TEXT, collated_at TEXT);"
        "INSERT INTO c VALUES (1, 'b', 'x'), (2, 'B', 'y');",
    )
    assert run_migration(pg_url, {source: "c"})[0] == 0
    [(collation,)] = _rows(
        pg_url,
        "SELECT collation_name FROM information_schema.columns"
        " WHERE table_schema = 'c' AND table_name = 'c' AND column_name = 'name'",
    )
    assert collation == "C"


def test_a_damaged_file_is_named_by_its_integrity_check(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """A page broken in the middle failed the plan's first read with a traceback."""
    source = _file(
        tmp_path / "dmg.sqlite",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
        + "".join(f"INSERT INTO t VALUES ({i}, '{'x' * 200}');" for i in range(1, 2001)),
    )
    data = bytearray(source.read_bytes())
    page = 4096
    for offset in range(3, 12):  # the b-tree page header of a page in the middle
        data[page * 20 + offset] ^= 0xFF
    source.write_bytes(bytes(data))
    with pytest.raises(MigrationError, match="integrity check failed"):
        run_migration(pg_url, {source: "dmg"})


def test_a_resumed_run_keeps_keys_the_stopped_one_built(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """Stopped after a table's keys were built but before its state said constrained: the
    resumed run added the primary key again and failed, every time."""
    source = _file(
        tmp_path / "r.sqlite",
        "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT UNIQUE);"
        "INSERT INTO a VALUES (1, 'x'), (2, 'y');",
    )
    assert run_migration(pg_url, {source: "r"})[0] == 0
    state = tmp_path / "work/state.json"
    state.write_text(json.dumps({"tables": {"r.a": "copied"}}))
    code, report = run_migration(pg_url, {source: "r"}, resume=True)
    assert code == 0, report
    assert _rows(pg_url, "SELECT count(*) FROM r.a") == [(2,)]
