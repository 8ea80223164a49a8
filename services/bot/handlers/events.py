"""/events: upcoming community events with inline buttons to register or cancel.

Events are for those who paid: the list (titles, times, places, seats) and registration are for
members entitled now and staff (payments.entitlement); anyone else is told how to subscribe.
A registrant may always cancel their own registration.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from monitors import texts
from runtime.db import AsyncDatabase, Row
from services.bot import repository
from services.bot.callback_ids import parse_id
from services.bot.config import BotSettings

log = structlog.get_logger("bot")

REGISTER = "event:reg:"
CANCEL = "event:cancel:"


def build_router() -> Router:
    router = Router(name="events")
    router.message.filter(F.chat.type == "private")
    router.message.register(list_events, Command("events"))
    router.callback_query.register(register, F.data.startswith(REGISTER))
    router.callback_query.register(cancel, F.data.startswith(CANCEL))
    return router


def events_keyboard(events: list[Row]) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for event in events:
        if event["my_status"] == "registered":
            builder.button(
                text=f"Отменить: {event['title']}", callback_data=f"{CANCEL}{event['id']}"
            )
        else:
            builder.button(
                text=f"Записаться: {event['title']}", callback_data=f"{REGISTER}{event['id']}"
            )
    builder.adjust(1)
    return builder.as_markup()


async def list_events(
    message: Message, db: AsyncDatabase, clock: Callable[[], datetime], bot_settings: BotSettings
) -> None:
    assert message.from_user is not None
    now = clock()
    member = await repository.register_user(db, message.from_user, now)
    if not await _entitled(db, member, now):
        await message.answer(texts.EVENTS_FOR_MEMBERS)
        return
    events = await repository.upcoming_events(db, member.id, now)
    if not events:
        await message.answer(texts.NO_EVENTS)
        return
    tz = bot_settings.runtime.timezone
    await message.answer(
        "Ближайшие мероприятия:\n" + "\n".join(texts.event_line(e, tz) for e in events),
        reply_markup=events_keyboard(events),
    )


async def _entitled(db: AsyncDatabase, member: repository.Member, now: datetime) -> bool:
    return await repository.entitled(db, {"id": member.id}, now)


def _event_id(data: str | None, prefix: str) -> int | None:
    event_id = parse_id((data or "").removeprefix(prefix))
    if event_id is None:
        log.warning("callback_data_rejected", data=data)
    return event_id


async def register(query: CallbackQuery, db: AsyncDatabase, clock: Callable[[], datetime]) -> None:
    event_id = _event_id(query.data, REGISTER)
    if event_id is None:
        await query.answer(texts.UNKNOWN_BUTTON, show_alert=True)
        return
    now = clock()
    member = await repository.register_user(db, query.from_user, now)
    if not await _entitled(db, member, now):
        await query.answer(texts.EVENTS_FOR_MEMBERS, show_alert=True)
        return
    outcome, event = await repository.register_for_event(db, event_id, member.id, now)
    title = event["title"] if event is not None else ""
    log.info("event_registration", user_id=member.id, event_id=event_id, outcome=outcome)
    await query.answer(texts.REGISTRATION_REPLIES[outcome].format(title=title), show_alert=True)


async def cancel(query: CallbackQuery, db: AsyncDatabase, clock: Callable[[], datetime]) -> None:
    event_id = _event_id(query.data, CANCEL)
    if event_id is None:
        await query.answer(texts.UNKNOWN_BUTTON, show_alert=True)
        return
    now = clock()
    member = await repository.register_user(db, query.from_user, now)
    outcome = await repository.cancel_event_registration(db, event_id, member.id, now)
    log.info("event_registration", user_id=member.id, event_id=event_id, outcome=outcome)
    await query.answer(texts.REGISTRATION_REPLIES[outcome], show_alert=True)
