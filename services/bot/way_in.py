"""A way into the paid chats for a member who may be there and is not.

A payer's way in is the receipt's join-request link. A receipt that never arrived (the member had
blocked the bot: it was dead-lettered), or a link that expired, left them no way in but asking
staff. /status gives such a member (a live subscription, or staff) a join-request link to each
paid chat they are not in: the receipt's if it is still good, else a new one. A join-request
link only asks: the bot approves the entitled alone (services/bot/handlers/chats.py), so handing
one out again lets nobody else in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError

from monitors import texts
from monitors.decisions.membership import membership_status
from monitors.paid_chats import paid_chats_not_joined, paid_chats_recorded_in
from runtime.db import AsyncDatabase, Row
from services.bot.repository import set_membership

log = structlog.get_logger("bot")

#: How long a link made for /status lasts: it is asked for to be used now.
LINK_TTL = timedelta(hours=24)
#: A stored link closer to its end than this is not handed out again.
LINK_MARGIN = timedelta(hours=1)


async def join_links(
    bot: Bot, db: AsyncDatabase, user_id: int, telegram_id: int, now: datetime
) -> tuple[list[tuple[str, str]], list[str]]:
    """([(chat title, link)], [titles of the chats no link could be made for]).

    A chat the records say the member is in is asked about (getChatMember): a member who left
    while the bot could not hear it (a chat_member update lost, the bot down past Telegram's
    24 h) would otherwise get no way back. What Telegram says is recorded."""
    links: list[tuple[str, str]] = []
    failed: list[str] = []
    chats = list(await paid_chats_not_joined(db, user_id))
    for chat in await paid_chats_recorded_in(db, user_id):
        if not await _still_in(bot, db, chat, user_id, telegram_id, now):
            chats.append(chat)
    for chat in sorted(chats, key=lambda row: int(row["id"])):
        title = chat["title"] or texts.DEFAULT_CHAT_TITLE
        link = await _stored_link(db, chat, user_id, now) or await _new_link(
            bot, db, chat, user_id, now
        )
        if link is None:
            failed.append(title)
        else:
            links.append((title, link))
    return links, failed


async def _still_in(
    bot: Bot, db: AsyncDatabase, chat: Row, user_id: int, telegram_id: int, now: datetime
) -> bool:
    """Whether Telegram has the member in the chat; a chat it cannot be asked about is taken
    as the records say (in)."""
    try:
        found = await bot.get_chat_member(chat["telegram_chat_id"], telegram_id)
    except TelegramAPIError as exc:
        log.warning("way_in_member_not_checked", chat_id=chat["telegram_chat_id"], error=str(exc))
        return True
    status = membership_status(found.status, getattr(found, "is_member", None))
    if status == "member":
        return True
    await set_membership(db, user_id, chat["id"], status, now)
    log.info("way_in_membership_corrected", chat_id=chat["telegram_chat_id"], status=status)
    return False


async def _stored_link(db: AsyncDatabase, chat: Row, user_id: int, now: datetime) -> str | None:
    link = await db.fetchval(
        "SELECT link FROM invite_links WHERE chat_id = ? AND user_id = ?"
        " AND creates_join_request AND revoked_at IS NULL AND expire_at > ?"
        " ORDER BY expire_at DESC LIMIT 1",
        (chat["id"], user_id, now + LINK_MARGIN),
    )
    return None if link is None else str(link)


async def _new_link(
    bot: Bot, db: AsyncDatabase, chat: Row, user_id: int, now: datetime
) -> str | None:
    expire_at = now + LINK_TTL
    name = f"status {user_id}"[:32]
    try:
        made = await bot.create_chat_invite_link(
            chat["telegram_chat_id"],
            name=name,
            creates_join_request=True,
            expire_date=expire_at,
        )
    except TelegramAPIError as exc:
        log.warning("way_in_link_failed", chat_id=chat["telegram_chat_id"], error=exc.message)
        return None
    await db.execute(
        "INSERT INTO invite_links (chat_id, user_id, link, name, creates_join_request, expire_at)"
        " VALUES (?, ?, ?, ?, TRUE, ?)",
        (chat["id"], user_id, made.invite_link, name, expire_at),
    )
    return made.invite_link
