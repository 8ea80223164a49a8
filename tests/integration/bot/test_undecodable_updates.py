"""An update aiogram cannot read does not stop polling (services/bot/undecodable_updates.py).

A Bot API server on a local port answers getUpdates with a batch whose first update has a
ChatMember status aiogram does not know (as a Bot API newer than aiogram would send), then a
member's message. aiogram polls it over HTTP through the bot's own session (build_bot): the
message is handled, the unreadable update is counted, and the next getUpdates confirms both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiogram import Dispatcher
from aiogram.types import Message
from aiohttp import web

from services.bot.app import build_bot
from services.bot.config import BotSettings
from services.bot.metrics import UNDECODABLE_UPDATES
from tests.ports import free_port

TOKEN = "100000001:undecodable-test-token"
USER = {"id": 700000042, "is_bot": False, "first_name": "Агент"}
CHAT = {"id": -1009000000001, "type": "supergroup", "title": "Клуб"}
UNKNOWN_STATUS = {
    "update_id": 10,
    "chat_member": {
        "chat": CHAT,
        "from": USER,
        "date": 1764900000,
        "old_chat_member": {"status": "member", "user": USER},
        "new_chat_member": {"status": "superadmin", "user": USER},
    },
}
MESSAGE = {
    "update_id": 11,
    "message": {
        "message_id": 1,
        "date": 1764900001,
        "chat": {"id": USER["id"], "type": "private", "first_name": "Агент"},
        "from": USER,
        "text": "/help",
    },
}


class FakeBotApi:
    """getMe, and getUpdates as Telegram answers it: every update from the offset on, until a
    later offset confirms it. Records the offsets asked for."""

    def __init__(self) -> None:
        self.offsets: list[int | None] = []
        #: Set once a getUpdates confirmed both updates.
        self.confirmed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method == "getMe":
            me = {"id": 100000001, "is_bot": True, "first_name": "domos", "username": "domos_bot"}
            return web.json_response({"ok": True, "result": me})
        assert method == "getUpdates", method
        data = await request.post() if request.can_read_body else {}
        offset = None if data.get("offset") is None else int(str(data["offset"]))
        self.offsets.append(offset)
        pending = [
            u for u in (UNKNOWN_STATUS, MESSAGE) if offset is None or u["update_id"] >= offset
        ]
        if not pending:
            self.confirmed.set()
            await asyncio.sleep(0.05)
        return web.json_response({"ok": True, "result": pending})


@pytest.fixture
async def bot_api() -> AsyncIterator[tuple[FakeBotApi, str]]:
    api = FakeBotApi()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield api, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_an_unreadable_update_is_skipped_and_the_next_one_handled(
    bot_api: tuple[FakeBotApi, str],
) -> None:
    api, url = bot_api
    environ = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": url}
    bot = build_bot(BotSettings.from_env(environ))
    handled: list[str] = []
    dp = Dispatcher()

    @dp.message()
    async def on_message(message: Message) -> None:
        handled.append(message.text or "")

    skipped_before = UNDECODABLE_UPDATES._value.get()
    polling = asyncio.create_task(dp.start_polling(bot, polling_timeout=1, handle_signals=False))
    try:
        await asyncio.wait_for(api.confirmed.wait(), timeout=10)
    finally:
        await dp.stop_polling()
        await polling
        await bot.session.close()
    assert handled == ["/help"]
    assert UNDECODABLE_UPDATES._value.get() - skipped_before == 1
    # The second getUpdates starts after both: Telegram drops them, the batch never comes back.
    assert api.offsets[:2] == [None, 12]
