"""A real-world database no one here wrote: Chinook, in infer mode, fully verified."""

from __future__ import annotations

import json
import shutil
import sqlite3

import psycopg
import pytest

from runtime.migrate.engine import verify_only
from runtime.migrate.plan import Source
from runtime.migrate.run import Options

from .conftest import CHINOOK

pytestmark = pytest.mark.postgres


def test_chinook_is_copied_verified_with_keys_and_sequences(pg_url, run_migration, tmp_path):
    source = tmp_path / "Chinook.sqlite"
    shutil.copyfile(CHINOOK, source)
    before = source.read_bytes()

    # Chinook's own SQL quotes its names ("Artist"): --keep-case keeps them as they are.
    code, report = run_migration(pg_url, {source: "chinook"}, keep_case=True)

    assert code == 0, report
    assert report["verified"] is True
    tables = report["sources"][0]["tables"]
    assert len(tables) == 11
    assert sum(t["rows_written"] for t in tables) == 15607
    # PlaylistTrack's key is (PlaylistId, TrackId), not an integer rowid alias: a multiset.
    modes = {t["table"]: t["hash_mode"] for t in tables}
    assert modes.pop("PlaylistTrack") == "multiset"
    assert set(modes.values()) == {"ordered"}
    assert json.loads((tmp_path / "report.json").read_text())["verified"] is True
    assert source.read_bytes() == before, "the source must never be modified"

    with sqlite3.connect(CHINOOK) as lite:
        source_fks = sum(
            len({row[0] for row in lite.execute(f"PRAGMA foreign_key_list('{name}')")})
            for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        )
    with psycopg.connect(pg_url) as conn:
        (fks,) = conn.execute(
            "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = 'chinook' AND c.contype = 'f' AND c.convalidated"
        ).fetchone()
        assert fks == source_fks == 11
        (new_id,) = conn.execute(
            'INSERT INTO chinook."Artist" ("Name") VALUES (%s) RETURNING "ArtistId"', ("new",)
        ).fetchone()
        assert new_id == 276
        (hired,) = conn.execute(
            'SELECT "HireDate" FROM chinook."Employee" WHERE "EmployeeId" = 1'
        ).fetchone()
        assert hired.isoformat() == "2002-08-14T00:00:00+00:00"
        (price,) = conn.execute(
            'SELECT "UnitPrice"::text FROM chinook."Track" WHERE "TrackId" = 1'
        ).fetchone()
        assert price == "0.99"


def test_verify_detects_a_changed_row_in_the_target(pg_url, run_migration, tmp_path):
    code, _ = run_migration(pg_url, {CHINOOK: "chinook"}, keep_case=True)
    assert code == 0
    options = Options(
        sources=[Source("Chinook", CHINOOK, "chinook")],
        target_url=pg_url,
        work_dir=tmp_path / "verify",
        progress=False,
        keep_case=True,
    )
    assert verify_only(options)[0] == 0

    with psycopg.connect(pg_url) as conn:
        conn.execute(
            'UPDATE chinook."Track" SET "Milliseconds" = "Milliseconds" + 1 WHERE "TrackId" = 7'
        )

    code, report = verify_only(options)
    assert code == 1
    failed = [t for t in report["sources"][0]["tables"] if not t["verified"]]
    assert [t["target"] for t in failed] == ["chinook.Track"]
    assert "content hash differs" in failed[0]["verification_problems"]
    assert "columns that differ: Milliseconds" in failed[0]["verification_problems"]
