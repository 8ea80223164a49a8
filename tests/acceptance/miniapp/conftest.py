"""The Mini App payment path from outside: real programs, a hostile member.

Per backend (once per module): a fresh, migrated database; the sandbox (`domos sandbox`, Telegram
and YooKassa) notifying botapi (`domos botapi`, the YooKassa webhook); `domos api` with the
sandbox bot's token, so initData signed for that bot is a member's proof. payment_monitor runs
as `domos monitor payment_monitor --once` when a test wants the outcome applied. Tests talk to
the API over HTTP as a Mini App does, and look at the database and the sandbox to see what
happened. Each test uses its own Telegram ids, so tests share the programs.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime.config import Settings
from runtime.db import Database, sync_database
from runtime.telegram_proof import mini_app_authorization
from services.sandbox import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_YOOKASSA_SECRET_KEY,
    DEFAULT_YOOKASSA_SHOP_ID,
)
from tests.acceptance.e2e.programs import Running
from tests.conftest import database_environ
from tests.integration.bot.conftest import wait_for
from tests.ports import free_port

DOMOS = [sys.executable, "-m", "runtime.cli"]
ROOT = Path(__file__).resolve().parents[3]
BOT_TOKEN = DEFAULT_BOT_TOKEN
RETURN_URL = "https://t.me/domos_bot"
PRICE_MINOR = 149_900
_ids = itertools.count(int(time.time()) % 100_000 * 1000 + 600_000_000)


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    """(status, parsed body or text, headers); `body` bytes are sent as they are."""
    if isinstance(body, bytes):
        data: bytes | None = body
    else:
        data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, dict(exc.headers)
    try:
        return status, json.loads(raw), got
    except ValueError:
        return status, raw.decode(errors="replace"), got


#: Waits for the webhook on a machine busy with the rest of the suite.
WAIT_S = 15.0


@dataclass
class Stack:
    backend: str
    environ: dict[str, str]
    tmp: Path
    db: Database
    sandbox: str = ""
    api: str = ""
    running: list[Running] = field(default_factory=list)

    # --- programs ----------------------------------------------------------------------------

    def start(self, name: str, argv: list[str], ready_url: str, timeout_s: float = 60) -> Running:
        log_path = self.tmp / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*DOMOS, *argv], cwd=ROOT, env=self.environ, stdout=log, stderr=subprocess.STDOUT
            )
        program = Running(name, process, log_path)
        self.running.append(program)

        def up() -> bool:
            assert process.poll() is None, f"{name} exited:\n{program.logs()}"
            try:
                return http("GET", ready_url)[0] == 200
            except OSError:
                return False

        wait_for(up, timeout_s, f"{name} to start")
        return program

    def payment_monitor(self) -> None:
        done = subprocess.run(
            [*DOMOS, "monitor", "payment_monitor", "--once"],
            cwd=ROOT,
            env=self.environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"payment_monitor failed:\n{done.stdout}\n{done.stderr}"

    # --- the sandbox -------------------------------------------------------------------------

    def control(self, method: str, path: str, body: Any = None) -> Any:
        status, data, _ = http(method, f"{self.sandbox}/_sandbox{path}", body)
        assert status == 200, (path, status, data)
        return data

    def provider_payment(self, provider_id: str) -> dict[str, Any]:
        found: dict[str, Any] = next(
            p for p in self.control("GET", "/yookassa/payments") if p["id"] == provider_id
        )
        return found

    def provider_creates(self) -> int:
        return len(self.control("GET", "/yookassa/requests?method=POST&path=/v3/payments"))

    # --- the API, as a member's Mini App -------------------------------------------------------

    def pay(
        self,
        headers: dict[str, str],
        body: Any,
        key: str | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        sent = {**headers, "Idempotence-Key": key or str(uuid.uuid4())}
        return http("POST", f"{self.api}/v1/payments", body, sent)

    def status(self, telegram_id: int, headers: dict[str, str]) -> tuple[int, Any]:
        status, data, _ = http("GET", f"{self.api}/v1/subscriptions/{telegram_id}", None, headers)
        return status, data

    # --- the data ------------------------------------------------------------------------------

    def new_member(self, first_name: str = "Член") -> tuple[int, int]:
        """(telegram id, user id) of a registered member."""
        telegram_id = next(_ids)
        self.db.execute(
            "INSERT INTO users (telegram_id, first_name) VALUES (?, ?)", (telegram_id, first_name)
        )
        user_id = self.db.fetchval("SELECT id FROM users WHERE telegram_id = ?", (telegram_id,))
        return telegram_id, int(user_id)

    def new_tariff(self, price_minor: int = PRICE_MINOR, period_days: int = 30) -> str:
        code = f"t{next(_ids)}"
        self.db.execute(
            "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)",
            (code, "Месяц", price_minor, period_days),
        )
        return code

    def payments_of(self, user_id: int) -> list[dict[str, Any]]:
        return [
            dict(row)
            for row in self.db.fetchall(
                "SELECT * FROM payments WHERE user_id = ? ORDER BY id", (user_id,)
            )
        ]

    def subscriptions_of(self, user_id: int) -> list[dict[str, Any]]:
        return [
            dict(row)
            for row in self.db.fetchall(
                "SELECT * FROM subscriptions WHERE user_id = ? ORDER BY id", (user_id,)
            )
        ]

    def api_logs(self) -> str:
        return next(p for p in self.running if p.name == "api").logs()


def member(telegram_id: int, *, auth_date: int | None = None) -> dict[str, str]:
    return {"Authorization": mini_app_authorization(BOT_TOKEN, telegram_id, auth_date=auth_date)}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    backend: str = request.param
    tmp = tmp_path_factory.mktemp(f"miniapp-{backend}")
    pg_url = None
    if backend == "postgres":
        pg_url = request.getfixturevalue("make_pg_database")(
            template=request.getfixturevalue("pg_template")
        )
    sandbox_port, botapi_port, api_port = free_port(), free_port(), free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))},
        **database_environ(backend, str(tmp / "data"), pg_url),
        "TELEGRAM_API_URL": sandbox,
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "YOOKASSA_API_URL": sandbox,
        "YOOKASSA_SHOP_ID": DEFAULT_YOOKASSA_SHOP_ID,
        "YOOKASSA_SECRET_KEY": DEFAULT_YOOKASSA_SECRET_KEY,
        "BOTAPI_SEND_TOKEN": "miniapp-send-token-0123456789abcdef",
        "BOTAPI_WORKERS": "1",
        "DOMOS_RUN_DIR": str(tmp / "run"),
        "METRICS_PORT": str(free_port()),
        "LOG_LEVEL": "info",
        "PAYMENT_RETURN_URL": RETURN_URL,
        "PAYMENT_RETURN_URL_HOSTS": "t.me,app.example",
        "API_RATE_LIMIT_MEMBER": "1000/minute",
        "API_RATE_LIMIT_SOURCE": "10000/minute",
        # A YooKassa answer held back (sandbox fault `timeout`) is lost after this long.
        "API_PROVIDER_TIMEOUT_S": "1",
    }
    subprocess.run(
        [*DOMOS, "db", "upgrade"], cwd=ROOT, env=environ, check=True, capture_output=True
    )
    db = sync_database(Settings.from_env(environ))
    db.open()
    stack = Stack(backend, environ, tmp, db, sandbox=sandbox, api=f"http://127.0.0.1:{api_port}")
    try:
        stack.start(
            "sandbox",
            [
                "sandbox",
                "--port",
                str(sandbox_port),
                "--no-limits",
                "--webhook-url",
                f"http://127.0.0.1:{botapi_port}/yookassa/webhook",
            ],
            f"{sandbox}/_sandbox/health",
        )
        stack.start(
            "botapi",
            ["botapi", "--port", str(botapi_port)],
            f"http://127.0.0.1:{botapi_port}/health",
        )
        stack.start("api", ["api", "--port", str(api_port)], f"{stack.api}/health")
        yield stack
    finally:
        for program in reversed(stack.running):
            program.stop()
        db.close()
    # Whatever the hostile member sent, nothing broke inside: no error, no traceback.
    for program in stack.running:
        broken = [
            line
            for line in program.logs().splitlines()
            if '"level": "error"' in line or '"level": "critical"' in line or "Traceback" in line
        ]
        assert not broken, f"{program.name} logged:\n" + "\n".join(broken[:5])
