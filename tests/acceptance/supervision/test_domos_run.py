"""`domos run` (what `make run` calls), started as a real process on a copy of the config."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOMOS = str(Path(sys.executable).parent / "domos")
SUPERVISORCTL = str(Path(sys.executable).parent / "supervisorctl")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}; status:\n{_LAST_STATUS[0]}")


_LAST_STATUS = [""]


def _status(config: Path) -> str:
    result = subprocess.run(
        [SUPERVISORCTL, "-c", str(config), "status"], capture_output=True, text=True, check=False
    )
    _LAST_STATUS[0] = result.stdout
    return result.stdout


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except OSError:
        return None


def _all_running(config: Path) -> str | None:
    lines = [line for line in _status(config).splitlines() if line.strip()]
    return "\n".join(lines) if lines and all(" RUNNING " in line for line in lines) else None


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shutil.copy(REPO / "supervisord.conf", tmp_path / "supervisord.conf")
    shutil.copytree(REPO / "supervisor", tmp_path / "supervisor", symlinks=True)
    return tmp_path


def test_run_applies_the_schema_starts_every_program_and_stops_on_ctrl_c(home: Path):
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TELEGRAM_", "YOOKASSA_", "DOMOS_", "DB_", "SANDBOX_"))
    }
    env["SANDBOX_PORT"] = str(port)
    config = home / "supervisord.conf"
    proc = subprocess.Popen(
        [DOMOS, "run", "--config", str(config)],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status = _wait_for(lambda: _all_running(config), 60, "every program RUNNING")
        programs = [line.split()[0] for line in status.splitlines() if line.strip()]
        from runtime.supervision.programs import roles

        expected = {
            program.name if program.role == program.name else f"{program.role}:{program.name}"
            for program in roles()["embedded"]
        }
        assert expected | {"supervisor_exporter"} == set(programs)

        # The embedded credentials reach Telegram through the sandbox.
        token = "100000001:embedded-sandbox-bot-token"
        me = _wait_for(lambda: _get_json(f"http://127.0.0.1:{port}/bot{token}/getMe"), 20, "getMe")
        assert me["result"]["id"] == 100000001

        # The schema is applied to the SQLite files under the copy's var/data.
        main_db = home / "var/data/bot/tgbot/databases/data.db"
        with sqlite3.connect(main_db) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"users", "subscriptions", "payments", "outbox"} <= tables
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            pytest.fail(f"domos run did not stop on Ctrl-C:\n{output}")
    assert proc.returncode == 0, output
    assert "domos is starting under supervisord" in output
    assert "stopped: sandbox" in output, output
