"""Updates that met the database down are kept and handled again (services/bot/redelivery.py).

A real Dispatcher with the bot's middlewares and a handler whose database is a switch; updates
go in through `Dispatcher.feed_update`, as polling feeds them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import AnswerCallbackQuery
from aiogram.types import ErrorEvent, Message, Update

from runtime.errors import DatabaseUnavailable, TransientError, UniqueViolation
from services.bot import redelivery as redelivery_module
from services.bot.metrics import (
    REPLAY_KEY,
    UPDATES_GIVEN_UP,
    InFlight,
    UpdateMetricsMiddleware,
)
from services.bot.redelivery import REPLAYING, Deferred, LateCallbackAnswers, Redelivery

TOKEN = "100000001:redelivery-test-token"


class Database:
    """Up or down; what the handler saw, in order."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.handled: list[tuple[int, str]] = []

    def use(self, chat_id: int, text: str) -> None:
        if self.error is not None:
            raise self.error
        self.handled.append((chat_id, text))


def message(update_id: int, user_id: int, text: str, chat_id: int | None = None) -> Update:
    user = {"id": user_id, "is_bot": False, "first_name": "Агент"}
    chat = (
        {"id": user_id, "type": "private", "first_name": "Агент"}
        if chat_id is None
        else {"id": chat_id, "type": "supergroup", "title": "Клуб"}
    )
    return Update.model_validate(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": 1764900000,
                "chat": chat,
                "from": user,
                "text": text,
            },
        }
    )


class Harness:
    def __init__(self, spool: Path, clock: list[float]) -> None:
        self.db = Database()
        self.errors: list[BaseException] = []
        self.clock = clock
        self.redelivery = Redelivery(spool, clock=lambda: self.clock[0])
        self.bot = Bot(TOKEN)
        self.dp = Dispatcher()
        self.dp.update.outer_middleware(UpdateMetricsMiddleware(InFlight()))
        self.dp.update.outer_middleware(self.redelivery)
        self.dp.message.register(self._handle)
        self.dp.errors.register(self._on_error)
        self.task: asyncio.Task[None] | None = None

    async def _handle(self, message: Message) -> None:
        await asyncio.sleep(0)
        self.db.use(message.chat.id, message.text or "")

    async def _on_error(self, event: ErrorEvent) -> bool:
        self.errors.append(event.exception)
        return True

    async def feed(self, update: Update) -> None:
        await self.dp.feed_update(self.bot, update)

    async def _replay(self, entry: Deferred) -> None:
        await self.dp.feed_update(self.bot, entry.update, **{REPLAY_KEY: entry})

    def start_replaying(self) -> None:
        self.task = asyncio.create_task(self.redelivery.replay_forever(self._replay))

    async def stop(self) -> None:
        if self.task is not None:
            await self.redelivery.stop(self.task, 5)
        await self.bot.session.close()


@pytest.fixture(autouse=True)
def quick_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        redelivery_module,
        "SCHEDULE",
        redelivery_module.RetrySchedule(base_s=0.01, cap_s=0.05, max_attempts=1000),
    )
    monkeypatch.setattr(redelivery_module, "PERSIST_EVERY_S", 0.01)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "bot" / "deferred_updates.jsonl", [1_000_000.0])
    yield h
    await h.stop()


