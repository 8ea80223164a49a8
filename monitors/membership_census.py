"""ban_monitor, before it plans bans: where a member whose subscriptions have all ended stands in
a paid chat for which nothing is recorded.

Bans follow memberships rows, which the bot records from Telegram's chat_member updates about
users it knows. A member in a paid chat with no row would never be removed when their
subscription ends: they were in the chat before they first wrote to the bot (an admin added
them), or the bot missed the update (down past Telegram's 24 hours, or not yet an admin). So
Telegram is asked (getChatMember) about each such member and chat, and the answer is recorded;
the ban plan then sees them. Once per member and chat: a recorded row is not asked about again.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from monitors import metrics
from monitors.chat_migration import follow_migration
from monitors.decisions.membership import membership_status
from monitors.decisions.telegram import Verdict, classify_telegram_response
from monitors.telegram_client import TelegramClient
from payments.entitlement import entitling
from runtime.db import AsyncDatabase
from runtime.errors import MonitorError

#: Members (not staff) who had a subscription and have none live, with no row for the chat.
_UNRECORDED = f"""
SELECT u.id, u.telegram_id FROM users u
WHERE u.role = 'member'
  AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = u.id)
  AND NOT EXISTS (
    SELECT 1 FROM subscriptions live WHERE live.user_id = u.id AND {entitling("live")})
  AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id AND m.chat_id = ?)
ORDER BY u.id
LIMIT ?
"""
#: Telegram's answers about the user, not the chat: no such user can be in it.
_NO_SUCH_USER = ("user not found", "PARTICIPANT_ID_INVALID")


async def record_unrecorded_members(
    db: AsyncDatabase, telegram: TelegramClient, now: datetime, limit: int
) -> int:
    """Ask about up to `limit` members per paid chat; returns how many rows were recorded. A
    chat Telegram will not answer about is asked again next tick."""
    log = structlog.get_logger("monitors.ban_monitor")
    chats = await db.fetchall("SELECT id, telegram_chat_id FROM chats WHERE is_managed ORDER BY id")
    recorded = 0
    for chat in chats:
        for user in await db.fetchall(_UNRECORDED, (now, chat["id"], limit)):
            answer = await telegram.call(
                "getChatMember",
                {"chat_id": chat["telegram_chat_id"], "user_id": user["telegram_id"]},
            )
            outcome = classify_telegram_response(*answer)
            if outcome.verdict is Verdict.BOT_FAULT:
                raise MonitorError(f"Bot API refuses the bot: {outcome.description}")
            if outcome.migrate_to_chat_id is not None:
                # An upgraded group still configured by its old id: the paid chat is the new one.
                await follow_migration(
                    db, chat["telegram_chat_id"], outcome.migrate_to_chat_id, now
                )
                break
            if outcome.verdict is Verdict.DELIVERED:
                member = (answer[1] or {}).get("result") or {}
                status = membership_status(str(member.get("status")), member.get("is_member"))
            elif any(text in outcome.description for text in _NO_SUCH_USER):
                status = "left"
            else:
                metrics.MEMBERSHIPS_ASKED.labels(outcome="failed").inc()
                log.warning(
                    "membership_not_asked",
                    chat_id=chat["telegram_chat_id"],
                    telegram_id=user["telegram_id"],
                    error=outcome.description,
                )
                break
            await db.execute(
                "INSERT INTO memberships (user_id, chat_id, status, banned_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, chat_id) DO NOTHING",
                (user["id"], chat["id"], status, now if status == "banned" else None, now),
            )
            metrics.MEMBERSHIPS_ASKED.labels(outcome="recorded").inc()
            recorded += 1
    return recorded
