"""Real programs over a schema behind or ahead of their code (runtime.db.schema_gate).

On each backend a database is upgraded from a copy of runtime/schema: without main's newest
migration (behind: new code deployed, `domos db upgrade` forgotten), or with one more migration
the code does not know (ahead: a code rollback). Then a real `domos monitor eventsmonitor` (the
monitor of main's newest migration) or `domos bot` starts over it:

- behind: the program logs one `schema_behind` error naming the migration and the command,
  exposes it (gauge, monitor health check), does no work and keeps running; once
  `domos db upgrade` runs it goes on by itself;
- ahead: the program runs, with one warning.

The programs re-check every 0.2 s here (`--schema-recheck`; 5 s by default).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.db.migrations import DEFAULT_SCHEMA_ROOT, discover
from services.sandbox import DEFAULT_BOT_TOKEN
from tests.conftest import database_environ
from tests.ports import free_port

DOMOS = [sys.executable, "-m", "runtime.cli"]
ROOT = Path(__file__).resolve().parents[3]
NEWEST = discover("main")[-1]
NEWEST_LABEL = f"main/{NEWEST.version:04d}_{NEWEST.name}"
NEWER_LABEL = f"main/{NEWEST.version + 1:04d}_from_a_newer_domos"
RECHECK = ["--schema-recheck", "0.2"]


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


class Program:
    """A `domos` subprocess logging JSON lines to a file."""

    def __init__(self, args: list[str], environ: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*DOMOS, *args], cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT
            )

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def wait_event(self, name: str, timeout_s: float = 60) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.text()}"
            found = self.events(name)
            return found[0] if found else None

        return wait_for(seen, timeout_s, f"{name} in {self.log_path.name}")  # type: ignore[no-any-return]

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def ticked(port: int) -> bool:
    """A tick succeeded (a tick with nothing to do logs its success at debug level only)."""
    done = metric(port, "domos_monitor_ticks_total", monitor="eventsmonitor", outcome="success")
    return bool(done)


def metric(port: int, name: str, **labels: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None  # not serving yet
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def environ(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    backend: str = request.param
    pg_url = request.getfixturevalue("make_pg_database")() if backend == "postgres" else None
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DATABASE_", "POSTGRES_", "LOG_", "DOMOS_", "METRICS_"))
    }
    return {
        **inherited,
        **database_environ(backend, str(tmp_path / "data"), pg_url),
        "DOMOS_RUN_DIR": str(tmp_path / "run"),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }


def db(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DOMOS, "db", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def upgrade_to(environ: dict[str, str], tmp_path: Path, *, edit: Callable[[Path], None]) -> None:
    """`domos db upgrade` from a copy of runtime/schema changed by `edit`."""
    root = tmp_path / "schema"
    shutil.copytree(DEFAULT_SCHEMA_ROOT, root, ignore=shutil.ignore_patterns("*.md"))
    edit(root)
    done = db(environ, "upgrade", "--schema-root", str(root))
    assert done.returncode == 0, done.stderr


def without_newest(root: Path) -> None:
    (root / "main" / NEWEST.path.name).unlink()


def with_a_newer_one(root: Path) -> None:
    name = NEWER_LABEL.split("/", 1)[1]
    (root / "main" / f"{name}.sql").write_text(
        "CREATE TABLE from_a_newer_domos (id INTEGER PRIMARY KEY);\n"
    )


@pytest.fixture
def behind(environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    upgrade_to(environ, tmp_path, edit=without_newest)
    status = db(environ, "status")
    assert status.returncode == 1
    assert re.search(rf"{NEWEST.version:04d}\s+{NEWEST.name}\s+pending", status.stdout)
    return environ


@pytest.fixture
def monitor(behind: dict[str, str], tmp_path: Path) -> Iterator[tuple[Program, int]]:
    port = free_port()
    environ = {**behind, "METRICS_PORT": str(port), "DOMOS_PROGRAM": "eventsmonitor"}
    program = Program(
        ["monitor", "eventsmonitor", *RECHECK], environ, tmp_path / "eventsmonitor.log"
    )
    try:
        yield program, port
    finally:
        program.kill()


def check(environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DOMOS, "monitor", "eventsmonitor", "--check"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_monitor_waits_for_the_missing_migration_then_works(
    behind: dict[str, str], monitor: tuple[Program, int]
) -> None:
    program, port = monitor
    behind_line = program.wait_event("schema_behind")
    assert behind_line["level"] == "error"
    assert behind_line["missing"] == [NEWEST_LABEL]
    assert behind_line["command"] == "domos db upgrade"
    assert behind_line["monitor"] == "eventsmonitor"

    # Exposed: the gauge and the health check, which names the migration and the command.
    wait_for(
        lambda: metric(port, "domos_schema_migrations_missing", logical_db="main") == 1.0,
        10,
        "the missing migration on /metrics",
    )
    verdict = check(behind)
    assert verdict.returncode == 1
    assert NEWEST_LABEL in verdict.stdout
    assert "domos db upgrade" in verdict.stdout

    time.sleep(1.0)  # five re-checks: still waiting, said once, nothing done
    assert program.proc.poll() is None
    assert len(program.events("schema_behind")) == 1
    assert not ticked(port)
    assert not program.events("tick_failed")
    assert not program.events("singleton_lock_acquired")

    upgraded = db(behind, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    wait_for(lambda: ticked(port), 15, "a successful tick")
    [ready] = program.events("schema_ready")
    assert ready["applied"] == [NEWEST_LABEL]
    assert metric(port, "domos_schema_migrations_missing", logical_db="main") == 0.0
    assert check(behind).returncode == 0
    assert not program.events("tick_failed")
    assert program.stop() == 0


def test_a_monitor_stopped_while_waiting_exits_cleanly(monitor: tuple[Program, int]) -> None:
    program, _ = monitor
    program.wait_event("schema_behind")
    started = time.monotonic()
    assert program.stop() == 0
    assert time.monotonic() - started < 5
    assert program.events("monitor_stopped")


def test_a_monitor_once_gives_up_at_once(behind: dict[str, str]) -> None:
    done = subprocess.run(
        [*DOMOS, "monitor", "eventsmonitor", "--once"],
        cwd=ROOT,
        env=behind,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    [behind_line] = [line for line in lines if line["event"] == "schema_behind"]
    assert behind_line["missing"] == [NEWEST_LABEL]
    assert not [line for line in lines if line["event"] == "tick_failed"]


def test_a_schema_ahead_of_the_code_runs_with_one_warning(
    environ: dict[str, str], tmp_path: Path
) -> None:
    upgrade_to(environ, tmp_path, edit=with_a_newer_one)
    port = free_port()
    program = Program(
        ["monitor", "eventsmonitor", *RECHECK],
        {**environ, "METRICS_PORT": str(port), "DOMOS_PROGRAM": "eventsmonitor"},
        tmp_path / "eventsmonitor.log",
    )
    try:
        wait_for(lambda: ticked(port), 30, "a successful tick")
        [ahead] = program.events("schema_ahead_of_code")
        assert ahead["level"] == "warning"
        assert ahead["unknown"] == [NEWER_LABEL]
        assert metric(port, "domos_schema_migrations_unknown", logical_db="main") == 1.0
        assert metric(port, "domos_schema_migrations_missing", logical_db="main") == 0.0
        assert not program.events("schema_behind")
        assert not program.events("tick_failed")
        assert program.stop() == 0
    finally:
        program.kill()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*DOMOS, "sandbox", "--port", str(port), "--no-limits"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            with urllib.request.urlopen(f"{base}/_sandbox/health", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_for(up, 30, "the sandbox to listen")
    yield base
    process.send_signal(signal.SIGTERM)
    process.wait(10)


def test_the_bot_waits_for_the_missing_migration_then_polls(
    behind: dict[str, str], sandbox: str, tmp_path: Path
) -> None:
    port = free_port()
    environ = {
        **behind,
        "TELEGRAM_API_URL": sandbox,
        "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "BOT_POLLING_TIMEOUT_S": "1",
        "METRICS_PORT": str(port),
        "DOMOS_PROGRAM": "bot",
    }
    program = Program(["bot", *RECHECK], environ, tmp_path / "bot.log")
    try:
        # aiogram's import alone takes seconds of CPU on a loaded machine.
        behind_line = program.wait_event("schema_behind", timeout_s=90)
        assert behind_line["missing"] == [NEWEST_LABEL]
        assert behind_line["command"] == "domos db upgrade"
        assert metric(port, "domos_schema_migrations_missing", logical_db="main") == 1.0
        time.sleep(1.0)
        assert program.proc.poll() is None
        assert len(program.events("schema_behind")) == 1
        assert not program.events("paid_chats_configured")
        assert not program.events("bot_started")

        upgraded = db(behind, "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        program.wait_event("bot_started", timeout_s=30)
        assert program.events("schema_ready")
        assert metric(port, "domos_schema_migrations_missing", logical_db="main") == 0.0
        assert program.stop() == 0
    finally:
        program.kill()
