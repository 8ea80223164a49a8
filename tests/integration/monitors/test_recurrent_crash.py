"""recurrent_payments killed with SIGKILL at the two dangerous moments, then restarted.

The sandbox and the monitor are real processes (`domos sandbox`, `domos monitor`); the monitor
stops at a named point (DOMOS_TEST_PAUSE_AT, monitors.pause) and is killed there with SIGKILL.
After a restart there must be exactly one successful charge at the provider.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.sandbox import DEFAULT_BOT_TOKEN
from tests.integration.monitors.conftest import Sandbox
from tests.integration.monitors.test_recurrent_payments import (
    due_subscription,
    provider_payments,
    subscription,
)
from tests.ports import free_port

DOMOS = str(Path(sys.executable).with_name("domos"))


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, **kwargs)


@pytest.fixture
async def sandbox_process(tmp_path: Path) -> AsyncIterator[Sandbox]:
    port = free_port()
    log = (tmp_path / "sandbox.log").open("wb")
    process = spawn(
        [DOMOS, "sandbox", "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 20
        while True:
            try:
                async with http.get(f"{base}/_sandbox/health") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            assert process.poll() is None, (tmp_path / "sandbox.log").read_text()
            assert time.monotonic() < deadline, "the sandbox did not start"
            await asyncio.sleep(0.1)
        yield Sandbox(base=base, http=http)
    process.terminate()
    process.wait(10)
    log.close()


def monitor_environ(environ: dict[str, str], sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))},
        **environ,
        "TELEGRAM_API_URL": sandbox.base,
        "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "YOOKASSA_API_URL": sandbox.base,
        "YOOKASSA_SHOP_ID": "100500",
        "YOOKASSA_SECRET_KEY": "test_sandbox_secret_key",
        "DOMOS_RUN_DIR": str(tmp_path / "run"),
        "RENEW_LEASE_S": "2",
        "LOG_LEVEL": "warning",
    }


async def run_until_paused(environ: dict[str, str], point: str, tmp_path: Path) -> None:
    marker = tmp_path / f"paused-{point}"
    env = {**environ, "DOMOS_TEST_PAUSE_AT": point, "DOMOS_TEST_PAUSE_FILE": str(marker)}
    log = tmp_path / f"monitor-{point}.log"
    with log.open("wb") as out:
        process = spawn([DOMOS, "monitor", "recurrent_payments"], env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 30
            while not marker.exists():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"never reached {point}: {log.read_text()}"
                await asyncio.sleep(0.05)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    assert process.returncode == -signal.SIGKILL


async def restart_once(environ: dict[str, str]) -> None:
    await asyncio.sleep(2.2)  # the dead process's lease (RENEW_LEASE_S) runs out
    result = await asyncio.to_thread(
        subprocess.run,
        [DOMOS, "monitor", "recurrent_payments", "--once"],
        env=environ,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize("point", ["charge_committed", "charge_answered"])
async def test_sigkill_then_restart_charges_exactly_once(
    db: Any, database_environ_vars: dict[str, str], sandbox_process: Sandbox, tmp_path: Path, point
):
    sub = await due_subscription(db, sandbox_process)
    environ = monitor_environ(database_environ_vars, sandbox_process, tmp_path)

    await run_until_paused(environ, point, tmp_path)
    [attempt] = await db.fetchall(
        "SELECT * FROM charge_attempts WHERE subscription_id = ?", (sub["id"],)
    )
    assert attempt["status"] == "created"  # committed before the call, nothing after
    charged = await provider_payments(sandbox_process, sub["method"])
    assert len(charged) == (0 if point == "charge_committed" else 1)

    await restart_once(environ)
    charged = await provider_payments(sandbox_process, sub["method"])
    assert [p["status"] for p in charged] == ["succeeded"]
    [attempt] = await db.fetchall(
        "SELECT * FROM charge_attempts WHERE subscription_id = ?", (sub["id"],)
    )
    assert attempt["status"] == "succeeded"
    payment = await db.fetchone("SELECT * FROM payments WHERE id = ?", (attempt["payment_id"],))
    assert payment["provider_payment_id"] == charged[0]["id"]
    row = await subscription(db, sub["id"])
    assert row["current_period_end"] == sub["end"] + timedelta(days=30)
