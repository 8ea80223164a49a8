"""A basic group upgraded to a supergroup: Telegram gives it a new id, and the paid chat must
follow it, or its door stops checking payers (a payer's join request declined as
not_a_paid_chat, a stranger added there left in).

The bot learns it from the two service messages (services/bot/handlers/chats.py);
ban_monitor from Telegram's 400 "group chat was upgraded" with migrate_to_chat_id, when the
old id is still configured in PAID_CHAT_IDS (monitors/membership_census.py).
"""

from __future__ import annotations

from datetime import datetime

import structlog

from runtime.db import AsyncDatabase

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


async def migrate_chat(
    db: AsyncDatabase, old_chat_id: int, new_chat_id: int, now: datetime
) -> bool:
    """A basic group upgraded to a supergroup (Telegram gives it a new id): the new id is the
    chat from now on, paid if either was, with the memberships (and everything else keyed to
    the chat) moved over; the old id is paid no more. Idempotent: Telegram tells it twice.
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
        await tx.execute(
            "UPDATE chats SET is_managed = ?, updated_at = ? WHERE id = ?",
            (False, now, old["id"]),
        )
        return bool(old["is_managed"])
