"""Helpers of the stack acceptance tests: a throwaway PostgreSQL cluster and `domos run` on it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from runtime.observability.health import supervisor_processes
from runtime.supervision.programs import LISTENER_METRICS_PORT, PROGRAMS

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
T = TypeVar("T")

#: Ports the catalogue fixes (services and metrics); a stack left over from another test must
#: be gone before this one starts.
FIXED_PORTS = sorted(
    {p.metrics_port for p in PROGRAMS if p.metrics_port} | {8001, 8002, 6000, LISTENER_METRICS_PORT}
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate: Callable[[], T], timeout_s: float, what: str, step_s: float = 0.1) -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except httpx.HTTPError as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(step_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")


def _pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    assert found, "PostgreSQL server binaries not found under /usr/lib/postgresql"
    return found[-1]


def _as_postgres(*command: str) -> None:
    """Run a server command as the `postgres` user (initdb and postgres refuse root)."""
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout}{result.stderr}"


@dataclass
class ThrowawayPostgres:
    """A cluster of our own, so restarting it disturbs nobody else's tests."""

    root: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self.root.mkdir(parents=True)
        shutil.chown(self.root, "postgres")
        self.root.chmod(0o700)
        _as_postgres(
            str(_pg_bindir() / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "-E", "UTF8",
        )  # fmt: skip
        self.start()

    def _ctl(self, *args: str) -> None:
        _as_postgres(str(_pg_bindir() / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._ctl("-l", str(self.root / "log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")


def stack_environment(pg_url: str, sandbox_port: int) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TELEGRAM_", "YOOKASSA_", "DOMOS_", "DB_", "SANDBOX_", "DATABASE_"))
    }
    env.update(DB_TYPE="postgres", DATABASE_URL=pg_url, SANDBOX_PORT=str(sandbox_port))
    return env


@dataclass
class Stack:
    """`domos run` (which becomes supervisord) on a copy of the repository's config."""

    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.home / "supervisord.conf"

    @property
    def log(self) -> Path:
        return self.home / "supervisord.log"

    @property
    def sandbox(self) -> str:
        return f"http://127.0.0.1:{self.env['SANDBOX_PORT']}/_sandbox"

    def secrets(self) -> dict[str, str]:
        return dict(json.loads((self.home / "var" / "embedded-secrets.json").read_text()))

    def start(self, *, demo: bool = True) -> None:
        busy = wait_for(
            lambda: [p for p in FIXED_PORTS if port_in_use(p)] or ["free"],
            30,
            "the fixed ports to be free",
        )
        assert busy == ["free"], f"ports in use by another stack: {busy}"
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "supervisord.conf", self.config)
        shutil.copytree(REPO / "supervisor", self.home / "supervisor", symlinks=True)
        command = [str(BIN / "domos"), "run", "--config", str(self.config)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command if demo else [*command, "--no-demo"],
                env=self.env,
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def ctl(self, *args: str) -> str:
        result = subprocess.run(
            [str(BIN / "supervisorctl"), "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return result.stdout

    def processes(self) -> dict[str, dict[str, Any]]:
        """`group:name` (or `name` when they agree) -> getAllProcessInfo() entry.

        Asked over XML-RPC in this process: starting supervisorctl costs about half a second
        on a loaded machine, too coarse for a 3 s restart budget.
        """
        try:
            infos = supervisor_processes(self.config)
        except OSError:
            return {}
        return {
            info["name"]
            if info["group"] == info["name"]
            else f"{info['group']}:{info['name']}": info
            for info in infos
        }

    def states(self) -> dict[str, str]:
        return {name: str(info["statename"]) for name, info in self.processes().items()}

    def pid(self, name: str) -> int:
        return int(self.processes()[name]["pid"])

    def health(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "domos"), "health", "--role", "embedded", "--config", str(self.config)],
            env={**self.env, "DOMOS_RUN_DIR": str(self.home / "var" / "run")},
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
