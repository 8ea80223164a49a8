"""PostgreSQL backups through the `domos` command: pg_dump -Fc, then restore."""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from runtime.cli import main

pytestmark = pytest.mark.postgres


def test_backup_and_restore_postgres(pg_url, tmp_path):
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('original')")

    assert main(["backup", "postgres", "--target", pg_url, "--backup-dir", str(tmp_path)]) == 0
    dumps = list((tmp_path / "postgres").glob("*/*.dump"))
    assert len(dumps) == 1

    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE kept SET v = 'damaged'")
    assert main(["restore", "postgres", "--target", pg_url, "--backup-dir", str(tmp_path)]) == 0
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("original",)]


def test_the_password_reaches_pg_dump_and_pg_restore_through_the_environment(
    pg_url, tmp_path, monkeypatch
):
    """argv is world-readable (`ps`); the tools must get the password another way."""
    from runtime.backup.postgres import backup_postgres, restore_postgres

    password = "s3cret-never-in-argv"
    seen = tmp_path / "seen"
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        real = shutil.which(tool)
        assert real, tool
        wrapper = wrappers / tool
        # Records what the real tool is given, then runs it.
        wrapper.write_text(
            f'#!/bin/sh\nprintf "%s|%s\\n" "$*" "$PGPASSWORD" >> {seen}\nexec {real} "$@"\n'
        )
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrappers}:{os.environ['PATH']}")
    # The test server trusts every connection: the password is carried, not checked.
    parts = urlsplit(pg_url)
    url = urlunsplit(
        parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}")
    )

    dump = backup_postgres(url, tmp_path / "backups")
    restore_postgres(url, dump)
    calls = seen.read_text().splitlines()
    # pg_dump, pg_restore --list twice (the backup's check, the restore's origin; no
    # connection), pg_restore
    assert len(calls) == 4
    for call in calls:
        argv, _, env_password = call.rpartition("|")
        assert password not in argv
        if "--dbname" in argv:
            assert env_password == password
    assert sum("--dbname" in call for call in calls) == 2


def test_keep_zero_is_refused_before_anything_is_deleted(tmp_path, capsys):
    day = tmp_path / "postgres" / "2026-01-01"
    day.mkdir(parents=True)
    with pytest.raises(SystemExit) as exited:
        main(["backup", "postgres", "--keep", "0", "--backup-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
    assert day.exists()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_negative_keep_days_is_refused_before_anything_is_deleted(tmp_path, capsys, kind):
    """Found from outside: --keep-days -1 deleted every backup, the one just made too."""
    day = tmp_path / kind / "2026-01-01"
    day.mkdir(parents=True)
    with pytest.raises(SystemExit) as exited:
        main(["backup", kind, "--keep-days", "-1", "--backup-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert "must be 0 or more" in capsys.readouterr().err
    assert day.exists()


def test_a_backup_directory_that_cannot_be_written_is_a_clear_error(
    pg_url, tmp_path, capsys, monkeypatch
):
    """Found from outside: a read-only backup volume gave an OSError traceback (exit 1)."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the backup directory should be")
    monkeypatch.setenv("DOMOS_DATA_DIR", str(tmp_path / "data"))
    assert main(["backup", "postgres", "--target", pg_url, "--backup-dir", str(blocked)]) == 2
    assert "cannot write backups under" in capsys.readouterr().err


def test_a_dump_of_another_database_is_refused_unless_asked_for(pg_url, tmp_path, make_pg_database):
    """Found from outside: `domos restore postgres --dump <staging's dump>` replaced the
    production database's tables with staging's, exit 0."""
    staging = make_pg_database()
    with psycopg.connect(staging, autocommit=True) as conn:
        conn.execute("CREATE TABLE marker (v text)")
        conn.execute("INSERT INTO marker VALUES ('staging')")
    assert main(["backup", "postgres", "--target", staging, "--backup-dir", str(tmp_path)]) == 0
    [dump] = (tmp_path / "postgres").glob("*/*.dump")
    restore = ["restore", "postgres", "--target", pg_url, "--dump", str(dump)]
    assert main(restore) == 2
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('marker')").fetchone() == (None,)
    assert main([*restore, "--from-other-database"]) == 0
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT v FROM marker").fetchall() == [("staging",)]


def test_a_failed_dump_leaves_no_partial_file(tmp_path):
    """pg_dump stopped halfway (here: no such database) left <db>-HHMMSS.dump.partial behind,
    taking the space the next dump needs, on every failed run of the schedule."""
    from runtime.backup.postgres import backup_postgres
    from runtime.backup.sqlite import BackupError

    with pytest.raises(BackupError, match=r"pg_dump of .* failed"):
        backup_postgres("postgresql://postgres@127.0.0.1:5432/no_such_db_here", tmp_path)
    assert [p.name for p in (tmp_path / "postgres").rglob("*") if p.is_file()] == []


def test_two_dumps_in_one_second_are_both_kept(pg_url, tmp_path):
    """The second dump of a second wrote over the first one's file."""
    from datetime import datetime

    from runtime.backup.postgres import backup_postgres, latest_dump

    at = datetime(2026, 12, 5, 6, 0, 0)
    first = backup_postgres(pg_url, tmp_path, now=at)
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE later (v text)")
    second = backup_postgres(pg_url, tmp_path, now=at)
    database = urlsplit(pg_url).path.lstrip("/")
    assert (first.name, second.name) == (f"{database}-060000.dump", f"{database}-060000-1.dump")
    assert first.stat().st_size < second.stat().st_size, "the first dump was not written over"
    assert latest_dump(tmp_path, pg_url) == second
