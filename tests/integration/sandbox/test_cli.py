"""`domos sandbox` as supervisord runs it: starts fast, serves, stops cleanly on SIGTERM.

The process is started through `python -m services.sandbox.cli`, which runs the same `register()`
and handler as `domos sandbox` without importing every other area's command module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[3]


def test_domos_sandbox_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    token = "555:cli-test-token"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.sandbox.cli",
            "--port",
            str(port),
            "--bot-token",
            token,
            "--yookassa-shop-id",
            "42",
        ],
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "info"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    logs = ""
    try:
        started = time.monotonic()
        body = None
        while time.monotonic() - started < 15:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/bot{token}/getMe") as resp:
                    body = json.load(resp)
                break
            except OSError:
                time.sleep(0.05)
        if body is None:
            process.kill()
            _, logs = process.communicate()
            raise AssertionError(f"sandbox did not start: {logs}")
        assert body["result"]["id"] == 555
        process.send_signal(signal.SIGTERM)
        _, logs = process.communicate(timeout=10)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            process.communicate()
    assert "sandbox_starting" in logs
    assert "sandbox_stopped" in logs


def test_malformed_token_is_a_config_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.sandbox.cli", "--bot-token", "no-colon"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--bot-token" in result.stderr


def test_sandbox_is_a_domos_subcommand() -> None:
    from runtime.cli import COMMAND_MODULES

    assert "services.sandbox.cli" in COMMAND_MODULES
