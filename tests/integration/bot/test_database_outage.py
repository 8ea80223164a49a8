"""Updates that arrive while the database is down are handled once it is back
(services/bot/redelivery.py), also when the bot is stopped during the outage.

A bot process of its own per test and backend, whose database the test takes away: PostgreSQL
refuses connections to the bot's database (ALLOW_CONNECTIONS false, its sessions terminated);
SQLite's main file is held by a writer of the test (BEGIN IMMEDIATE) past the bot's busy timeout.
A newcomer sends /start and /help, a payer asks to join the paid chat; the database comes back;
the newcomer is answered once and in order, the payer approved once.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from monitors import texts
from runtime.config import Settings
from services.bot.redelivery import spool_path
from services.sandbox import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_YOOKASSA_SECRET_KEY,
    DEFAULT_YOOKASSA_SHOP_ID,
)
from tests.conftest import database_environ
from tests.integration.bot.conftest import (
    DOMOS,
    ROOT,
    BotProcess,
    Sandbox,
    http_text,
    wait_for,
)
from tests.ports import free_port


class Outage(Protocol):
    def begin(self) -> None: ...
    def end(self) -> None: ...


class PostgresOutage:
    """The bot's database refuses new connections and loses the ones it had."""

    def __init__(self, server_url: str, database_url: str) -> None:
        self.server_url = server_url
        self.database = urlsplit(database_url).path.lstrip("/")

    def _run(self, *statements: sql.Composable) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def begin(self) -> None:
        name = sql.Identifier(self.database)
        self._run(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name),
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = {} AND pid <> pg_backend_pid()"
            ).format(sql.Literal(self.database)),
        )

    def end(self) -> None:
        name = sql.Identifier(self.database)
        self._run(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))