async def wait_until(predicate: Any, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_updates_of_an_outage_are_handled_once_back_each_chat_in_order(
    harness: Harness,
) -> None:
    harness.start_replaying()
    harness.db.error = DatabaseUnavailable("postgres: no connection from the pool in time")
    await harness.feed(message(1, 501, "/start"))
    await harness.feed(message(2, 502, "/start"))
    harness.db.error = None
    # The first user's later update waits behind the one of theirs that met the outage.
    await harness.feed(message(3, 501, "/help"))
    assert harness.db.handled == []
    assert harness.redelivery.waiting == 3

    await wait_until(lambda: harness.redelivery.waiting == 0)
    assert sorted(harness.db.handled) == [(501, "/help"), (501, "/start"), (502, "/start")]
    mine = [text for chat, text in harness.db.handled if chat == 501]
    assert mine == ["/start", "/help"]
    assert harness.errors == []


async def test_a_transient_error_defers_and_integrity_errors_and_bugs_do_not(
    harness: Harness,
) -> None:
    harness.db.error = TransientError("sqlite: SQLITE_BUSY: database is locked")
    await harness.feed(message(1, 601, "/start"))
    assert harness.redelivery.waiting == 1
    harness.db.error = UniqueViolation("postgres: duplicate")
    await harness.feed(message(2, 602, "/start"))
    harness.db.error = AssertionError("a bug")
    await harness.feed(message(3, 603, "/start"))
    assert harness.redelivery.waiting == 1
    assert [type(e) for e in harness.errors] == [UniqueViolation, AssertionError]


async def test_waiting_updates_survive_a_stop_and_redeliveries_are_not_handled_twice(
    harness: Harness, tmp_path: Path
) -> None:
    harness.db.error = DatabaseUnavailable("postgres: server closed the connection")
    await harness.feed(message(7, 701, "/start"))
    await harness.feed(message(8, 701, "/subscribe"))
    assert harness.redelivery.spool() == 2
    spool = tmp_path / "bot" / "deferred_updates.jsonl"
    assert len(spool.read_text().splitlines()) == 2
    await harness.stop()

    after = Harness(spool, [1_000_060.0])
    try:
        assert after.redelivery.restore(after.bot) == 2
        # Telegram sends an update again that was never confirmed: handled once, from the spool.
        await after.feed(message(7, 701, "/start"))
        after.start_replaying()
        await wait_until(lambda: after.redelivery.waiting == 0)
        assert after.db.handled == [(701, "/start"), (701, "/subscribe")]
        await wait_until(lambda: not spool.exists())
    finally:
        await after.stop()


async def test_an_update_waiting_past_a_day_is_given_up_loudly(
    harness: Harness, tmp_path: Path
) -> None:
    harness.db.error = DatabaseUnavailable("postgres: no connection from the pool in time")
    await harness.feed(message(9, 801, "/start"))
    harness.clock[0] += redelivery_module.KEEP_FOR_S + 1
    before = UPDATES_GIVEN_UP.labels(reason="too_old")._value.get()
    with structlog.testing.capture_logs() as logs:
        harness.start_replaying()
        await wait_until(lambda: harness.redelivery.waiting == 0)
    assert harness.db.handled == []
    assert UPDATES_GIVEN_UP.labels(reason="too_old")._value.get() == before + 1
    [given_up] = [entry for entry in logs if entry["event"] == "update_given_up"]
    assert given_up["log_level"] == "error"
    assert (given_up["content_type"], given_up["user_id"], given_up["reason"]) == (
        "text",
        801,
        "too_old",
    )


async def test_beyond_the_waiting_limit_updates_are_given_up_loudly(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redelivery_module, "MAX_WAITING", 1)
    harness.db.error = DatabaseUnavailable("postgres: no connection from the pool in time")
    with structlog.testing.capture_logs() as logs:
        await harness.feed(message(1, 901, "/start"))
        await harness.feed(message(2, 902, "hello", chat_id=-1009000000009))
    assert harness.redelivery.waiting == 1
    [given_up] = [entry for entry in logs if entry["event"] == "update_given_up"]
    assert (given_up["reason"], given_up["user_id"], given_up["chat_id"]) == (
        "too_many",
        902,
        -1009000000009,
    )


async def test_an_unreadable_spool_line_is_logged_whole_and_the_rest_restored(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "deferred_updates.jsonl"
    good = Deferred(message(5, 555, "/start"), "chat:555:user:555", 1.0, "x")
    spool.write_text("{not json\n" + json.dumps(good.to_json()) + "\n")
    harness = Harness(spool, [2.0])
    try:
        with structlog.testing.capture_logs() as logs:
            assert harness.redelivery.restore(harness.bot) == 1
        [given_up] = [entry for entry in logs if entry["event"] == "update_given_up"]
        assert given_up["content"] == "{not json"
    finally:
        await harness.stop()


async def test_a_late_button_answer_ends_a_replay_no_more_than_a_live_update() -> None:
    async def refuse(bot: Any, method: Any) -> Any:
        raise TelegramBadRequest(method=method, message="Bad Request: query is too old")

    answer = AnswerCallbackQuery(callback_query_id="42")
    late = LateCallbackAnswers()
    replaying = REPLAYING.set(True)
    try:
        assert await late(refuse, cast(Bot, None), answer) is True
    finally:
        REPLAYING.reset(replaying)
    with pytest.raises(TelegramBadRequest):  # live: as before, the error handler answers
        await late(refuse, cast(Bot, None), answer)
