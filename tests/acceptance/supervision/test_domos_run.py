"""`domos run` (what `make run` calls), started as a real process on a copy of the config."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

import pytest

from tests.ports import free_port as _free_port

REPO = Path(__file__).resolve().parents[3]
DOMOS = str(Path(sys.executable).parent / "domos")
SUPERVISORCTL = str(Path(sys.executable).parent / "supervisorctl")


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


#: supervisord's own lines: `2026-12-04 16:07:05,692 INFO supervisord started with pid 5705`.
_SUPERVISORD_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]{4}) ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: A console line's level: `api                 16:07:25.379 [error    ] ...`.
_CONSOLE_LEVEL = re.compile(r"^\S+\s+\d\d:\d\d:\d\d\.\d{3} \[(?P<level>[a-z]+)\s*\]")


def alarming_lines(output: str) -> list[str]:
    """Lines at error or critical level, in any of the three formats, and tracebacks."""
    found = []
    for raw in output.splitlines():
        line = _ANSI.sub("", raw).rstrip("\r")
        level = None
        if line.startswith("{"):
            try:
                level = json.loads(line).get("level")
            except ValueError:
                level = None
        elif match := _SUPERVISORD_LINE.match(line):
            level = {"ERRO": "error", "CRIT": "critical"}.get(match.group("level"))
        elif match := _CONSOLE_LEVEL.match(line):
            level = match.group("level")
        if level in ("error", "critical", "exception") or line.startswith("Traceback"):
            found.append(line)
    return found


def test_alarming_lines_are_found_in_every_format():
    output = "\n".join(
        [
            '{"event": "tick_failed", "program": "tsmonitor", "level": "error"}',
            '{"event": "tick_succeeded", "program": "tsmonitor", "level": "info"}',
            "2026-12-04 15:52:14,743 ERRO pool supervisor_exporter event buffer overflowed",
            "2026-12-04 15:52:13,400 CRIT Server 'unix_http_server' running without any HTTP",
            "2026-12-04 15:52:13,401 INFO supervisord started with pid 1",
            "\x1b[93mapi                \x1b[0m \x1b[2m16:07:25.379\x1b[0m"
            " [\x1b[31merror    \x1b[0m] x",
            "api                 16:07:25.380 [info     ] api_started",
            "Traceback (most recent call last):",
        ]
    )
    assert len(alarming_lines(output)) == 5


class Output:
    """A child's output, collected by a thread as it comes, so a test can wait for a line."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        while chunk := self._chunk(stream):
            self.chunks.append(chunk)

    @staticmethod
    def _chunk(stream: IO[bytes]) -> bytes:
        try:
            return os.read(stream.fileno(), 65536)
        except OSError:  # a pty's master reads EIO once the last writer closed
            return b""

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def wait_for(self, needle: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.text:
            if time.monotonic() > deadline:
                pytest.fail(f"no {needle!r} in {timeout_s} s; the output:\n{self.text}")
            time.sleep(0.2)


def _run_env(sandbox_port: int) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TELEGRAM_", "YOOKASSA_", "DOMOS_", "DB_", "SANDBOX_", "LOG_"))
    }
    env["SANDBOX_PORT"] = str(sandbox_port)
    return env


def _stop(proc: subprocess.Popen[bytes], output: Output) -> None:
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"domos run did not stop on Ctrl-C:\n{output.text}")
    output.thread.join(10)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.mark.slow
@pytest.mark.timeout(300)  # a whole start, the demo and a clean stop, on a loaded machine
def test_run_applies_the_schema_starts_every_program_and_stops_on_ctrl_c(home: Path):
    port = _free_port()
    config = home / "supervisord.conf"
    # Not a terminal (a pipe): JSON lines, as a CI log or `make run | tee` gets them.
    proc = subprocess.Popen(
        [DOMOS, "run", "--config", str(config)],
        env=_run_env(port),
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = Output(proc.stdout)
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

        # Once the programs are up and their pages answer: their states and where to look.
        output.wait_for("where to look", 60)
        # The demo plays its scenario through every service, part of a clean start, and ends
        # with a line of its own ("demo: <summary>" or "demo: failed: ...").
        output.wait_for("\ndemo: ", 90)
        time.sleep(3)  # the monitors' next ticks
    finally:
        _stop(proc, output)
    text = output.text
    assert proc.returncode == 0, text
    assert "domos is starting under supervisord" in text
    assert f"domos is up: {len(expected) + 1} programs RUNNING" in text, text
    for where in ("http://127.0.0.1:8001/docs", "http://127.0.0.1:8002/admin/", "status"):
        assert where in text.split("where to look", 1)[1], text
    assert f"http://127.0.0.1:{port}/_sandbox/telegram/sent" in text
    assert "stopped: sandbox" in text, text
    assert "demo: failed" not in text, text
    # A clean start and stop log nothing at error or critical level, supervisord included.
    assert alarming_lines(text) == [], text
    # supervisord's lines come once each.
    assert text.count("supervisord started with pid") == 1, text
    # Every program's lines are JSON, named by the program.
    programs_seen = {
        json.loads(line)["program"] for line in text.splitlines() if line.startswith("{")
    }
    assert {"api", "web", "botapi", "bot", "sandbox", "tsmonitor", "backup"} <= programs_seen


@pytest.mark.slow
@pytest.mark.timeout(300)  # a whole start, the demo and a clean stop, on a loaded machine
def test_on_a_terminal_every_program_logs_readable_aligned_lines(home: Path):
    port = _free_port()
    config = home / "supervisord.conf"
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [DOMOS, "run", "--config", str(config), "--no-demo"],
        env=_run_env(port),
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    from runtime.logging import CONSOLE_PROGRAM_WIDTH

    def console_lines(text: str) -> list[str]:
        lines = (_ANSI.sub("", line).rstrip("\r") for line in text.splitlines())
        return [line for line in lines if _CONSOLE_LEVEL.match(line)]

    def named(text: str) -> set[str]:
        return {line[:CONSOLE_PROGRAM_WIDTH].rstrip() for line in console_lines(text)}

    expected = {"domos", "api", "web", "botapi", "bot", "sandbox", "tsmonitor", "backup"}
    with os.fdopen(controller, "rb", buffering=0) as reader:
        output = Output(reader)
        try:
            output.wait_for("where to look", 90)
            # gunicorn's own lines, through the program's logging too.
            output.wait_for("Booting worker", 30)
            _wait_for(lambda: expected <= named(output.text), 30, "a line of each program")
        finally:
            _stop(proc, output)
    text = output.text
    assert proc.returncode == 0, text
    assert not [line for line in text.splitlines() if line.startswith("{")], text
    console = console_lines(text)
    # The event starts in the same column on every line.
    assert len({line.index("] ") for line in console}) == 1, text
    assert "\x1b[" in text  # coloured
    assert any("Booting worker" in line for line in console), text
    assert alarming_lines(text) == [], text
