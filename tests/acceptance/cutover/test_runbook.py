"""docs/cutover.md walked step by step on a small data set, each step a real `domos` process.

Step 1 (freeze writes with supervisorctl) is supervisord's own command, tested with the
supervision area; everything else runs here exactly as the runbook writes it, plus the paths
that point it at the test's directories.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from services.sandbox import DEFAULT_BOT_TOKEN
from tests.integration.api.processes import start_sandbox
from tests.integration.migrate.domos_data import fill, upgrade_sqlite

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[3]
RUNBOOK = (ROOT / "docs/cutover.md").read_text()


def domos(command: str, environ: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """Run a runbook command (checked to be in the runbook) as its own process."""
    assert f"domos {command}" in RUNBOOK, f"`domos {command}` is not in docs/cutover.md"
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "runtime.cli", *command.split(), *extra],
        cwd=ROOT,
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=100,
    )
    print(f"{command}: {time.perf_counter() - started:.2f}s")
    assert completed.returncode == 0, (command, completed.stdout[-3000:], completed.stderr[-3000:])
    return completed


def content(data_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(data_dir.rglob("*.db")):
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            digest.update("\n".join(conn.iterdump()).encode())
    return digest.hexdigest()


def outbox_statuses(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, count(*) FROM main.outbox GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


def test_cutover_and_rollback_by_the_runbook(pg_url, tmp_path):
    data_dir = tmp_path / "data"
    fill(upgrade_sqlite(data_dir), 8)
    sandbox = start_sandbox(tmp_path / "sandbox.log")
    base = {
        "DOMOS_DATA_DIR": str(data_dir),
        "DATABASE_URL": pg_url,
        "BACKUP_DIR": str(tmp_path / "backup"),
        "TELEGRAM_API_URL": sandbox.base,
        "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "LOG_FORMAT": "json",
    }
    on_sqlite = {**base, "DB_TYPE": "sqlite"}
    on_postgres = {**base, "DB_TYPE": "postgres"}
    work = ("--work-dir", str(tmp_path / "migrate"))
    try:
        # 3. (and 0.) The schema in PostgreSQL, then the plan: nothing written.
        domos("db upgrade", on_postgres)
        plan = domos("migrate --dry-run", on_sqlite, *work)
        assert "main:outbox -> main.outbox" in plan.stdout
        before = content(data_dir)

        # 2. Final backups.
        domos("backup sqlite", on_sqlite)
        sqlite_backups = list((tmp_path / "backup/sqlite").glob("*/*/*.sqlite"))
        assert len(sqlite_backups) == 7
        [run] = {copy.parent for copy in sqlite_backups}  # one directory per run

        # 4. Migrate, verify, keep a restore point.
        report = tmp_path / "migrate-report.json"
        migrated_run = domos("migrate --truncate --report", on_sqlite, str(report), *work)
        assert json.loads(report.read_text())["verified"] is True
        # stdout is the summary alone; the log is on stderr in the programs' format (JSON
        # lines: stderr is not a terminal).
        assert json.loads(migrated_run.stdout)["verified"] is True
        lines = [json.loads(line) for line in migrated_run.stderr.splitlines()]
        assert {line["program"] for line in lines} == {"migrate"}
        assert "table_verified" in {line["event"] for line in lines}
        verify_report = tmp_path / "verify-report.json"
        domos("migrate verify --report", on_sqlite, str(verify_report), *work)
        assert json.loads(verify_report.read_text())["exit_code"] == 0
        domos("backup postgres", on_postgres)
        (dump,) = (tmp_path / "backup/postgres").glob("*/*.dump")
        migrated = outbox_statuses(pg_url)

        # 5. Switch DB_TYPE and smoke test: the schema is current, a monitor works on PostgreSQL.
        domos("db status", on_postgres)
        domos("monitor notifymonitor --once", on_postgres)
        assert outbox_statuses(pg_url) != migrated, "notifymonitor did nothing on PostgreSQL"

        # Rollback: the SQLite files are untouched by all of the above.
        assert content(data_dir) == before
        domos("db status", on_sqlite)
        # closing(): the restore refuses while a process holds a live file open, this one too.
        with closing(sqlite3.connect(data_dir / "bot/tgbot/databases/data.db")) as conn, conn:
            conn.execute("DELETE FROM outbox")
        domos("restore sqlite --day", on_sqlite, run.parent.name, "--at", run.name)
        assert content(data_dir) == before

        # ... and PostgreSQL back to the verified restore point.
        domos("restore postgres --dump", on_postgres, str(dump))
        assert outbox_statuses(pg_url) == migrated
    finally:
        sandbox.program.stop()
