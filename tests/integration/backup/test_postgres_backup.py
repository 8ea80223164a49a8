"""PostgreSQL backups through the `domos` command: pg_dump -Fc, then restore."""

from __future__ import annotations

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
