"""The sandbox remembers across restarts what Telegram and YooKassa remember (--state-file).

In process: a sandbox built, used, stopped and built again on the same file. As processes: a
`domos sandbox` killed with SIGKILL keeps what it knew a second before; and the failure of
issue 18 on both backends: members greeted by the first run, the sandbox restarted, the
monthly survey queued by the real monthly_anket and delivered by the real notifymonitor before
anyone greets the members again: delivered, no dead letter.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp.test_utils import TestServer

from runtime.config import Settings
from runtime.db import sync_database
from services.sandbox import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_YOOKASSA_SECRET_KEY,
    DEFAULT_YOOKASSA_SHOP_ID,
    FloodLimits,
    SandboxConfig,
    build_app,
)
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[3]
DOMOS = [sys.executable, "-m", "runtime.cli"]
MEMBER, BLOCKER, GROUP = 700100001, 700100002, -1001700100001
AUTH = (
    "Basic "
    + base64.b64encode(
        f"{DEFAULT_YOOKASSA_SHOP_ID}:{DEFAULT_YOOKASSA_SECRET_KEY}".encode()
    ).decode()
)


@asynccontextmanager
async def running(state_file: Path) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    config = SandboxConfig(limits=FloodLimits(enabled=False), state_file=state_file)
    server = TestServer(build_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield str(server.make_url("")).rstrip("/"), http
    finally:
        await server.close()


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    headers = {"Authorization": AUTH, "Idempotence-Key": f"k-{time.monotonic_ns()}"}
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_users_chats_bans_payments_and_ids_survive_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox" / "state.json"
    bot = f"/bot{DEFAULT_BOT_TOKEN}"
    async with running(state_file) as (base, http):
        for user in (MEMBER, BLOCKER):
            await call(http, "POST", f"{base}/_sandbox/telegram/users", {"user_id": user})
        await call(http, "POST", f"{base}/_sandbox/telegram/chats", {"id": GROUP})
        await call(
            http,
            "POST",
            f"{base}/_sandbox/telegram/chats/{GROUP}/members",
            {"user_id": MEMBER, "status": "kicked"},
        )
        await call(http, "POST", f"{base}/_sandbox/telegram/users/{BLOCKER}/block", {})
        status, sent = await call(
            http, "POST", f"{base}{bot}/sendMessage", {"chat_id": MEMBER, "text": "one"}
        )
        assert status == 200, sent
        status, payment = await call(
            http,
            "POST",
            f"{base}/v3/payments",
            {
                "amount": {"value": "990.00", "currency": "RUB"},
                "capture": True,
                "save_payment_method": True,
                "confirmation": {"type": "redirect", "return_url": "https://t.me"},
            },
        )
        assert status == 200, payment
        await call(http, "POST", f"{base}/_sandbox/yookassa/payments/{payment['id']}/succeed", {})
    assert state_file.exists()

    async with running(state_file) as (base, http):
        status, again = await call(
            http, "POST", f"{base}{bot}/sendMessage", {"chat_id": MEMBER, "text": "two"}
        )
        assert status == 200, again  # not 400 "chat not found"
        assert again["result"]["message_id"] > sent["result"]["message_id"]
        status, member = await call(
            http, "POST", f"{base}{bot}/getChatMember", {"chat_id": GROUP, "user_id": MEMBER}
        )
        assert (status, member["result"]["status"]) == (200, "kicked")
        status, blocked = await call(
            http, "POST", f"{base}{bot}/sendMessage", {"chat_id": BLOCKER, "text": "hi"}
        )
        assert (status, blocked["description"]) == (403, "Forbidden: bot was blocked by the user")
        status, kept = await call(http, "GET", f"{base}/v3/payments/{payment['id']}")
        assert (status, kept["status"], kept["amount"]["value"]) == (200, "succeeded", "990.00")
        # The saved card can still be charged, and the new payment has a new id.
        status, renewal = await call(
            http,
            "POST",
            f"{base}/v3/payments",
            {
                "amount": {"value": "990.00", "currency": "RUB"},
                "capture": True,
                "payment_method_id": kept["payment_method"]["id"],
            },
        )
        assert (status, renewal["status"]) == (200, "succeeded"), renewal
        assert renewal["id"] != payment["id"]


async def test_without_a_state_file_nothing_is_kept() -> None:
    config = SandboxConfig(limits=FloodLimits(enabled=False))
    assert config.state_file is None
    for _ in range(2):
        server = TestServer(build_app(config), host="127.0.0.1")
        await server.start_server()
        async with aiohttp.ClientSession() as http:
            base = str(server.make_url("")).rstrip("/")
            status, answer = await call(
                http,
                "POST",
                f"{base}/bot{DEFAULT_BOT_TOKEN}/sendMessage",
                {"chat_id": MEMBER, "text": "x"},
            )
            await call(http, "POST", f"{base}/_sandbox/telegram/users", {"user_id": MEMBER})
        await server.close()
        assert (status, answer["description"]) == (400, "Bad Request: chat not found")


@contextmanager
def sandbox_process(
    environ: dict[str, str], port: int, state_file: Path | None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    argv = [*DOMOS, "sandbox", "--port", str(port), "--no-limits"]
    if state_file is not None:
        argv += ["--state-file", str(state_file)]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=environ, stdout=out, stderr=out)
    try:
        wait(lambda: _health(port), 60, f"the sandbox on :{port}\n{log.read_text()}")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(20)


def _health(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def test_a_killed_sandbox_keeps_what_it_knew_a_second_before(tmp_path: Path) -> None:
    port, state_file = free_port(), tmp_path / "state.json"
    with sandbox_process(dict(_base_env()), port, state_file, tmp_path / "log") as process:
        httpx.post(
            f"http://127.0.0.1:{port}/_sandbox/telegram/users", json={"user_id": MEMBER}
        ).raise_for_status()
        wait(lambda: state_file.exists() and str(MEMBER) in state_file.read_text(), 10, "a save")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    with sandbox_process(dict(_base_env()), port, state_file, tmp_path / "log"):
        answer = httpx.post(
            f"http://127.0.0.1:{port}/bot{DEFAULT_BOT_TOKEN}/sendMessage",
            json={"chat_id": MEMBER, "text": "still here"},
        )
        assert answer.status_code == 200, answer.text


def _base_env() -> dict[str, str]:
    import os

    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "YOOKASSA_", "SANDBOX_", "DOMOS_", "DB_", "DATABASE_"))
    }


def test_second_run_on_the_same_data_dead_letters_no_survey(
    database_environ_vars: dict[str, str], tmp_path: Path
) -> None:
    """Issue 18: the sandbox restarted, the survey goes out before the demo greets anyone."""
    port = free_port()
    sandbox = f"http://127.0.0.1:{port}"
    environ = {
        **_base_env(),
        **database_environ_vars,
        "TELEGRAM_API_URL": sandbox,
        "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "YOOKASSA_API_URL": sandbox,
        "YOOKASSA_SHOP_ID": DEFAULT_YOOKASSA_SHOP_ID,
        "YOOKASSA_SECRET_KEY": DEFAULT_YOOKASSA_SECRET_KEY,
        "DOMOS_RUN_DIR": str(tmp_path / "run"),
        # The survey is due: the send moment of this month lies in the past whatever the day.
        "ANKET_SEND_DAY": "1",
        "ANKET_SEND_AT": "00:00",
    }
    state_file = Path(database_environ_vars["DOMOS_DATA_DIR"]) / "sandbox" / "state.json"
    subprocess.run([*DOMOS, "db", "upgrade"], cwd=ROOT, env=environ, check=True, timeout=120)
    now = datetime.now(UTC)
    with sync_database(Settings.from_env(environ)) as db:
        tariff = db.fetchval(
            "INSERT INTO tariffs (code, title, price_minor, period_days)"
            " VALUES ('month', 'Месяц', 99000, 30) RETURNING id"
        )
        user = db.fetchval(
            "INSERT INTO users (telegram_id, first_name) VALUES (?, 'Anna') RETURNING id",
            (MEMBER,),
        )
        db.execute(
            "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
            " current_period_end) VALUES (?, ?, 'active', ?, ?)",
            (user, tariff, now - timedelta(days=2), now + timedelta(days=28)),
        )

    # First run: the member greets the bot (what the demo does through the control API).
    with sandbox_process(environ, port, state_file, tmp_path / "sandbox.log"):
        httpx.post(
            f"{sandbox}/_sandbox/telegram/users", json={"user_id": MEMBER, "first_name": "Anna"}
        ).raise_for_status()
    # Second run: the monitors tick before anyone greets the member again.
    with sandbox_process(environ, port, state_file, tmp_path / "sandbox.log"):
        for monitor in ("monthly_anket", "notifymonitor"):
            done = subprocess.run(
                [*DOMOS, "monitor", monitor, "--once"],
                cwd=ROOT,
                env=environ,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
        sent = httpx.get(f"{sandbox}/_sandbox/telegram/sent", params={"chat_id": MEMBER}).json()
    with sync_database(Settings.from_env(environ)) as db:
        rows = db.fetchall("SELECT kind, status, last_error FROM outbox ORDER BY id")
    assert rows, "monthly_anket queued nothing"
    assert [(r["status"], r["last_error"]) for r in rows] == [("sent", None)] * len(rows), rows
    assert len(sent) == len(rows), json.dumps(sent, ensure_ascii=False)
