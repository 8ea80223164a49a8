"""Real programs for the service tests: the sandbox, `domos api`, `domos botapi` as subprocesses.

Each command is started through its own area module (`services.<area>.cli.register`), exactly the
handler `domos <area>` runs, so the tests do not depend on every other area being importable.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.sandbox import DEFAULT_YOOKASSA_SECRET_KEY, DEFAULT_YOOKASSA_SHOP_ID
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[3]

_LAUNCH = (
    "import argparse, sys\n"
    "from importlib import import_module\n"
    "parser = argparse.ArgumentParser()\n"
    "import_module(sys.argv[1]).register(parser.add_subparsers())\n"
    "args = parser.parse_args(sys.argv[2:])\n"
    "sys.exit(args.handler(args))\n"
)


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


@dataclass
class Program:
    process: subprocess.Popen[str]
    base: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_program(
    module: str,
    argv: list[str],
    environ: dict[str, str],
    ready_path: str,
    log_path: Path,
    port: int,
    timeout_s: float = 30.0,
) -> Program:
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", _LAUNCH, module, *argv],
        cwd=ROOT,
        env={**os.environ, **environ},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log_file.close()
    program = Program(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{module} exited with {process.returncode}:\n{program.logs()}")
        try:
            status, _ = http("GET", program.base + ready_path, timeout_s=2)
            if status < 500:
                return program
        except OSError:
            pass
        time.sleep(0.05)
    program.stop()
    raise AssertionError(f"{module} did not become ready:\n{program.logs()}")


@dataclass
class SandboxProcess:
    program: Program
    shop_id: str = DEFAULT_YOOKASSA_SHOP_ID
    secret_key: str = DEFAULT_YOOKASSA_SECRET_KEY
    created: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.program.base

    def control(self, method: str, path: str, body: Any = None) -> Any:
        status, data = http(method, f"{self.base}/_sandbox{path}", body)
        assert status == 200, (status, data)
        return data

    def auth(self) -> dict[str, str]:
        raw = f"{self.shop_id}:{self.secret_key}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def create_payment(self, value: str = "990.00", key: str | None = None) -> dict[str, Any]:
        """A payment made directly at the provider (as another client of the shop would)."""
        headers = {**self.auth(), "Idempotence-Key": key or os.urandom(8).hex()}
        body = {
            "amount": {"value": value, "currency": "RUB"},
            "capture": True,
            "confirmation": {"type": "redirect", "return_url": "https://example.org/back"},
        }
        status, data = http("POST", f"{self.base}/v3/payments", body, headers)
        assert status == 200, (status, data)
        return dict(data)

    def arm_fault(self, count: int = 1, mode: str = "500") -> None:
        self.control("POST", "/faults", {"api": "yookassa", "mode": mode, "count": count})

    def yookassa_environ(self) -> dict[str, str]:
        return {
            "YOOKASSA_API_URL": self.base,
            "YOOKASSA_SHOP_ID": self.shop_id,
            "YOOKASSA_SECRET_KEY": self.secret_key,
        }


def start_api(environ: dict[str, str], log_path: Path, **settings: str) -> Program:
    """`domos api` on a free port, with `settings` over `environ`, once /health answers."""
    port = free_port()
    return start_program(
        "services.api.cli",
        ["api", "--port", str(port)],
        {**environ, "LOG_LEVEL": "warning", **settings},
        "/health",
        log_path,
        port,
    )


def start_sandbox(log_path: Path) -> SandboxProcess:
    port = free_port()
    program = start_program(
        "services.sandbox.cli",
        ["sandbox", "--port", str(port), "--no-limits"],
        {"LOG_LEVEL": "warning"},
        "/_sandbox/health",
        log_path,
        port,
    )
    return SandboxProcess(program)


async def wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