class SQLiteOutage:
    """Another writer holds the main file past the bot's busy timeout: every write fails."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def begin(self) -> None:
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    def end(self) -> None:
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def outage_bot(
    request: pytest.FixtureRequest, sandbox: Sandbox, tmp_path: Path
) -> Iterator[tuple[BotProcess, Outage]]:
    backend: str = request.param
    pg_url = None
    if backend == "postgres":
        make_pg_database = request.getfixturevalue("make_pg_database")
        pg_url = make_pg_database(template=request.getfixturevalue("pg_template"))
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))},
        **database_environ(backend, str(tmp_path / "data"), pg_url),
        # An outage shows within a second or two rather than the default ten.
        "DB_POOL_TIMEOUT_S": "2",
        "SQLITE_BUSY_TIMEOUT_S": "1",
        "TELEGRAM_API_URL": sandbox.base,
        "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "YOOKASSA_API_URL": sandbox.base,
        "YOOKASSA_SHOP_ID": DEFAULT_YOOKASSA_SHOP_ID,
        "YOOKASSA_SECRET_KEY": DEFAULT_YOOKASSA_SECRET_KEY,
        "BOT_POLLING_TIMEOUT_S": "2",
        "METRICS_PORT": str(free_port()),
        "DOMOS_PROGRAM": "bot",
        "LOG_LEVEL": "info",
    }
    subprocess.run(
        [*DOMOS, "db", "upgrade"], cwd=ROOT, env=environ, check=True, capture_output=True
    )
    settings = Settings.from_env(environ)
    outage: Outage
    if pg_url is not None:
        outage = PostgresOutage(request.getfixturevalue("pg_server_url"), pg_url)
    else:
        outage = SQLiteOutage(settings.db.sqlite_path("main"))
    bot = BotProcess(environ, tmp_path / "bot.log", int(environ["METRICS_PORT"]))
    bot.db.open()
    try:
        bot.start()
        yield bot, outage
        outage.end()
        if bot.process is not None:
            assert bot.stop() == 0, bot.log_text()
    finally:
        outage.end()
        if bot.process is not None:
            bot.process.kill()
            bot.process.wait(10)
        bot.db.close()


def _payer_and_paid_chat(sandbox: Sandbox, bot: BotProcess) -> tuple[int, int]:
    """A member with a live subscription (welcomed once), and a paid supergroup."""
    payer = sandbox.new_user()
    sandbox.say(payer, "/start")
    sandbox.wait_sent(payer, 1)
    bot.db.execute(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (code) DO NOTHING",
        ("month", "Месяц", 150000, 30),
    )
    tariff_id = bot.db.fetchval("SELECT id FROM tariffs WHERE code = 'month'")
    user_id = bot.db.fetchval("SELECT id FROM users WHERE telegram_id = ?", (payer,))
    now = datetime.now(UTC)
    bot.db.execute(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end) VALUES (?, ?, 'active', ?, ?)",
        (user_id, tariff_id, now - timedelta(days=1), now + timedelta(days=29)),
    )
    chat_id = -(1_000_000_000_000 + sandbox.new_user())
    sandbox.control(
        "POST", "/telegram/chats", {"id": chat_id, "type": "supergroup", "title": "Агенты PRO"}
    )
    bot.db.execute(
        "INSERT INTO chats (telegram_chat_id, kind, is_managed) VALUES (?, 'supergroup', ?)",
        (chat_id, True),
    )
    return payer, chat_id


def _processed(bot: BotProcess) -> int:
    """Updates through the dispatcher (handled, set aside or failed): aiogram logs each."""
    return bot.log_text().count('"event": "Update id=')


def _send_during_outage(sandbox: Sandbox, bot: BotProcess, outage: Outage) -> tuple[int, int, int]:
    """The newcomer's /start and /help and the payer's join request, sent with the database
    away, once each has been tried (and failed or set aside)."""
    payer, chat_id = _payer_and_paid_chat(sandbox, bot)
    newcomer = sandbox.new_user()
    done = _processed(bot)
    outage.begin()
    sandbox.say(newcomer, "/start")
    sandbox.say(newcomer, "/help")
    sandbox.control("POST", "/telegram/join_requests", {"user_id": payer, "chat_id": chat_id})
    wait_for(lambda: _processed(bot) >= done + 3, 30, "the three updates to be through")
    return newcomer, payer, chat_id


def _assert_handled_once(sandbox: Sandbox, newcomer: int, payer: int, chat_id: int) -> None:
    # Answered in the order asked, each once.
    replies = sandbox.wait_sent(newcomer, 2, timeout_s=40)
    assert [m["text"] for m in replies] == [texts.WELCOME_NEW, texts.HELP]
    wait_for(
        lambda: not sandbox.control("GET", f"/telegram/join_requests?chat_id={chat_id}"),
        40,
        "the join request to be decided",
    )
    members = {
        m["user_id"]: m["status"]
        for m in sandbox.control("GET", f"/telegram/chats/{chat_id}/members")
    }
    assert members.get(payer) == "member"
    to_payer = sandbox.wait_sent(payer, 2)
    assert "одобрена" in to_payer[1]["text"]

    # Nothing comes twice: no second reply, no second approval.
    time.sleep(3)
    assert len(sandbox.sent(newcomer)) == 2
    assert len(sandbox.sent(payer)) == 2
    approvals = [
        a
        for a in sandbox.control("GET", f"/telegram/actions?chat_id={chat_id}&user_id={payer}")
        if a["action"] == "join_request_approved"
    ]
    assert len(approvals) == 1


def _metric(bot: BotProcess, name: str) -> float:
    total = 0.0
    for line in http_text(f"http://127.0.0.1:{bot.metrics_port}/metrics").splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_updates_during_an_outage_are_handled_once_it_is_over(
    sandbox: Sandbox, outage_bot: tuple[BotProcess, Outage]
) -> None:
    bot, outage = outage_bot
    newcomer, payer, chat_id = _send_during_outage(sandbox, bot, outage)
    assert sandbox.sent(newcomer) == []  # nothing answered while the database is away
    outage.end()

    _assert_handled_once(sandbox, newcomer, payer, chat_id)
    assert bot.db.fetchval("SELECT COUNT(*) FROM users WHERE telegram_id = ?", (newcomer,)) == 1
    assert _metric(bot, "domos_bot_updates_deferred_total") >= 3
    assert _metric(bot, "domos_bot_updates_replayed_total") >= 3
    assert _metric(bot, "domos_bot_updates_waiting") == 0
    assert _metric(bot, "domos_bot_updates_given_up_total") == 0
    assert '"update_failed"' not in bot.log_text()


def test_updates_waiting_when_the_bot_stops_are_handled_after_the_restart(
    sandbox: Sandbox, outage_bot: tuple[BotProcess, Outage]
) -> None:
    bot, outage = outage_bot
    newcomer, payer, chat_id = _send_during_outage(sandbox, bot, outage)

    assert bot.stop(30) == 0, bot.log_text()  # SIGTERM in the middle of the outage
    assert '"deferred_updates_spooled"' in bot.log_text()
    spool = spool_path(Settings.from_env(bot.environ).db.data_dir)
    assert len(spool.read_text().splitlines()) == 3
    assert sandbox.sent(newcomer) == []

    outage.end()
    bot.start()
    _assert_handled_once(sandbox, newcomer, payer, chat_id)
    wait_for(lambda: not spool.exists(), 10, "the spool to be emptied")
    assert '"update_failed"' not in bot.log_text()
