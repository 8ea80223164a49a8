"""Group and channel traffic: the inbox for parse_messages, voice notes for download, join
requests to the paid chats (approved only for staff and members with a live subscription:
repository.entitled; declined in any chat that is not a paid one), and membership changes
(strangers in a paid chat removed: services/bot/entry.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import ChatJoinRequest, ChatMemberUpdated, Message

from monitors import texts
from monitors.chat_migration import follow_migration
from monitors.decisions import entrants
from monitors.decisions.membership import membership_status
from monitors.decisions.telegram import JOIN_REQUEST_DECIDED
from runtime.db import AsyncDatabase, Row
from services.bot import entry, repository
from services.bot.metrics import JOIN_REQUESTS, STRANGERS

log = structlog.get_logger("bot")

GROUPS = {"group", "supergroup"}


def build_router() -> Router:
    router = Router(name="chats")
    router.message.register(group_message, F.chat.type.in_(GROUPS))
    router.message.register(
        private_voice, F.chat.type == "private", F.voice | F.audio | F.video_note
    )
    router.edited_message.register(group_message, F.chat.type.in_(GROUPS))
    router.edited_message.register(ignore_edit)
    router.channel_post.register(channel_post)
    router.edited_channel_post.register(channel_post)
    router.chat_join_request.register(join_request)
    router.chat_member.register(member_changed)
    router.my_chat_member.register(bot_membership_changed)
    return router


def _is_voice(message: Message) -> bool:
    return any(media is not None for media in (message.voice, message.audio, message.video_note))


async def _store(db: AsyncDatabase, message: Message, kind: str) -> None:
    """Into the inbox. A voice note's file is kept or refused by parse_messages alone
    (monitors.decisions.voice): one door, whatever way the message arrived."""
    is_voice = _is_voice(message)
    if not is_voice and not (message.text or message.caption):
        return  # service messages, stickers, polls: nothing for parse_messages
    if is_voice:
        kind = "voice"
    await repository.save_chat_message(
        db,
        chat=message.chat,
        message_id=message.message_id,
        from_user=message.from_user,
        kind=kind,
        text=message.text or message.caption,
        message_date=message.date,
        # Telegram sends edit_date as Unix time (aiogram keeps it an int), date as a datetime.
        edited_at=None
        if message.edit_date is None
        else datetime.fromtimestamp(message.edit_date, UTC),
        raw=message.model_dump(mode="json", exclude_none=True, by_alias=True),
    )


async def group_message(message: Message, db: AsyncDatabase, clock: Callable[[], datetime]) -> None:
    await repository.upsert_chat(db, message.chat, clock())
    if message.migrate_to_chat_id is not None:
        await follow_migration(db, message.chat.id, message.migrate_to_chat_id, clock())
    elif message.migrate_from_chat_id is not None:
        await follow_migration(db, message.migrate_from_chat_id, message.chat.id, clock())
    await _store(db, message, "message")


async def channel_post(message: Message, db: AsyncDatabase, clock: Callable[[], datetime]) -> None:
    await repository.upsert_chat(db, message.chat, clock())
    await _store(db, message, "channel_post")


async def private_voice(message: Message, db: AsyncDatabase, clock: Callable[[], datetime]) -> None:
    await _store(db, message, "voice")
    user = (
        None if message.from_user is None else await repository.find_user(db, message.from_user.id)
    )
    entitled = await repository.entitled(db, user, clock())
    await message.answer(texts.VOICE_SAVED if entitled else texts.VOICE_MEMBERS_ONLY)


async def ignore_edit(message: Message) -> None:
    """Edits in private chats change nothing the bot keeps."""


async def join_request(
    request: ChatJoinRequest, bot: Bot, db: AsyncDatabase, clock: Callable[[], datetime]
) -> None:
    now = clock()
    chat_row_id, paid_chat = await repository.upsert_chat(db, request.chat, now)
    if not paid_chat:
        await _decline_elsewhere(request, bot)
        return
    user = await repository.find_user(db, request.from_user.id)
    approve = await repository.entitled(db, user, now)
    decision = "approved" if approve else "declined"
    log_ = log.bind(chat_id=request.chat.id, telegram_id=request.from_user.id, decision=decision)
    try:
        if approve:
            await bot.approve_chat_join_request(request.chat.id, request.from_user.id)
        else:
            await bot.decline_chat_join_request(request.chat.id, request.from_user.id)
    except TelegramAPIError as exc:
        if isinstance(exc, TelegramBadRequest) and any(
            code in exc.message for code in JOIN_REQUEST_DECIDED
        ):
            # Decided already (by an admin, or a redelivered update): nothing left to do.
            log_.warning("join_request_not_decided", error=exc.message)
            return
        log_.error("join_request_not_decided", error=exc.message)
        if approve:
            await _approve_later(request, bot, db, user, chat_row_id, now)
        return  # a failed decline keeps the stranger out all the same
    JOIN_REQUESTS.labels(decision=decision).inc()
    log_.info("join_request_decided")
    if approve:
        assert user is not None
        await repository.set_membership(db, user["id"], chat_row_id, "member", now)
    reply = texts.JOIN_APPROVED if approve else texts.JOIN_DECLINED
    try:
        await bot.send_message(request.user_chat_id, reply)
    except TelegramAPIError as exc:
        log_.info("join_request_reply_failed", error=str(exc))


async def _approve_later(
    request: ChatJoinRequest,
    bot: Bot,
    db: AsyncDatabase,
    user: Row | None,
    chat_row_id: int,
    now: datetime,
) -> None:
    """A payer's approval Telegram refused (the bot demoted, Telegram down past the retries):
    recorded as requested so that ban_monitor approves it once it can
    (monitors/join_approvals.py), and the payer told to wait rather than left wondering."""
    assert user is not None
    await repository.set_membership(db, user["id"], chat_row_id, "requested", now)
    try:
        await bot.send_message(request.user_chat_id, texts.JOIN_DELAYED)
    except TelegramAPIError as exc:
        log.info("join_request_reply_failed", telegram_id=request.from_user.id, error=str(exc))


async def _decline_elsewhere(request: ChatJoinRequest, bot: Bot) -> None:
    """A join request in a chat that is not a paid one: someone added the bot to their own
    group. Declined, counted and logged; nothing is sent to the user on that chat's behalf."""
    log_ = log.bind(
        chat_id=request.chat.id,
        chat_title=request.chat.title,
        telegram_id=request.from_user.id,
        decision="not_a_paid_chat",
    )
    try:
        await bot.decline_chat_join_request(request.chat.id, request.from_user.id)
    except TelegramAPIError as exc:
        log_.warning("join_request_not_decided", error=str(exc))
        return
    JOIN_REQUESTS.labels(decision="not_a_paid_chat").inc()
    log_.warning("join_request_outside_paid_chats")


