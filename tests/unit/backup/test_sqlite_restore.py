"""A SQLite restore that cannot finish changes nothing; one run's copies are all or none."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

import runtime.backup.sqlite_restore as sqlite_restore
from runtime.backup.sqlite import BackupError, backup_set, backup_sqlite
from runtime.backup.sqlite_restore import open_elsewhere, restore_sqlite
from tests.fixtures.damaged_sqlite import make_damaged_sqlite

RUN_AT = datetime(2026, 1, 2, 6, 0, 0)


def _db(path: Path, value: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        conn.execute("DELETE FROM t")
        conn.execute("INSERT INTO t VALUES (?)", (value,))
    conn.close()


def _value(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT v FROM t").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def three(tmp_path: Path) -> dict[str, Path]:
    """Three live databases backed up at RUN_AT ("backed up"), then changed ("current")."""
    live = {name: tmp_path / "data" / f"{name}.db" for name in ("main", "advert", "useful")}
    for path in live.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        _db(path, "backed up")
    backup_sqlite(live, tmp_path / "backup", now=RUN_AT)
    for path in live.values():
        _db(path, "current")
    return live


def _run(tmp_path: Path) -> Path:
    return tmp_path / "backup/sqlite/2026-01-02/060000"


def _untouched(live: dict[str, Path]) -> None:
    assert {name: _value(path) for name, path in live.items()} == dict.fromkeys(live, "current")
    leftovers = [p.name for p in live["main"].parent.iterdir() if "restor" in p.name]
    assert leftovers == [], "no staged or kept files from a restore that did not happen"


def test_a_run_records_each_copy_and_restores_them_all(tmp_path, three):
    manifest = json.loads((_run(tmp_path) / "manifest.json").read_text())
    assert sorted(manifest["copies"]) == ["advert", "main", "useful"]
    assert restore_sqlite(backup_set(tmp_path / "backup/sqlite"), three) == list(three.values())
    assert {_value(path) for path in three.values()} == {"backed up"}


def test_a_damaged_copy_found_before_any_live_file_changes(tmp_path, three):
    """The restore used to stop at the damaged copy with the databases before it restored."""
    make_damaged_sqlite(_run(tmp_path) / "useful.sqlite", rows=500)
    with pytest.raises(BackupError, match=r"useful\.sqlite changed since it was backed up"):
        restore_sqlite(_run(tmp_path), three)
    _untouched(three)


def test_a_copy_damaged_in_a_run_without_manifest_fails_its_integrity_check(tmp_path, three):
    (_run(tmp_path) / "manifest.json").unlink()  # a run made before manifests existed
    make_damaged_sqlite(_run(tmp_path) / "useful.sqlite", rows=500)
    with pytest.raises(BackupError, match=r"useful\.sqlite .*nothing was restored"):
        restore_sqlite(_run(tmp_path), three)
    _untouched(three)


def test_a_copy_lost_from_the_run_is_refused(tmp_path, three):
    (_run(tmp_path) / "advert.sqlite").unlink()
    with pytest.raises(BackupError, match="lost copies its manifest lists: advert"):
        restore_sqlite(_run(tmp_path), three)
    _untouched(three)


def test_space_running_out_while_staging_changes_nothing(tmp_path, three, monkeypatch):
    real_copy = sqlite_restore.online_copy
    calls = []

    def copy_until_full(source: Path, destination: Path) -> None:
        calls.append(destination)
        if len(calls) == 4:  # main staged and kept, advert's staging runs out of space
            raise BackupError(f"cannot copy {source}: database or disk is full")
        real_copy(source, destination)

    monkeypatch.setattr(sqlite_restore, "online_copy", copy_until_full)
    with pytest.raises(BackupError, match="disk is full"):
        restore_sqlite(_run(tmp_path), three)
    kept = [p for p in three["main"].parent.iterdir() if "before-restore" in p.name]
    for path in kept:  # what was there before is kept; only a restore that happened needs it
        path.unlink()
    _untouched(three)


def test_a_run_cut_short_is_removed_and_never_chosen(tmp_path, three, monkeypatch):
    root = tmp_path / "backup"
    real_copy = sqlite_restore.online_copy

    def full_at_second(source: Path, destination: Path) -> None:
        if destination.name == "advert.sqlite":
            raise BackupError(f"cannot copy {source}: database or disk is full")
        real_copy(source, destination)

    monkeypatch.setattr("runtime.backup.sqlite.online_copy", full_at_second)
    with pytest.raises(BackupError, match="disk is full"):
        backup_sqlite(three, root, now=datetime(2026, 1, 2, 12, 0, 0))
    assert sorted(p.name for p in (root / "sqlite/2026-01-02").iterdir()) == ["060000"]


def test_a_run_killed_midway_is_never_chosen(tmp_path, three):
    """A killed schedule leaves HHMMSS.partial/ holding some copies: they used to be restored
    as the newest run, the databases it had not reached yet left as they were."""
    root = tmp_path / "backup/sqlite"
    killed = root / "2026-01-03/000000.partial"
    killed.mkdir(parents=True)
    shutil.copy(_run(tmp_path) / "main.sqlite", killed / "main.sqlite")
    assert backup_set(root) == _run(tmp_path), "the newest finished run, of an earlier day"
    with pytest.raises(BackupError, match="cut short before it finished"):
        backup_set(root, "2026-01-03", "000000")
    with pytest.raises(BackupError, match="no finished backup run in"):
        backup_set(root, "2026-01-03")


def test_refused_while_a_program_has_a_live_file_open(tmp_path, three):
    """Restoring under a running program: it kept writing into the file it had open (the
    restore replaced the name, not the program's open file) or read a torn mix."""
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('SELECT * FROM t').fetchall(); print('open', flush=True); sys.stdin.read()"
    )
    program = subprocess.Popen(
        [sys.executable, "-c", script, str(three["advert"])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert program.stdout is not None
        assert program.stdout.readline() == "open\n"
        assert open_elsewhere(three["advert"])
        assert not open_elsewhere(three["main"])
        with pytest.raises(BackupError, match=r"advert\.db is open in another process"):
            restore_sqlite(_run(tmp_path), three)
        _untouched(three)
    finally:
        program.communicate("")
    assert not open_elsewhere(three["advert"])
    restore_sqlite(_run(tmp_path), three)
    assert _value(three["advert"]) == "backed up"
