"""A basic group upgraded to a supergroup: Telegram gives it a new id, and the paid chat must
follow it, or its door stops checking payers (a payer's join request declined as
not_a_paid_chat, a stranger added there left in).

The bot learns it from the two service messages (services/bot/handlers/chats.py);
ban_monitor from Telegram's 400 "group chat was upgraded" with migrate_to_chat_id, answered to
a question about a chat still configured by its old id in PAID_CHAT_IDS
(monitors/membership_census.py), or to a ban, unban or join approval aimed at the old id
(monitors/ban_monitor.py, monitors/join_approvals.py): those follow the chat and are made again
in the supergroup.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from monitors.decisions.telegram import classify_telegram_response
from runtime.db import AsyncDatabase

if TYPE_CHECKING:
    from monitors.telegram_client import Answer, TelegramClient

log = structlog.get_logger("chat_migration")


async def follow_migration(
    db: AsyncDatabase, old_chat_id: int, new_chat_id: int, now: datetime
) -> None:
    """Move the chat to its new id; a paid one is logged for the operators."""
    if await migrate_chat(db, old_chat_id, new_chat_id, now):
        # PAID_CHAT_IDS naming the old id is harmless (the list only ever marks chats paid,
        # and ban_monitor unmarks the old id again), but the operators must put the new one.
        log.warning(
            "paid_chat_migrated",
            old_chat_id=old_chat_id,
            new_chat_id=new_chat_id,
            todo="replace the old id with the new one in PAID_CHAT_IDS",
        )


async def call_following_migration(
    db: AsyncDatabase,
    telegram: TelegramClient,
    method: str,
    params: dict[str, Any],
    now: datetime,
) -> Answer:
    """A Bot API call about the chat `params["chat_id"]`; when Telegram answers that it is a
    group upgraded to a supergroup, the chat is followed to its new id and the call made once
    more there, whose answer is returned."""
    answer = await telegram.call(method, params)
    new_chat_id = classify_telegram_response(*answer).migrate_to_chat_id
    if new_chat_id is None:
        return answer
    await follow_migration(db, int(params["chat_id"]), new_chat_id, now)
    return await telegram.call(method, {**params, "chat_id": new_chat_id})


async def migrate_chat(
    db: AsyncDatabase, old_chat_id: int, new_chat_id: int, now: datetime
) -> bool:
    """A basic group upgraded to a supergroup (Telegram gives it a new id): the new id is the
    chat from now on, paid if either was, with the memberships and the moderation actions still
    to be made (and, when the new id is not known yet, everything else keyed to the chat) moved
    over; the old id is paid no more. Idempotent: Telegram tells it twice.
    True when a paid chat moved just now."""
    async with db.transaction() as tx:
        old = await tx.fetchone(
            "SELECT id, is_managed FROM chats WHERE telegram_chat_id = ?", (old_chat_id,)
        )
        new = await tx.fetchone(
            "SELECT id, is_managed FROM chats WHERE telegram_chat_id = ?", (new_chat_id,)
        )
        if old is None:
            return False  # moved already
        if new is None:
            # The same row under its new id: memberships, links and actions follow it.
            await tx.execute(
                "UPDATE chats SET telegram_chat_id = ?, kind = 'supergroup', updated_at = ?"
                " WHERE id = ?",
                (new_chat_id, now, old["id"]),
            )
            return bool(old["is_managed"])
        if old["id"] == new["id"]:
            return False
        paid = bool(old["is_managed"] or new["is_managed"])
        await tx.execute(
            "UPDATE chats SET is_managed = ?, updated_at = ? WHERE id = ?",
            (paid, now, new["id"]),
        )
        await tx.execute(
            "UPDATE memberships SET chat_id = ?, updated_at = ? WHERE chat_id = ? AND user_id"
            " NOT IN (SELECT user_id FROM memberships WHERE chat_id = ?)",
            (new["id"], now, old["id"], new["id"]),
        )
        # Made there from now on (the old id only answers that the group was upgraded); the
        # actions done or failed stay the old chat's history.
        await tx.execute(
            "UPDATE moderation_actions SET chat_id = ? WHERE chat_id = ? AND status = 'pending'",
            (new["id"], old["id"]),
        )
        await tx.execute(
            "UPDATE chats SET is_managed = ?, updated_at = ? WHERE id = ?",
            (False, now, old["id"]),
        )
        return bool(old["is_managed"])
