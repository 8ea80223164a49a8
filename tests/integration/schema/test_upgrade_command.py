"""`domos db upgrade` and `domos db status` on both backends, as an operator runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.logical_databases import DOMAIN_DATABASES

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "runtime" / "schema"
DOMOS = Path(sys.executable).parent / "domos"


def migration_files() -> list[tuple[str, str, str]]:
    """(logical db, version, name) of every migration file."""
    found = []
    for logical_db in DOMAIN_DATABASES:
        for path in sorted((SCHEMA_DIR / logical_db).glob("*.sql")):
            version, name = path.stem.split("_", 1)
            found.append((logical_db, version, name))
    return found


@pytest.fixture(params=["sqlite", "postgres"])
def domos_env(
    request: pytest.FixtureRequest, tmp_path: Path, make_pg_database: Callable[..., str]
) -> dict[str, str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DATABASE_", "POSTGRES_", "DOMOS_"))
        and not key.endswith("_DB_PATH")
    }
    environ.update({"DB_TYPE": request.param, "DOMOS_DATA_DIR": str(tmp_path / "data")})
    if request.param == "postgres":
        environ["DATABASE_URL"] = make_pg_database()
    return environ


def domos(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DOMOS), *args], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def status_rows(output: str) -> set[tuple[str, str, str, str]]:
    rows = set()
    for line in output.splitlines():
        words = line.split()
        # Only table rows: the header starts with DATABASE.
        if len(words) >= 4 and words[0] in DOMAIN_DATABASES:
            rows.add((words[0], words[1], words[2], words[3]))
    return rows


def test_log_lines_go_to_stderr_in_the_configured_format(domos_env: dict[str, str]) -> None:
    """stdout holds the command's own lines (what an operator or a deploy script reads); the
    log lines are the programs' JSON on stderr, as LOG_FORMAT says."""
    environ = {**domos_env, "LOG_FORMAT": "json"}
    upgrade = domos(environ, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    for line in upgrade.stdout.splitlines():
        assert line.startswith("applied ") or " migration(s) applied on " in line, line
    events = [json.loads(line) for line in upgrade.stderr.splitlines()]
    assert {event["program"] for event in events} == {"db"}
    applied = [event for event in events if event["event"] == "migration_applied"]
    assert len(applied) == len(migration_files())
    status = domos(environ, "db", "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0].startswith("DATABASE")


def test_upgrade_applies_everything_once_and_status_lists_every_migration(
    domos_env: dict[str, str],
) -> None:
    files = migration_files()
    assert len(files) >= len(DOMAIN_DATABASES)

    before = domos(domos_env, "db", "status")
    # exit 1 means "not up to date" only when the table was printed (not a crash)
    assert "DATABASE" in before.stdout, before.stderr
    assert before.returncode == 1, before.stderr
    assert status_rows(before.stdout) == {(*file, "pending") for file in files}

    first = domos(domos_env, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    applied = re.findall(r"^applied\s+(\w+)\s+(\d{4})_(\w+)", first.stdout, re.MULTILINE)
    assert sorted(applied) == sorted(files)

    second = domos(domos_env, "db", "upgrade")
    assert second.returncode == 0, second.stderr
    assert not re.search(r"^applied\s", second.stdout, re.MULTILINE), second.stdout
    assert re.search(r"^0 migration\(s\) applied", second.stdout, re.MULTILINE), second.stdout

    after = domos(domos_env, "db", "status")
    assert after.returncode == 0, after.stderr
    assert status_rows(after.stdout) == {(*file, "applied") for file in files}