async def member_changed(
    update: ChatMemberUpdated, bot: Bot, db: AsyncDatabase, clock: Callable[[], datetime]
) -> None:
    if update.chat.type == "private":
        return
    new = update.new_chat_member
    status = membership_status(new.status, getattr(new, "is_member", None))
    now = clock()
    chat_row_id, paid_chat = await repository.upsert_chat(db, update.chat, now)
    user = await repository.find_user(db, update.new_chat_member.user.id)
    if paid_chat:
        try:
            stranger = await _stranger(update, bot, db, user, now)
        except EntrantNotChecked as exc:
            # Unsure who let them in: ban_monitor asks again and removes them unless an admin
            # did, rather than letting them stay for good.
            log.error(
                "entrant_not_checked", chat_id=update.chat.id, actor=exc.actor, error=exc.error
            )
            STRANGERS.labels(outcome="unchecked").inc()
            await _remove_later(update, db, chat_row_id, entrants.unchecked(exc.actor))
            return
        if stranger:
            if not await _remove_stranger(update, bot, told=user is not None):
                await _remove_later(update, db, chat_row_id, entrants.STRANGER)
            return
    if user is None:
        return
    await repository.set_membership(db, user["id"], chat_row_id, status, now)


async def _stranger(
    update: ChatMemberUpdated, bot: Bot, db: AsyncDatabase, user: Row | None, now: datetime
) -> bool:
    if not entry.entered(update) or await repository.entitled(db, user, now):
        return False
    return not await entry.let_in_by_an_admin(update, bot.id, _admin_check(bot, update.chat.id))


class EntrantNotChecked(Exception):
    """Telegram would not say whether `actor`, who let the entrant in, is an admin."""

    def __init__(self, actor: int, error: str) -> None:
        super().__init__(error)
        self.actor = actor
        self.error = error


def _admin_check(bot: Bot, chat_id: int) -> Callable[[int], Awaitable[bool]]:
    async def is_admin(user_id: int) -> bool:
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except TelegramAPIError as exc:
            raise EntrantNotChecked(user_id, str(exc)) from exc
        return member.status in ("creator", "administrator")

    return is_admin


async def _remove_later(
    update: ChatMemberUpdated, db: AsyncDatabase, chat_row_id: int, reason: str
) -> None:
    entrant = update.new_chat_member.user
    await repository.remove_later(db, entrant, chat_row_id, reason, update.date)
    log.warning(
        "entrant_removal_recorded", chat_id=update.chat.id, telegram_id=entrant.id, reason=reason
    )


async def _remove_stranger(update: ChatMemberUpdated, bot: Bot, *, told: bool) -> bool:
    """Removed at once (services/bot/entry.py says who is a stranger), and free to come back
    the way payers do: a join request. `told`: they have written to the bot, so it can tell
    them how (the bot cannot write first). False when Telegram refused."""
    entrant = update.new_chat_member.user.id
    log_ = log.bind(chat_id=update.chat.id, telegram_id=entrant, actor=update.from_user.id)
    try:
        await bot.ban_chat_member(update.chat.id, entrant)
        await bot.unban_chat_member(update.chat.id, entrant, only_if_banned=True)
    except TelegramAPIError as exc:
        log_.error("stranger_not_removed", error=str(exc))
        STRANGERS.labels(outcome="not_removed").inc()
        return False
    STRANGERS.labels(outcome="removed").inc()
    log_.warning("stranger_removed")
    if told:
        try:
            await bot.send_message(entrant, texts.JOIN_DECLINED)
        except TelegramAPIError as exc:
            log_.info("stranger_not_told", error=str(exc))
    return True


async def bot_membership_changed(
    update: ChatMemberUpdated, db: AsyncDatabase, clock: Callable[[], datetime]
) -> None:
    status = update.new_chat_member.status
    if update.chat.type == "private":
        # Blocked (kicked) or unblocked (member) by the user: whether anything can reach them.
        # Unblocking without writing to the bot must make them reachable again, or every
        # notification would skip them for good.
        await repository.set_reachable(db, update.chat.id, status == "member", clock())
    else:
        await repository.upsert_chat(db, update.chat, clock())
    log.info("bot_membership_changed", chat_id=update.chat.id, status=status)
