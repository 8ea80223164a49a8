"""SQLite backups: online copies that are checked, retention, restore."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime

import pytest

from runtime.backup.sqlite import (
    BackupError,
    apply_retention,
    backup_set,
    backup_sqlite,
)
from runtime.backup.sqlite_restore import restore_sqlite
from tests.fixtures.damaged_sqlite import make_damaged_sqlite


def _db(path, value):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        conn.execute("DELETE FROM t")
        conn.execute("INSERT INTO t VALUES (?)", (value,))


def _value(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT v FROM t").fetchone()[0]


def test_backup_then_restore_round_trip(tmp_path):
    live = tmp_path / "data.db"
    _db(live, "before")
    copies = backup_sqlite(
        {"main": live, "absent": tmp_path / "nope.db"},
        tmp_path / "backup",
        now=datetime(2026, 1, 2, 6, 0, 0),
    )
    assert [c.path for c in copies] == [tmp_path / "backup/sqlite/2026-01-02/060000/main.sqlite"]

    _db(live, "after")
    run = backup_set(tmp_path / "backup/sqlite")
    assert run == tmp_path / "backup/sqlite/2026-01-02/060000"
    restored = restore_sqlite(run, {"main": live})
    assert restored == [live]
    with sqlite3.connect(live) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("before",)]
    [kept] = tmp_path.glob("data.db.before-restore-*")
    with sqlite3.connect(kept) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("after",)]

    # Restored again: the first restore's copy of what was there before it stays.
    restore_sqlite(run, {"main": live})
    assert len(list(tmp_path.glob("data.db.before-restore-*"))) == 2
    assert _value(kept) == "after"


def test_nothing_to_back_up_is_an_error(tmp_path):
    with pytest.raises(BackupError, match="nothing was backed up"):
        backup_sqlite({"main": tmp_path / "missing.db"}, tmp_path / "backup")


def test_retention_by_days_and_count(tmp_path):
    root = tmp_path / "sqlite"
    for day in ("2026-01-01", "2026-01-05", "2026-01-09", "2026-01-10"):
        (root / day).mkdir(parents=True)
    (root / "not-a-day").mkdir()
    removed = apply_retention(root, keep_days=7, keep_count=None, today=date(2026, 1, 10))
    assert [p.name for p in removed] == ["2026-01-01"]
    removed = apply_retention(root, keep_days=None, keep_count=2, today=date(2026, 1, 10))
    assert [p.name for p in removed] == ["2026-01-05"]
    assert sorted(p.name for p in root.iterdir()) == ["2026-01-09", "2026-01-10", "not-a-day"]


def test_a_copy_that_fails_integrity_check_is_not_kept(tmp_path):
    damaged = tmp_path / "damaged.db"
    make_damaged_sqlite(damaged, rows=500)
    day = tmp_path / "backup/sqlite/2026-01-02"
    with pytest.raises(BackupError, match="failed integrity_check"):
        backup_sqlite({"main": damaged}, tmp_path / "backup", now=datetime(2026, 1, 2, 6, 0))
    assert not list(day.rglob("*.sqlite*")), "neither the copy nor its partial file is left"


def test_a_later_run_of_the_day_keeps_the_earlier_one(tmp_path):
    """The schedule runs every 6 hours: a mistake made at 10:00 and noticed at 15:00 must
    still find the 06:00 copy after the 12:00 run."""
    live = tmp_path / "data.db"
    root = tmp_path / "backup"
    _db(live, "good")
    backup_sqlite({"main": live}, root, now=datetime(2026, 1, 2, 6, 0, 0))
    _db(live, "deleted by mistake")
    backup_sqlite({"main": live}, root, now=datetime(2026, 1, 2, 12, 0, 0))
    backup_sqlite({"main": live}, root, now=datetime(2026, 1, 2, 12, 0, 0))  # the same second

    runs = sorted(p.name for p in (root / "sqlite/2026-01-02").iterdir())
    assert runs == ["060000", "120000", "120000-1"]
    assert _value(root / "sqlite/2026-01-02/060000/main.sqlite") == "good"
    assert backup_set(root / "sqlite").name == "120000-1"  # the newest by default
    restore_sqlite(backup_set(root / "sqlite", "2026-01-02", "060000"), {"main": live})
    assert _value(live) == "good"
    with pytest.raises(BackupError, match=r"no run 090000 .*runs: 060000, 120000, 120000-1"):
        backup_set(root / "sqlite", "2026-01-02", "090000")
    with pytest.raises(BackupError, match="no backups of 2026-01-03"):
        backup_set(root / "sqlite", "2026-01-03")


def test_a_day_in_the_layout_before_runs_is_still_restored(tmp_path):
    """Backups made before one directory per run hold the copies in the day directory."""
    live = tmp_path / "data.db"
    _db(live, "old layout")
    day = tmp_path / "backup/sqlite/2026-01-01"
    day.mkdir(parents=True)
    with sqlite3.connect(day / "main.sqlite") as copy, sqlite3.connect(live) as source:
        source.backup(copy)
    _db(live, "now")
    assert backup_set(tmp_path / "backup/sqlite") == day
    restore_sqlite(day, {"main": live})
    assert _value(live) == "old layout"
