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
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.sandbox import DEFAULT_BOT_TOKEN
from tests.integration.schema_gate.programs import (
    DOMOS,
    NEWER_LABEL,
    NEWEST_LABEL,
    RECHECK,
    ROOT,
    Program,
    db,
    metric,
    ticked,
    upgrade_to,
    wait_for,
    with_a_newer_one,
)
from tests.ports import free_port


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

    time.sleep(0.6)  # three re-checks: still waiting, said once, nothing done
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
        time.sleep(0.6)  # three re-checks
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
