"""Wiring and the run loop: the dispatcher, its dependencies, metrics and a graceful stop.

Dependencies reach handlers as keyword arguments from the dispatcher's workflow data:
`db` (AsyncDatabase), `clock` (() -> aware UTC datetime), `bot_settings`, `payments` (a YooKassa
client, or None when no credentials are configured) and `bot_username`.

An update whose handling met the database down is deferred and handled again once it is back,
kept across a stop in a spool under DOMOS_DATA_DIR (services/bot/redelivery.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import BotCommand, ErrorEvent

from monitors import texts
from runtime.db import AsyncDatabase, async_database
from services.bot import repository
from services.bot.config import BotSettings
from services.bot.handlers import build_routers
from services.bot.metrics import REPLAY_KEY, InFlight, UpdateMetricsMiddleware
from services.bot.payments import PaymentProvider
from services.bot.redelivery import Deferred, LateCallbackAnswers, Redelivery, spool_path
from services.bot.telegram_retry import RetryTransient
from services.bot.undecodable_updates import SkipUndecodableUpdates

log = structlog.get_logger("bot")


def utcnow() -> datetime:
    return datetime.now(UTC)


def build_bot(settings: BotSettings) -> Bot:
    telegram = settings.runtime.telegram
    session = AiohttpSession(api=TelegramAPIServer.from_base(telegram.api_url))
    session.middleware(RetryTransient())
    session.middleware(SkipUndecodableUpdates())
    session.middleware(LateCallbackAnswers())
    return Bot(telegram.require_token(), session=session)


def build_dispatcher(
    *,
    db: AsyncDatabase,
    settings: BotSettings,
    payments: PaymentProvider | None,
    clock: Callable[[], datetime] = utcnow,
    in_flight: InFlight | None = None,
    redelivery: Redelivery | None = None,
) -> Dispatcher:
    dp = Dispatcher(db=db, bot_settings=settings, payments=payments, clock=clock)
    dp.update.outer_middleware(UpdateMetricsMiddleware(in_flight or InFlight()))
    # Inside the metrics middleware (a replay is in flight too), outside every handler and
    # filter (they query the database).
    dp.update.outer_middleware(redelivery or Redelivery())
    dp.include_routers(*build_routers())
    dp.errors.register(on_error)
    return dp


async def on_error(event: ErrorEvent) -> bool:
    """Log the failure (the metrics middleware counted it) and keep polling."""
    log.error(
        "update_failed",
        update_id=event.update.update_id,
        update_type=event.update.event_type,
        error=repr(event.exception),
        exc_info=event.exception,
    )
    query = event.update.callback_query
    if query is not None:
        # Do not leave the member's button spinning.
        try:
            await query.answer("Что-то пошло не так, попробуйте ещё раз.")
        except Exception as exc:  # the answer is best effort; the error is already logged
            log.info("error_answer_failed", error=repr(exc))
    return True


async def run(settings: BotSettings, *, schema_recheck_s: float) -> None:
    """Poll until SIGTERM/SIGINT, then let handlers in flight finish and close everything.

    Nothing is asked of Telegram or the database before the schema has every migration of
    this code (runtime.db.schema_gate): updates wait at Telegram meanwhile."""
    from payments.client import YooKassaClient
    from runtime.db import schema_gate

    runtime = settings.runtime
    db = async_database(runtime, name="bot")
    payments: Any = None
    if runtime.yookassa.shop_id and runtime.yookassa.secret_key:
        payments = YooKassaClient(runtime)
        await payments.open()
    else:
        log.warning("payments_disabled", reason="YOOKASSA_SHOP_ID/YOOKASSA_SECRET_KEY not set")
    in_flight = InFlight()
    redelivery = Redelivery(spool_path(runtime.db.data_dir))
    bot = build_bot(settings)
    await db.open()
    try:
        stop = asyncio.Event()
        with schema_gate.stop_on_signals(stop):
            verdict = await schema_gate.wait_for_schema(
                db,
                stop=stop,
                logical_dbs=schema_gate.PROGRAM_DATABASES["bot"],
                recheck_s=schema_recheck_s,
            )
        if verdict is None:
            log.info("bot_stopping", in_flight=0, waiting=0)
            return
        await repository.mark_paid_chats(db, settings.paid_chat_ids, utcnow())
        log.info("paid_chats_configured", chat_ids=sorted(settings.paid_chat_ids))
        me = await bot.me()
        dp = build_dispatcher(
            db=db, settings=settings, payments=payments, in_flight=in_flight, redelivery=redelivery
        )
        # In the workflow data, not polling's: a replay (Dispatcher.feed_update) needs it too.
        dp["bot_username"] = me.username or ""
        await bot.set_my_commands([BotCommand(command=c, description=d) for c, d in texts.COMMANDS])
        # The updates a stop or a crash left waiting, before anything new is polled.
        redelivery.restore(bot)

        async def feed(entry: Deferred) -> None:
            await dp.feed_update(bot, entry.update, **{REPLAY_KEY: entry})

        replaying = asyncio.create_task(redelivery.replay_forever(feed))
        log.info(
            "bot_started",
            username=me.username,
            bot_id=me.id,
            allowed_updates=dp.resolve_used_update_types(),
        )
        try:
            await dp.start_polling(
                bot,
                polling_timeout=settings.polling_timeout_s,
                handle_signals=True,
                close_bot_session=False,
            )
        finally:
            log.info("bot_stopping", in_flight=in_flight.count, waiting=redelivery.waiting)
            deadline = time.monotonic() + settings.drain_timeout_s
            await redelivery.stop(replaying, settings.drain_timeout_s)
            if not await in_flight.wait_idle(max(0.0, deadline - time.monotonic())):
                log.warning("bot_stop_deadline_exceeded", in_flight=in_flight.count)
            # What waits still, and what the deadline cut short, is handled after the restart.
            redelivery.spool()
    finally:
        await bot.session.close()
        if payments is not None:
            await payments.close()
        await db.close()
    log.info("bot_stopped")
