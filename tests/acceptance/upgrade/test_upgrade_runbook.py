"""docs/upgrade.md walked on both backends: an installation behind main, with data.

The installation is the schema as it was before main/0009 (what 7d57295 ran; later migrations
are new to it too), holding a member with a live subscription, a receipt still queued and an
event reminder already sent. Each `domos` command runs as its own process, as the page writes
it; the data must come through the upgrade untouched, and putting the older code back must say
the schema is ahead of it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runtime.config import Settings
from runtime.db import sync_database

ROOT = Path(__file__).resolve().parents[3]
RUNBOOK = (ROOT / "docs" / "upgrade.md").read_text()
SCHEMA = ROOT / "runtime" / "schema"
#: main's migrations the installation lacks: 0009 and every later one.
NEW_MAIN = [path for path in sorted((SCHEMA / "main").glob("*.sql")) if int(path.name[:4]) >= 9]


@pytest.fixture(params=["sqlite", "postgres"])
def environ(
    request: pytest.FixtureRequest, tmp_path: Path, make_pg_database: Callable[..., str]
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DATABASE_", "POSTGRES_", "DOMOS_", "BACKUP_"))
        and not key.endswith("_DB_PATH")
    }
    env.update(
        DB_TYPE=request.param,
        DOMOS_DATA_DIR=str(tmp_path / "data"),
        BACKUP_DIR=str(tmp_path / "backup"),
        LOG_FORMAT="json",
    )
    if request.param == "postgres":
        env["DATABASE_URL"] = make_pg_database()
    return env


def domos(command: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """A command of the page (checked to be in it), as its own process."""
    assert f"domos {command}" in RUNBOOK, f"`domos {command}` is not in docs/upgrade.md"
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *command.split(), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def older_schema(tmp_path: Path) -> Path:
    """The migrations of the version before main/0009."""
    root = tmp_path / "older-schema"
    shutil.copytree(SCHEMA, root)
    for path in NEW_MAIN:
        (root / "main" / path.name).unlink()
    return root


def fill(env: dict[str, str]) -> dict[str, object]:
    """A member as the older version left them; returns what must survive."""
    now = datetime.now(UTC).replace(microsecond=0)
    period_end = now + timedelta(days=30)
    with sync_database(Settings.from_env(env), name="upgrade-test") as db:
        db.execute("INSERT INTO users (telegram_id, first_name) VALUES (?, ?)", (700000001, "Anna"))
        user_id = db.fetchval("SELECT id FROM users WHERE telegram_id = ?", (700000001,))
        db.execute(
            "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)",
            ("month", "Month", 99000, 30),
        )
        tariff_id = db.fetchval("SELECT id FROM tariffs WHERE code = ?", ("month",))
        db.execute(
            "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
            " current_period_end) VALUES (?, ?, 'active', ?, ?)",
            (user_id, tariff_id, now, period_end),
        )
        db.execute(
            "INSERT INTO outbox (dedupe_key, chat_id, user_id, kind, text)"
            " VALUES (?, ?, ?, 'receipt', ?)",
            ("receipt:1", 700000001, user_id, "Оплата получена"),
        )
        db.execute(
            "INSERT INTO events (title, starts_at, status) VALUES (?, ?, 'published')",
            ("Meetup", now + timedelta(hours=2)),
        )
        event_id = db.fetchval("SELECT id FROM events WHERE title = ?", ("Meetup",))
        db.execute(
            "INSERT INTO event_registrations (event_id, user_id, status)"
            " VALUES (?, ?, 'registered')",
            (event_id, user_id),
        )
        db.execute(
            "INSERT INTO event_notifications (event_id, user_id, kind) VALUES (?, ?, '24h')",
            (event_id, user_id),
        )
    return {"period_end": period_end}


def test_upgrade_by_the_runbook_keeps_the_data(environ: dict[str, str], tmp_path: Path) -> None:
    older = older_schema(tmp_path)
    installed = domos("db upgrade", environ, "--schema-root", str(older))
    assert installed.returncode == 0, installed.stderr
    kept = fill(environ)

    # 1. before: the running version's schema is current; a backup
    assert domos("db status", environ, "--schema-root", str(older)).returncode == 0
    backup = domos(f"backup {environ['DB_TYPE']}", environ)
    assert backup.returncode == 0, backup.stderr

    # 3. the new code: its migrations pending, then applied
    pending = domos("db status", environ)
    assert pending.returncode == 1, pending.stderr
    for path in NEW_MAIN:
        version, name = path.stem.split("_", 1)
        assert re.search(rf"^main\s+{version}\s+{name}\s+pending", pending.stdout, re.M)
    upgraded = domos("db upgrade", environ)
    assert upgraded.returncode == 0, upgraded.stderr
    applied = re.findall(r"^applied\s+main\s+(\w+)", upgraded.stdout, re.M)
    assert applied == [path.stem for path in NEW_MAIN], upgraded.stdout
    assert f"{len(NEW_MAIN)} migration(s) applied" in upgraded.stdout
    assert "schema is up to date" in upgraded.stdout
    assert domos("db status", environ).returncode == 0

    with sync_database(Settings.from_env(environ), name="upgrade-test") as db:
        subscription = db.fetchone("SELECT status, current_period_end FROM subscriptions")
        assert subscription is not None
        assert subscription["status"] == "active"
        assert subscription["current_period_end"] == kept["period_end"]
        assert db.fetchval("SELECT count(*) FROM payments") == 0
        outbox = db.fetchall("SELECT status, attempts FROM outbox")
        assert [(row["status"], row["attempts"]) for row in outbox] == [("queued", 0)]
        # main/0009: the reminder sent before the upgrade is remembered
        assert db.fetchval("SELECT last_reminder FROM event_registrations") == "24h"

    # Rolling back the code: the schema is said to be ahead of it, nothing is changed.
    rolled_back = domos("db upgrade", environ, "--schema-root", str(older))
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert f"schema is ahead of this code by {len(NEW_MAIN)} migration(s)" in rolled_back.stdout
    for path in NEW_MAIN:
        assert f"main migration {path.stem} was applied by a newer domos" in rolled_back.stderr
    assert "schema is up to date" not in rolled_back.stdout
    behind = domos("db status", environ, "--schema-root", str(older))
    assert behind.returncode == 1
    version, name = NEW_MAIN[0].stem.split("_", 1)
    assert re.search(rf"^main\s+{version}\s+{name}\s+missing", behind.stdout, re.M)
