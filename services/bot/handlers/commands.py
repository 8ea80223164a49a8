"""Private-chat commands: /start, /help, /subscribe (and the tariff buttons), /status,
/cancel_autorenew, /autorenew_on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from monitors import texts
from payments.renewals import AutoRenewalInProgress
from runtime.db import AsyncDatabase, Row
from services.bot import repository
from services.bot.callback_ids import parse_id
from services.bot.config import BotSettings
from services.bot.metrics import PAYMENTS_REQUESTED
from services.bot.payments import PaymentProvider, request_payment_link
from services.bot.way_in import join_links

log = structlog.get_logger("bot")

TARIFF_PREFIX = "tariff:"


def build_router() -> Router:
    router = Router(name="commands")
    router.message.filter(F.chat.type == "private")
    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    router.message.register(subscribe, Command("subscribe"))
    router.message.register(status, Command("status"))
    router.message.register(cancel_autorenew, Command("cancel_autorenew"))
    router.message.register(autorenew_on, Command("autorenew_on"))
    router.callback_query.register(tariff_chosen, F.data.startswith(TARIFF_PREFIX))
    return router


async def start(message: Message, db: AsyncDatabase, clock: Callable[[], datetime]) -> None:
    assert message.from_user is not None
    member = await repository.register_user(db, message.from_user, clock())
    log.info("member_registered" if member.created else "member_returned", user_id=member.id)
    await message.answer(texts.WELCOME_NEW if member.created else texts.WELCOME_BACK)


async def help_(message: Message) -> None:
    await message.answer(texts.HELP)


async def status(
    message: Message,
    bot: Bot,
    db: AsyncDatabase,
    clock: Callable[[], datetime],
    bot_settings: BotSettings,
) -> None:
    assert message.from_user is not None
    now = clock()
    member = await repository.register_user(db, message.from_user, now)
    live = await repository.live_subscription(db, member.id, now)
    sub = live or await repository.latest_subscription(db, member.id)
    lines = [texts.subscription_status(sub, bot_settings.runtime.timezone)]
    user = await repository.find_user(db, message.from_user.id)
    if live is not None or await repository.entitled(db, user, now):
        # The way in for one who may be in the paid chats and is not (a lost receipt).
        links, failed = await join_links(bot, db, member.id, member.telegram_id, now)
        lines += texts.way_in(links) + [texts.way_in_failed(title) for title in failed]
    await message.answer("\n".join(lines))


async def cancel_autorenew(
    message: Message, db: AsyncDatabase, clock: Callable[[], datetime]
) -> None:
    assert message.from_user is not None
    now = clock()
    member = await repository.register_user(db, message.from_user, now)
    stop = await repository.stop_auto_renew(db, member.id, now)
    if stop.stopped:
        log.info(
            "auto_renew_stopped",
            user_id=member.id,
            reason="user",
            charge_in_flight=stop.charge_in_flight,
        )
    reply = texts.AUTORENEW_STOPPED if stop.stopped else texts.NOTHING_TO_CANCEL
    if stop.charge_in_flight:
        # Not simply "off": a charge sent before may still go through (and add its period).
        reply = f"{reply}\n\n{texts.CHARGE_STILL_CHECKED}"
    await message.answer(reply)


async def autorenew_on(
    message: Message,
    db: AsyncDatabase,
    clock: Callable[[], datetime],
    bot_settings: BotSettings,
) -> None:
    assert message.from_user is not None
    now = clock()
    member = await repository.register_user(db, message.from_user, now)
    resumed = await repository.resume_auto_renew(db, member.id, now)
    log.info("auto_renew_resume", user_id=member.id, outcome=resumed.outcome)
    if resumed.outcome == repository.AutoRenewResume.RESUMED:
        assert resumed.subscription is not None
        reply = texts.autorenew_on(resumed.subscription, bot_settings.runtime.timezone, now)
    elif resumed.outcome == repository.AutoRenewResume.ALREADY_ON:
        reply = texts.AUTORENEW_ALREADY_ON
    elif resumed.outcome == repository.AutoRenewResume.NEXT_PAYMENT:
        reply = texts.AUTORENEW_NEXT_PAYMENT
    else:
        reply = texts.NO_SUBSCRIPTION
    await message.answer(reply)


async def subscribe(
    message: Message,
    db: AsyncDatabase,
    clock: Callable[[], datetime],
    bot_settings: BotSettings,
    payments: PaymentProvider | None,
    bot_username: str,
) -> None:
    assert message.from_user is not None
    member = await repository.register_user(db, message.from_user, clock())
    tariffs = await repository.active_tariffs(db)
    if not tariffs:
        await message.answer(texts.NO_TARIFFS)
        return
    if len(tariffs) > 1:
        await message.answer(texts.CHOOSE_TARIFF, reply_markup=tariff_keyboard(tariffs))
        return
    reply = await _payment_reply(
        db, clock, bot_settings, payments, bot_username, member.id, member.telegram_id, tariffs[0]
    )
    await message.answer(reply)


async def tariff_chosen(
    query: CallbackQuery,
    bot: Bot,
    db: AsyncDatabase,
    clock: Callable[[], datetime],
    bot_settings: BotSettings,
    payments: PaymentProvider | None,
    bot_username: str,
) -> None:
    tariff_id = parse_id((query.data or "").removeprefix(TARIFF_PREFIX))
    if tariff_id is None:
        log.warning("callback_data_rejected", data=query.data)
    tariff = None if tariff_id is None else await repository.tariff_by_id(db, tariff_id)
    if tariff is None:
        await query.answer(texts.UNKNOWN_BUTTON, show_alert=True)
        return
    member = await repository.register_user(db, query.from_user, clock())
    await query.answer()
    reply = await _payment_reply(
        db, clock, bot_settings, payments, bot_username, member.id, member.telegram_id, tariff
    )
    await bot.send_message(query.from_user.id, reply)


def tariff_keyboard(tariffs: list[Row]) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for tariff in tariffs:
        price = texts.rubles(tariff["price_minor"], tariff["currency"])
        builder.button(text=f"{tariff['title']} — {price}", callback_data=f"tariff:{tariff['id']}")
    builder.adjust(1)
    return builder.as_markup()


async def _payment_reply(
    db: AsyncDatabase,
    clock: Callable[[], datetime],
    bot_settings: BotSettings,
    payments: PaymentProvider | None,
    bot_username: str,
    user_id: int,
    telegram_id: int,
    tariff: Row,
) -> str:
    if payments is None:
        PAYMENTS_REQUESTED.labels(outcome="disabled").inc()
        return texts.PAYMENTS_OFF
    return_url = bot_settings.payment_return_url or f"https://t.me/{bot_username}"
    try:
        link = await request_payment_link(
            db,
            payments,
            user_id=user_id,
            telegram_id=telegram_id,
            tariff=tariff,
            return_url=return_url,
            now=clock(),
            reuse_s=bot_settings.payment_reuse_s,
        )
    except AutoRenewalInProgress as exc:
        PAYMENTS_REQUESTED.labels(outcome="auto_renewal_in_progress").inc()
        log.info("payment_link_refused", user_id=user_id, attempt_id=exc.attempt_id)
        return texts.AUTO_RENEWAL_IN_PROGRESS
    if link.confirmation_url is None:
        outcome = "rejected" if link.rejected else "provider_unavailable"
        PAYMENTS_REQUESTED.labels(outcome=outcome).inc()
        log.warning(
            "payment_link_failed", user_id=user_id, payment_id=link.payment_id, outcome=outcome
        )
        return texts.PROVIDER_REJECTED if link.rejected else texts.PROVIDER_DOWN
    PAYMENTS_REQUESTED.labels(outcome="reused" if link.reused else "created").inc()
    log.info("payment_link_sent", user_id=user_id, payment_id=link.payment_id, reused=link.reused)
    return texts.payment_link(link.confirmation_url, tariff, link.reused, link.saves_card)
