"""Bot API calls that failed for a moment are made again.

A handler's call that fails ends its update: Telegram does not send it twice. A payer's join
request whose approval met a Telegram hiccup would stay pending for good (the Bot API cannot
list pending requests), and a stranger would stay in a paid chat. So, for every call but
getUpdates (polling has its own backoff):
- a message waits for its slot at Telegram's rate (services.bot.telegram_pacing) before every
  attempt: a burst of updates is answered at the pace Telegram takes, not refused;
- flood control (429) is waited out, whatever the method: Telegram did nothing, so even a
  message is safe to send again. A flood wait is no failed attempt (a burst would otherwise use
  up the attempts of half its replies); the waits of one call are bounded in total instead
  (FLOOD_WAIT_BUDGET_S), and a single wait longer than MAX_RETRY_AFTER_S is not waited;
- a 5xx or a network failure is retried on a capped schedule for the methods that may run
  twice (an approval, a ban, a lookup). Never a message: it might have been sent.
"""

from __future__ import annotations

from asyncio import sleep
from typing import TYPE_CHECKING

import structlog
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

from runtime.retry import RetrySchedule
from services.bot.telegram_pacing import SENDS_A_MESSAGE, MessagePacer

if TYPE_CHECKING:
    from aiogram import Bot

log = structlog.get_logger("bot")

#: Methods whose second run changes nothing the first did not (or is refused harmlessly).
MAY_RUN_TWICE = frozenset(
    {
        "approveChatJoinRequest",
        "declineChatJoinRequest",
        "banChatMember",
        "unbanChatMember",
        "getChatMember",
        "getMe",
    }
)
SCHEDULE = RetrySchedule(base_s=0.5, cap_s=4.0, max_attempts=4)
MAX_RETRY_AFTER_S = 30
#: The flood waits one call may add up to before it gives up (a handler is not kept forever).
FLOOD_WAIT_BUDGET_S = 120.0


class RetryTransient(BaseRequestMiddleware):
    def __init__(self, pacer: MessagePacer | None = None) -> None:
        self.pacer = pacer or MessagePacer()

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        failed = 0
        flood_waited_s = 0.0
        while True:
            await self._wait_for_slot(name, method)
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                delay = float(exc.retry_after)
                too_long = delay > MAX_RETRY_AFTER_S or flood_waited_s + delay > FLOOD_WAIT_BUDGET_S
                if name == "getUpdates" or too_long:
                    raise
                flood_waited_s += delay
                log.warning(
                    "telegram_call_retried", method=name, reason="flood_control", delay_s=delay
                )
            except (TelegramServerError, TelegramNetworkError):
                failed += 1
                if name not in MAY_RUN_TWICE or SCHEDULE.exhausted(failed):
                    raise
                delay = SCHEDULE.delay_s(failed)
                log.warning(
                    "telegram_call_retried",
                    method=name,
                    reason="failed",
                    failures=failed,
                    delay_s=delay,
                )
            await sleep(delay)

    async def _wait_for_slot(self, name: str, method: TelegramMethod[TelegramType]) -> None:
        if name not in SENDS_A_MESSAGE:
            return
        chat_id = getattr(method, "chat_id", None)
        # A channel named by @username (the bot never does) is paced as one shared chat.
        delay = self.pacer.reserve(chat_id if isinstance(chat_id, int) else 0)
        if delay > 0:
            await sleep(delay)
