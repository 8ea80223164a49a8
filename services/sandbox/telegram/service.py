"""The Telegram side of the sandbox: world state plus what the methods need around it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from services.sandbox.clock import Clock
from services.sandbox.config import SandboxConfig
from services.sandbox.telegram.errors import (
    TelegramApiError,
    chat_migrated,
    forbidden,
    too_many_requests,
)
from services.sandbox.telegram.limits import FloodControl
from services.sandbox.telegram.params import Params
from services.sandbox.telegram.state import BotState, Chat, World
from services.sandbox.webhooks import WebhookSender

Method = Callable[["TelegramService", BotState, Params], Awaitable[Any]]


class TelegramService:
    def __init__(self, config: SandboxConfig, clock: Clock, sender: WebhookSender) -> None:
        self.config = config
        self.clock = clock
        self.sender = sender
        self.world = World(clock, config.bot_tokens)
        self.flood = FloodControl(config.limits)
        self.deactivated: set[int] = set()

    def reset(self) -> None:
        for bot in self.world.bots.values():
            if bot.webhook_task is not None:
                bot.webhook_task.cancel()
        self.world = World(self.clock, self.config.bot_tokens)
        self.flood.reset()
        self.deactivated.clear()

    def default_bot(self) -> BotState:
        return next(iter(self.world.bots.values()))

    def check_can_send(self, bot: BotState, chat: Chat) -> None:
        """403s first (they are final), then the flood limits."""
        if chat.type == "private":
            if chat.id in self.deactivated:
                raise forbidden("user is deactivated")
            if chat.id in bot.blocked_by:
                raise forbidden("bot was blocked by the user")
        else:
            status = self.world.member(chat.id, bot.id).status
            if status in ("left", "kicked"):
                kind = "channel chat" if chat.type == "channel" else "group chat"
                if chat.type == "supergroup":
                    kind = "supergroup chat"
                raise forbidden(f"bot was kicked from the {kind}")
        retry_after = self.flood.check(bot.id, chat.id, chat.is_group, self.clock.now())
        if retry_after is not None:
            raise too_many_requests(retry_after)

    def require_chat(self, params: Params) -> Chat:
        chat = self.world.find_chat(params.chat_id())
        if chat is None:
            raise TelegramApiError(400, "Bad Request: chat not found")
        if chat.migrated_to is not None:
            raise chat_migrated(chat.migrated_to)
        return chat
