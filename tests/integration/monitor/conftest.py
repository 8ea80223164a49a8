"""Run sample monitors as real `domos monitor` subprocesses against both backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime.config import Settings
from runtime.db import Database, sync_database
from runtime.db.dialect import render
from runtime.monitor.health import HealthVerdict, evaluate_health, health_path, read_health
from tests.ports import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

SCHEMA = """
CREATE TABLE sample_ticks (
    id {{id}},
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at {{timestamptz}} NOT NULL,
    written_at {{timestamptz}} NOT NULL DEFAULT {{now}}
);
CREATE TABLE sample_backlog (
    id {{id}},
    status TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at {{timestamptz}}
);
CREATE TABLE sample_processed (
    id {{id}},
    item_id BIGINT NOT NULL,
    owner TEXT NOT NULL
);
"""


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class MonitorProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    run_dir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def terminate(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"event": "<not json>", "raw": line})
        return lines

    def events(self) -> list[str]:
        return [line.get("event", "") for line in self.logs()]


@dataclass
class MonitorEnv:
    """The environment of one backend: DB settings, a sync DB handle, a process launcher."""

    base: dict[str, str]
    tmp_path: Path
    db: Database
    processes: list[MonitorProcess] = field(default_factory=list)

    @property
    def backend(self) -> str:
        return self.base["DB_TYPE"]

    def environ(self, run_dir: Path, **extra: str) -> dict[str, str]:
        environ = {
            **os.environ,
            **self.base,
            "DOMOS_MONITOR_PACKAGE": "sample_monitors",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), str(REPO)])),
            "DOMOS_RUN_DIR": str(run_dir),
            "LOG_LEVEL": "debug",
        }
        environ.pop("METRICS_PORT", None)
        environ.update(extra)
        return environ

    def start(self, name: str, *args: str, tag: str | None = None, **extra: str) -> MonitorProcess:
        tag = tag or f"{name}-{len(self.processes)}"
        run_dir = self.tmp_path / "run" / tag
        log_path = self.tmp_path / f"{tag}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runtime.cli", "monitor", name, *args],
                cwd=REPO,
                env=self.environ(run_dir, **extra),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process = MonitorProcess(proc, log_path, run_dir)
        self.processes.append(process)
        return process

    wait_until = staticmethod(wait_until)
    free_port = staticmethod(free_port)

    def ticks(self) -> list[dict[str, Any]]:
        return self.db.fetchall("SELECT owner, pid, started_at, written_at FROM sample_ticks")

    def check(self, run_dir: Path, *, interval_s: float = 0.1) -> HealthVerdict:
        """What `--check` of the counter decides from `run_dir` (3 intervals), in process."""
        state = read_health(health_path(run_dir, "counter"))
        return evaluate_health(state, now=time.time(), max_age_s=3 * interval_s)

    def command(self, name: str, *args: str, run_dir: Path, **extra: str) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-m", "runtime.cli", "monitor", name, *args],
            cwd=REPO,
            env=self.environ(run_dir, **extra),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr


@pytest.fixture
def monitor_env(database_environ_vars: dict[str, str], tmp_path: Path) -> Iterator[MonitorEnv]:
    settings = Settings.from_env(database_environ_vars)
    db = sync_database(settings)
    db.open()
    db.executescript(render(SCHEMA, db.dialect), db="main")
    env = MonitorEnv(database_environ_vars, tmp_path, db)
    try:
        yield env
    finally:
        for process in env.processes:
            if process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait(timeout=10)
        db.close()
