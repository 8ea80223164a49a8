"""Updates the bot cannot read are skipped and reported, not asked for again for good.

aiogram reads a getUpdates answer whole: one update it cannot read (a ChatMember status or a
field of a Bot API newer than this aiogram) failed the batch with ClientDecodeError, and polling
asked for the same batch again, with backoff, for as long as Telegram keeps it (24 hours): no
member was answered meanwhile. This session middleware reads such a batch update by update,
hands on those it can read, logs and counts the others, and moves the next getUpdates past them
(which confirms them to Telegram).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import structlog
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import ClientDecodeError
from aiogram.methods import GetUpdates, Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Update
from pydantic import ValidationError

from services.bot.metrics import UNDECODABLE_UPDATES

if TYPE_CHECKING:
    from aiogram import Bot

log = structlog.get_logger("bot")


class SkipUndecodableUpdates(BaseRequestMiddleware):
    def __init__(self) -> None:
        #: The offset the next getUpdates starts from at least: past the updates skipped.
        self.skip_to: int | None = None

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        polling = method
        if not isinstance(polling, GetUpdates):
            return await make_request(bot, method)
        if self.skip_to is not None and (polling.offset or 0) < self.skip_to:
            polling.offset = self.skip_to
        try:
            return await make_request(bot, method)
        except ClientDecodeError as exc:
            batch = _batch(exc.data)
            if batch is None:  # not a batch of updates (a broken answer): polling retries it
                raise
            # What a request returns here is the answer's result (the session unwraps the
            # Response, whatever the middleware type says).
            return cast(Response[TelegramType], self._readable(bot, batch))

    def _readable(self, bot: Bot, batch: list[Any]) -> list[Update]:
        readable = []
        for item in batch:
            update_id = item.get("update_id") if isinstance(item, dict) else None
            if isinstance(update_id, int) and not isinstance(update_id, bool):
                self.skip_to = max(self.skip_to or 0, update_id + 1)
            try:
                readable.append(Update.model_validate(item, context={"bot": bot}))
            except ValidationError as error:
                UNDECODABLE_UPDATES.inc()
                kinds = sorted(set(item) - {"update_id"}) if isinstance(item, dict) else None
                log.error(
                    "update_undecodable",
                    update_id=update_id,
                    kinds=kinds,
                    error=str(error).splitlines()[0],
                )
        return readable


def _batch(data: Any) -> list[Any] | None:
    """The updates of a getUpdates answer that was JSON; None for anything else."""
    if isinstance(data, dict) and data.get("ok") is True and isinstance(data.get("result"), list):
        return cast(list[Any], data["result"])
    return None
