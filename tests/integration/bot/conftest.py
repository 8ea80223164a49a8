"""A real sandbox process and a real `domos bot` process per backend.

The sandbox runs once per module (`domos sandbox --no-limits`); for each backend a fresh,
migrated database and a bot process polling that sandbox. Tests play users through the control
API and wait for what the bot sent and what the database holds. Each test uses its own Telegram
ids, so tests share the processes without interfering.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime.config import Settings
from runtime.db import Database, sync_database
from services.sandbox import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_YOOKASSA_SECRET_KEY,
    DEFAULT_YOOKASSA_SHOP_ID,
)
from tests.conftest import database_environ
from tests.ports import free_port

DOMOS = [sys.executable, "-m", "runtime.cli"]
ROOT = Path(__file__).resolve().parents[3]
_ids = itertools.count(int(time.time()) % 100_000 * 1000 + 800_000_000)


#: PAID_CHAT_IDS of every bot process; the tests' other chats are made per test.
CONFIGURED_PAID_CHATS = (-1009000000001, -1009000000002)


def wait_for(predicate: Callable[[], Any], timeout_s: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def http_json(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


@dataclass
class Sandbox:
    base: str

    def control(self, method: str, path: str, body: Any = None) -> Any:
        status, data = http_json(method, f"{self.base}/_sandbox{path}", body)
        assert status == 200, data
        return data

    def new_user(self, **profile: Any) -> int:
        user_id = next(_ids)
        self.control(
            "POST", "/telegram/users", {"user_id": user_id, "first_name": "Агент", **profile}
        )
        return user_id

    def say(self, user_id: int, text: str, chat_id: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"user_id": user_id, "text": text}
        if chat_id is not None:
            body["chat_id"] = chat_id
        result: dict[str, Any] = self.control("POST", "/telegram/messages", body)
        return result

    def sent(self, chat_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", f"/telegram/sent?chat_id={chat_id}")
        return result

    def wait_sent(self, chat_id: int, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            messages = self.sent(chat_id)
            return messages if len(messages) >= count else None

        return wait_for(enough, timeout_s, f"{count} message(s) to {chat_id}")  # type: ignore[no-any-return]

    def press(self, user_id: int, message: dict[str, Any], data: str) -> dict[str, Any]:
        result: dict[str, Any] = self.control(
            "POST",
            "/telegram/callback_queries",
            {
                "user_id": user_id,
                "chat_id": message["chat"]["id"],
                "message_id": message["message_id"],
                "data": data,
            },
        )
        return result

    def wait_answer(self, query_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        def answered() -> dict[str, Any] | None:
            for answer in self.control("GET", "/telegram/callback_answers"):
                if answer["callback_query_id"] == query_id:
                    return answer  # type: ignore[no-any-return]
            return None

        return wait_for(answered, timeout_s, f"answer to callback {query_id}")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    port = free_port()
    with (tmp_path_factory.mktemp("sandbox") / "sandbox.log").open("wb") as log:
        process = subprocess.Popen(
            [*DOMOS, "sandbox", "--port", str(port), "--no-limits"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return http_json("GET", f"{base}/_sandbox/health")[0] == 200
        except OSError:
            assert process.poll() is None, "sandbox exited"
            return False

    wait_for(up, 20, "the sandbox to listen")
    yield Sandbox(base)
    process.send_signal(signal.SIGTERM)
    process.wait(10)


@dataclass
class BotProcess:
    environ: dict[str, str]
    log_path: Path
    metrics_port: int
    process: subprocess.Popen[bytes] | None = None
    db: Database = field(init=False)

    def __post_init__(self) -> None:
        self.db = sync_database(Settings.from_env(self.environ))

    def start(self) -> None:
        starts = self._starts()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*DOMOS, "bot"], cwd=ROOT, env=self.environ, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        try:
            # Importing aiogram alone takes seconds of CPU; a loaded machine needs patience.
            wait_for(lambda: self._starts() > starts or self._dead(), 90, "the bot to start")
        except AssertionError:
            self.process.kill()
            self.process.wait(10)
            raise
        assert self.process.poll() is None, self.log_text()

    def _starts(self) -> int:
        return self.log_path.read_bytes().count(b'"bot_started"') if self.log_path.exists() else 0

    def _dead(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self, timeout_s: float = 15.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self.process = None
        return code

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def bot_process(
    request: pytest.FixtureRequest,
    sandbox: Sandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BotProcess]:
    backend: str = request.param
    tmp = tmp_path_factory.mktemp(f"bot-{backend}")
    pg_url = None
    if backend == "postgres":
        make_pg_database = request.getfixturevalue("make_pg_database")
        pg_url = make_pg_database(template=request.getfixturevalue("pg_template"))
    metrics_port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))},
        **database_environ(backend, str(tmp / "data"), pg_url),
        "TELEGRAM_API_URL": sandbox.base,
        "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "YOOKASSA_API_URL": sandbox.base,
        "YOOKASSA_SHOP_ID": DEFAULT_YOOKASSA_SHOP_ID,
        "YOOKASSA_SECRET_KEY": DEFAULT_YOOKASSA_SECRET_KEY,
        "BOT_POLLING_TIMEOUT_S": "2",
        "METRICS_PORT": str(metrics_port),
        "DOMOS_PROGRAM": "bot",
        "LOG_LEVEL": "info",
        "PAID_CHAT_IDS": ",".join(str(chat_id) for chat_id in CONFIGURED_PAID_CHATS),
    }
    subprocess.run(
        [*DOMOS, "db", "upgrade"], cwd=ROOT, env=environ, check=True, capture_output=True
    )
    bot = BotProcess(environ, tmp / "bot.log", metrics_port)
    bot.db.open()
    try:
        bot.start()
        yield bot
        if bot.process is not None:
            assert bot.stop() == 0, bot.log_text()
    finally:
        if bot.process is not None:
            bot.process.kill()
            bot.process.wait(10)
        bot.db.close()
