"""SQLite backups: online copies that are checked, retention, restore."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest

from runtime.backup.sqlite import BackupError, apply_retention, backup_sqlite, restore_sqlite
from tests.fixtures.damaged_sqlite import make_damaged_sqlite


def _db(path, value):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        conn.execute("DELETE FROM t")
        conn.execute("INSERT INTO t VALUES (?)", (value,))


def test_backup_then_restore_round_trip(tmp_path):
    live = tmp_path / "data.db"
    _db(live, "before")
    copies = backup_sqlite(
        {"main": live, "absent": tmp_path / "nope.db"}, tmp_path / "backup", today=date(2026, 1, 2)
    )
    assert [c.path for c in copies] == [tmp_path / "backup/sqlite/2026-01-02/main.sqlite"]

    _db(live, "after")
    restored = restore_sqlite(tmp_path / "backup/sqlite/2026-01-02", {"main": live})
    assert restored == [live]
    with sqlite3.connect(live) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("before",)]
    with sqlite3.connect(str(live) + ".before-restore") as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("after",)]


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
        backup_sqlite({"main": damaged}, tmp_path / "backup", today=date(2026, 1, 2))
    assert not list(day.glob("*")), "neither the copy nor its partial file is left"
