"""getUpdates long polling, and webhooks: setWebhook, deleteWebhook, getWebhookInfo, delivery."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import structlog

from services.sandbox.telegram.errors import bad_request, conflict
from services.sandbox.telegram.params import Params
from services.sandbox.telegram.service import TelegramService
from services.sandbox.telegram.state import (
    ALL_UPDATE_TYPES,
    DEFAULT_UPDATE_TYPES,
    BotState,
    Webhook,
)
from services.sandbox.webhooks import retry_delay_s

log = structlog.get_logger("sandbox.telegram")

WEBHOOK_ACTIVE = (
    "can't use getUpdates method while webhook is active; use deleteWebhook to delete the "
    "webhook first"
)
TERMINATED = (
    "terminated by other getUpdates request; make sure that only one bot instance is running"
)
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
MAX_POLL_TIMEOUT_S = 50


def _allowed_updates(params: Params) -> frozenset[str] | None:
    value = params.json_value("allowed_updates", "can't parse allowed_updates JSON object")
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_request("can't parse allowed_updates JSON object")
    if not value:
        return DEFAULT_UPDATE_TYPES
    return frozenset(str(kind) for kind in value) & ALL_UPDATE_TYPES


async def get_updates(svc: TelegramService, bot: BotState, params: Params) -> Any:
    if bot.webhook is not None:
        raise conflict(WEBHOOK_ACTIVE)
    offset = params.integer("offset") or 0
    limit = params.integer("limit") or 100
    limit = min(max(limit, 1), 100)
    timeout_s = min(max(params.integer("timeout") or 0, 0), MAX_POLL_TIMEOUT_S)
    allowed = _allowed_updates(params)
    if allowed is not None:
        bot.allowed_updates = allowed
    # A new poll ends any older one still waiting, as Telegram does.
    bot.poll_generation += 1
    generation = bot.poll_generation
    bot.new_update.set()
    await asyncio.sleep(0)

    world = svc.world
    if offset < 0:
        keep = -offset
        while len(bot.updates) > keep:
            bot.updates.popleft()
            bot.update_dates.popleft()
    elif offset > 0:
        world.confirm_updates(bot, offset)
    world.expire_updates(bot)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not bot.updates:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        bot.new_update.clear()
        try:
            await asyncio.wait_for(bot.new_update.wait(), remaining)
        except TimeoutError:
            break
        if generation != bot.poll_generation:
            raise conflict(TERMINATED)
        if bot.webhook is not None:
            raise conflict(WEBHOOK_ACTIVE)
    return list(bot.updates)[:limit]


async def set_webhook(svc: TelegramService, bot: BotState, params: Params) -> Any:
    url = params.text("url") or ""
    if not url:
        return await delete_webhook(svc, bot, params)
    if not url.startswith(("http://", "https://")):
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = params.text("secret_token")
    if secret is not None and not _SECRET_TOKEN.match(secret):
        raise bad_request("secret token contains unallowed characters")
    max_connections = params.integer("max_connections") or 40
    if not 1 <= max_connections <= 100:
        raise bad_request("invalid max_connections specified")
    allowed = _allowed_updates(params)
    if allowed is not None:
        bot.allowed_updates = allowed
    if params.boolean("drop_pending_updates"):
        svc.world.drop_updates(bot)
    bot.webhook = Webhook(url=url, secret_token=secret, max_connections=max_connections)
    # Wake a long poll so it ends with 409, and start (or keep) the delivery worker.
    bot.new_update.set()
    if bot.webhook_task is None or bot.webhook_task.done():
        bot.webhook_task = svc.sender.spawn(deliver_updates(svc, bot))
    log.info("webhook_set", bot_id=bot.id, url=url)
    return True


async def delete_webhook(svc: TelegramService, bot: BotState, params: Params) -> Any:
    if params.boolean("drop_pending_updates"):
        svc.world.drop_updates(bot)
    if bot.webhook is not None:
        bot.webhook = None
        bot.new_update.set()
        log.info("webhook_deleted", bot_id=bot.id)
    return True


async def get_webhook_info(svc: TelegramService, bot: BotState, params: Params) -> Any:
    svc.world.expire_updates(bot)
    webhook = bot.webhook
    info: dict[str, Any] = {
        "url": webhook.url if webhook else "",
        "has_custom_certificate": False,
        "pending_update_count": len(bot.updates),
    }
    if webhook is not None:
        info["max_connections"] = webhook.max_connections
        if bot.allowed_updates != DEFAULT_UPDATE_TYPES:
            info["allowed_updates"] = sorted(bot.allowed_updates)
        if webhook.last_error_date is not None:
            info["last_error_date"] = webhook.last_error_date
            info["last_error_message"] = webhook.last_error_message
    return info


async def deliver_updates(svc: TelegramService, bot: BotState) -> None:
    """POST queued updates to the webhook one by one, in order; retry each until it is taken."""
    failures = 0
    while bot.webhook is not None:
        svc.world.expire_updates(bot)
        if not bot.updates:
            bot.new_update.clear()
            await bot.new_update.wait()
            continue
        webhook = bot.webhook
        update = bot.updates[0]
        headers = {}
        if webhook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = webhook.secret_token
        ok = await svc.sender.attempt("telegram", webhook.url, update, headers, failures + 1)
        if ok:
            failures = 0
            if bot.updates and bot.updates[0] is update:
                bot.updates.popleft()
                bot.update_dates.popleft()
            continue
        failures += 1
        last = svc.sender.deliveries[-1]
        webhook.last_error_date = svc.clock.now_int()
        webhook.last_error_message = (
            f"Wrong response from the webhook: {last.status}"
            if last.status is not None
            else f"Connection failed: {last.error}"
        )
        await asyncio.sleep(retry_delay_s(svc.config.webhook_retry_intervals_s, failures))
