"""Bot API calls that failed for a moment are made again.

A handler's call that fails ends its update: Telegram does not send it twice. A payer's join
request whose approval met a Telegram hiccup would stay pending for good (the Bot API cannot
list pending requests), and a stranger would stay in a paid chat. So, for every call but
getUpdates (polling has its own backoff):
- flood control (429) is waited out, up to MAX_RETRY_AFTER_S: Telegram did nothing;
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


class RetryTransient(BaseRequestMiddleware):
    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        failed = 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                failed += 1
                too_long = exc.retry_after > MAX_RETRY_AFTER_S
                if name == "getUpdates" or too_long or SCHEDULE.exhausted(failed):
                    raise
                delay = float(exc.retry_after)
            except (TelegramServerError, TelegramNetworkError):
                failed += 1
                if name not in MAY_RUN_TWICE or SCHEDULE.exhausted(failed):
                    raise
                delay = SCHEDULE.delay_s(failed)
            log.warning("telegram_call_retried", method=name, failures=failed, delay_s=delay)
            await sleep(delay)
