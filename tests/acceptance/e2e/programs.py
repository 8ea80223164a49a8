"""The real programs of the end-to-end test: sandbox, botapi and bot running, monitors run once.

Monitors run as `domos monitor NAME --once` with DOMOS_CLOCK_OFFSET_S, so the test moves their
business time (and the sandbox clock, through /_sandbox/clock) instead of waiting a month.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runtime.config import Settings
from runtime.db import Database, sync_database
from tests.integration.bot.conftest import ROOT, free_port, http_json, wait_for

DOMOS = [sys.executable, "-m", "runtime.cli"]


@dataclass
class Running:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class World:
    """What one scenario runs against; `offset_s`: the business clock's lead on real time."""

    environ: dict[str, str]
    tmp: Path
    sandbox_base: str
    db: Database
    running: list[Running] = field(default_factory=list)
    offset_s: float = 0.0

    def start(self, name: str, argv: list[str], ready: Any, timeout_s: float = 90.0) -> Running:
        log_path = self.tmp / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*DOMOS, *argv], cwd=ROOT, env=self.environ, stdout=log, stderr=subprocess.STDOUT
            )
        program = Running(name, process, log_path)
        self.running.append(program)

        def up() -> bool:
            assert process.poll() is None, f"{name} exited:\n{program.logs()}"
            return bool(ready(program))

        wait_for(up, timeout_s, f"{name} to start")
        return program

    def stop_all(self) -> None:
        for program in reversed(self.running):
            program.stop()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        status, data = http_json(method, f"{self.sandbox_base}/_sandbox{path}", body)
        assert status == 200, (path, data)
        return data

    def move_clock_to(self, moment: datetime) -> None:
        """Business time of the monitors and the sandbox clock both at `moment` (from now on)."""
        self.offset_s = (moment - datetime.now(UTC)).total_seconds()
        self.control("POST", "/clock", {"set": moment.timestamp()})

    def monitor_once(self, name: str) -> None:
        environ = {**self.environ, "DOMOS_CLOCK_OFFSET_S": f"{self.offset_s:.3f}"}
        done = subprocess.run(
            [*DOMOS, "monitor", name, "--once"],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{name} --once failed:\n{done.stdout}\n{done.stderr}"

    def sent(self, chat_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", f"/telegram/sent?chat_id={chat_id}")
        return result


def environ_for(backend: str, tmp: Path, pg_url: str | None, sandbox_port: int) -> dict[str, str]:
    from services.sandbox import (
        DEFAULT_BOT_TOKEN,
        DEFAULT_YOOKASSA_SECRET_KEY,
        DEFAULT_YOOKASSA_SHOP_ID,
    )
    from tests.conftest import database_environ

    sandbox = f"http://127.0.0.1:{sandbox_port}"
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))},
        **database_environ(backend, str(tmp / "data"), pg_url),
        "TELEGRAM_API_URL": sandbox,
        "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "YOOKASSA_API_URL": sandbox,
        "YOOKASSA_SHOP_ID": DEFAULT_YOOKASSA_SHOP_ID,
        "YOOKASSA_SECRET_KEY": DEFAULT_YOOKASSA_SECRET_KEY,
        "BOT_POLLING_TIMEOUT_S": "2",
        "BOTAPI_SEND_TOKEN": "e2e-send-token-0123456789abcdef",
        "BOTAPI_WORKERS": "1",
        "DOMOS_RUN_DIR": str(tmp / "run"),
        "METRICS_PORT": str(free_port()),
        "LOG_LEVEL": "info",
    }


def open_db(environ: dict[str, str]) -> Database:
    db = sync_database(Settings.from_env(environ))
    db.open()
    return db
