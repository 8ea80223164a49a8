"""Which dump `domos restore postgres` takes without --dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.backup.postgres import latest_dump
from runtime.backup.sqlite import BackupError


def test_the_newest_dump_of_the_target_database_only(tmp_path: Path) -> None:
    names = [
        "2026-12-04/domos-230000.dump",
        "2026-12-05/domos-060000.dump",
        "2026-12-05/domos-120000.dump",
        # Other databases backed up into the same BACKUP_DIR, newer and sorting after it.
        "2026-12-05/analytics-180000.dump",
        "2026-12-05/domos_test-190000.dump",
        "2026-12-05/domos-test-200000.dump",
        "2026-12-06/zz-010000.dump",
    ]
    for name in names:
        (tmp_path / "postgres" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "postgres" / name).write_bytes(b"PGDMP")
    url = "postgresql://domos:secret@postgres:5432/domos"
    assert latest_dump(tmp_path, url) == tmp_path / "postgres/2026-12-05/domos-120000.dump"
    with pytest.raises(BackupError, match="no PostgreSQL dumps of other under"):
        latest_dump(tmp_path, "postgresql://postgres/other")


def test_the_second_dump_of_a_second_is_newer(tmp_path: Path) -> None:
    for name in (
        "domos-120000.dump",
        "domos-120000-1.dump",
        "domos-120000-10.dump",
        "domos-120000-2.dump",
        "domos-115959-99.dump",
        "domos-120000-x.dump",
    ):
        (tmp_path / "postgres/2026-12-05").mkdir(parents=True, exist_ok=True)
        (tmp_path / "postgres/2026-12-05" / name).write_bytes(b"PGDMP")
    newest = latest_dump(tmp_path, "postgresql://postgres/domos")
    assert newest.name == "domos-120000-10.dump"
