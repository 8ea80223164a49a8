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
from runtime.migrate.engine import verify_only
from runtime.migrate.run import Options
from runtime.migrate.snapshot import Source

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
    assert main(["migrate", "--source", f"{first}=s3", "--source", f"{second}=s3", *work]) == 78


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
    state.write_text(json.dumps({**json.loads(state.read_text()), "tables": {"r.a": "copied"}}))
    code, report = run_migration(pg_url, {source: "r"}, resume=True)
    assert code == 0, report
    assert _rows(pg_url, "SELECT count(*) FROM r.a") == [(2,)]


def _stop_after_first_table(work: Path, label: str) -> None:
    """The state a run killed after its first table leaves: `label` done, the others not."""
    state = work / "state.json"
    recorded = json.loads(state.read_text())
    state.write_text(json.dumps({**recorded, "tables": {label: "constrained"}}))


def _two_tables(path: Path) -> Path:
    return _file(
        path,
        "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);"
        "CREATE TABLE b (id INTEGER PRIMARY KEY, v TEXT);"
        "INSERT INTO a VALUES (1, 'a1'), (2, 'a2');"
        "INSERT INTO b VALUES (1, 'b1'), (2, 'b2');",
    )


def test_resume_refuses_a_source_changed_since_its_snapshot(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """The operator used the legacy file between the stopped run and `--resume`: the resumed
    run copied the stale snapshot, verified it against itself and exited 0."""
    source = _two_tables(tmp_path / "chg.sqlite")
    assert run_migration(pg_url, {source: "chg"})[0] == 0
    _stop_after_first_table(tmp_path / "work", "chg.b")
    with sqlite3.connect(source) as conn:
        conn.execute("INSERT INTO a VALUES (3, 'written after the snapshot')")
    conn.close()

    with pytest.raises(MigrationError, match=r"chg\.sqlite changed since .* without --resume"):
        run_migration(pg_url, {source: "chg"}, resume=True)

    # Nothing was copied from the stale snapshot; a run without --resume takes the file as it is.
    assert _rows(pg_url, "SELECT count(*) FROM chg.a") == [(2,)]
    code, report = run_migration(pg_url, {source: "chg"}, truncate=True)
    assert (code, report["verified"]) == (0, True)
    assert _rows(pg_url, "SELECT count(*) FROM chg.a") == [(3,)]


def test_resume_sees_a_change_still_in_the_write_ahead_log(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A WAL source changed by a connection still open: the main file is as it was (size, time,
    change counter), the change is in the -wal only. Refused with the CLI's operator error."""
    source = _two_tables(tmp_path / "wal.sqlite")
    with sqlite3.connect(source) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    work = tmp_path / "work"
    argv = ["migrate", "--source", f"{source}=walsrc", "--target", pg_url, "--work-dir", str(work)]
    assert main(argv) == 0
    _stop_after_first_table(work, "walsrc.a")
    before = (source.stat().st_size, source.stat().st_mtime_ns)
    writer = sqlite3.connect(source)
    try:
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("UPDATE b SET v = 'changed in the wal' WHERE id = 2")
        writer.commit()
        assert (source.stat().st_size, source.stat().st_mtime_ns) == before
        capsys.readouterr()
        assert main([*argv, "--resume"]) == 2
    finally:
        writer.close()
    assert "changed since" in capsys.readouterr().err
    assert _rows(pg_url, "SELECT v FROM walsrc.b ORDER BY id") == [("b1",), ("b2",)]


def test_resume_of_an_unchanged_source_keeps_its_snapshot(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """What `--resume` records of the source does not change by being read (the snapshot's
    read-only connection leaves an empty -wal beside a WAL source)."""
    source = _two_tables(tmp_path / "same.sqlite")
    with sqlite3.connect(source) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    assert run_migration(pg_url, {source: "same"})[0] == 0
    _stop_after_first_table(tmp_path / "work", "same.a")
    code, report = run_migration(pg_url, {source: "same"}, resume=True)
    tables = {t["table"]: t for t in report["sources"][0]["tables"]}
    assert (code, tables["a"]["resumed"], tables["b"]["resumed"]) == (0, True, False)


def test_resume_without_a_record_of_the_source_is_refused(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """A snapshot no state file vouches for (a dry run's, or a run stopped before it recorded
    its sources) may be of any age: not resumed from."""
    source = _two_tables(tmp_path / "norec.sqlite")
    assert run_migration(pg_url, {source: "norec"}, dry_run=True)[0] == 0
    assert (tmp_path / "work/snapshots/norec.sqlite").exists()
    with pytest.raises(MigrationError, match=r"has no record of .*norec\.sqlite"):
        run_migration(pg_url, {source: "norec"}, resume=True)


@pytest.mark.parametrize(
    "key", ["id INTEGER PRIMARY KEY", "id TEXT PRIMARY KEY"], ids=["ordered", "multiset"]
)
def test_a_blob_that_differs_is_named_by_its_column(
    pg_url: str, run_migration: Any, tmp_path: Path, key: str
) -> None:
    """One blob changed in the target: verification said only "content hash differs"; a text
    column is named by its aggregates (min, max), a bytea column had none but its count."""
    source = _file(
        tmp_path / "blob.sqlite",
        f"CREATE TABLE b ({key}, name TEXT, data BLOB);"
        + "".join(f"INSERT INTO b VALUES ({i}, 'n{i}', x'{i:02x}00{i:02x}');" for i in range(1, 6))
        + "INSERT INTO b VALUES (6, 'n6', x''), (7, 'n7', NULL);",
    )
    assert run_migration(pg_url, {source: "blob"})[0] == 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE blob.b SET data = '\\x030103'::bytea WHERE name = 'n3'")
    options = Options(
        sources=[Source("blob", source, "blob")],
        target_url=pg_url,
        work_dir=tmp_path / "verify",
        progress=False,
    )
    code, report = verify_only(options)
    (table,) = report["sources"][0]["tables"]
    assert code == 1
    assert "columns that differ: data" in table["verification_problems"], table
    assert not [p for p in table["verification_problems"] if p.startswith("name")]

    # The blob back, a text changed: the blobs (an empty one, a NULL) checksum alike on both
    # sides, so no bytea column is named.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE blob.b SET data = '\\x030003'::bytea WHERE name = 'n3'")
        conn.execute("UPDATE blob.b SET name = 'n3' || 'x' WHERE name = 'n3'")
    code, report = verify_only(options)
    (table,) = report["sources"][0]["tables"]
    assert code == 1
    assert "content hash differs" in table["verification_problems"]
    assert not [p for p in table["verification_problems"] if "data" in p], table


def test_a_row_rejected_for_a_null_key_is_named_by_its_rowid(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """A NULL in a TEXT (or composite) primary key: the reject record's key was `{"code":
    null}`, which names no row. The rowid does, under the name SQLite reads it by (a column
    named rowid takes that name: then `_rowid_`)."""
    source = _file(
        tmp_path / "nk.sqlite",
        "CREATE TABLE one (code TEXT PRIMARY KEY, v TEXT);"
        "INSERT INTO one VALUES ('a', 'x'), (NULL, 'lost'), ('b', 'y');"
        "CREATE TABLE two (a TEXT, b INTEGER, rowid TEXT, PRIMARY KEY (a, b));"
        "INSERT INTO two VALUES ('k', 1, 'r1'), ('k', NULL, 'r2'), (NULL, 3, 'r3');",
    )
    code, report = run_migration(pg_url, {source: "nk"})
    assert code == 1
    assert {t["table"]: t["rejects"] for t in report["sources"][0]["tables"]} == {
        "one": {"null_in_primary_key": 1},
        "two": {"null_in_primary_key": 2},
    }
    rejects = [
        json.loads(line) for line in (tmp_path / "work/rejects.jsonl").read_text().splitlines()
    ]
    keys = [(r["table"], r["key"]) for r in rejects if r["problem"] == "null_in_primary_key"]
    assert sorted(keys, key=str) == [
        ("one", {"code": None, "rowid": 2}),
        ("two", {"a": "k", "b": None, "_rowid_": 2}),
        ("two", {"a": None, "b": 3, "_rowid_": 3}),
    ]
    with sqlite3.connect(source) as conn:  # what the operator looks up with the record
        assert conn.execute("SELECT v FROM one WHERE rowid = 2").fetchone() == ("lost",)
        assert conn.execute("SELECT rowid FROM two WHERE _rowid_ = 3").fetchone() == ("r3",)
    conn.close()


def test_a_null_in_a_without_rowid_key_stops_at_the_integrity_gate(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    """A WITHOUT ROWID table has no rowid to name a row by, but SQLite keeps NULL out of its
    primary key, and a file forged to hold one (its schema rewritten) fails the integrity
    check: no row of such a table is ever rejected for a NULL key, so its key's values always
    name it."""
    source = _file(
        tmp_path / "wr.sqlite",
        "CREATE TABLE w (a INTEGER, b TEXT, PRIMARY KEY (a)) WITHOUT ROWID;"
        "INSERT INTO w VALUES (1, NULL), (2, 'x');",
    )
    with sqlite3.connect(source) as conn:
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute(
            "UPDATE sqlite_master SET sql = 'CREATE TABLE w (a INTEGER, c TEXT, b TEXT, "
            "PRIMARY KEY (a, c)) WITHOUT ROWID' WHERE name = 'w'"
        )
    conn.close()
    with pytest.raises(MigrationError, match=r"integrity check failed: NULL value in w\.c"):
        run_migration(pg_url, {source: "wr"})


def test_a_zero_byte_source_is_refused(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path that names an empty file (a typo, a file `touch` or a failed copy made) migrated
    as an empty database, exit 0: SQLite reads a 0-byte file as one."""
    source = tmp_path / "typo.sqlite"
    source.touch()
    work = ["--target", pg_url, "--work-dir", str(tmp_path / "work")]
    for action in ("run", "verify"):
        capsys.readouterr()
        assert main(["migrate", action, "--source", f"{source}=typo", *work]) == 2
        err = capsys.readouterr().err
        assert f"source database {source} is empty (0 bytes)" in err, err
    assert _rows(pg_url, "SELECT to_regnamespace('typo')::text") == [(None,)]


def _no_tables(path: Path) -> Path:
    """A valid SQLite file without a table: what opening a path, or a table dropped, leaves."""
    return _file(path, "CREATE TABLE gone (a INTEGER); DROP TABLE gone; PRAGMA user_version = 3;")


def test_a_source_without_tables_is_refused_where_it_is_the_schema(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Infer mode creates the target from the file: a file holding no table (the wrong one)
    migrated nothing and said nothing, exit 0."""
    source = _no_tables(tmp_path / "wrong.sqlite")
    assert source.stat().st_size > 0
    argv = ["migrate", "--source", f"{source}=wrong", "--target", pg_url]
    assert main([*argv, "--work-dir", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err
    assert f"{source} holds no tables" in err, err


def test_a_source_without_tables_is_a_warning_where_the_target_has_the_schema(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Existing mode copies into tables `domos db upgrade` made, and the SQLite backend creates
    the file of every logical database it opens: one left without tables is nothing to copy,
    not an error - but the summary and the report say so."""
    source = _no_tables(tmp_path / "unused.sqlite")
    report_path = tmp_path / "report.json"
    argv = ["migrate", "--source", f"{source}=unused", "--schema", "existing"]
    argv += ["--target", pg_url, "--work-dir", str(tmp_path / "work"), "--report", str(report_path)]
    capsys.readouterr()
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    expected = [f"{source} holds no tables: nothing was copied from it"]
    assert summary["warnings"] == expected
    report = json.loads(report_path.read_text())
    assert report["warnings"] == expected
    assert report["sources"][0]["warnings"] == expected
