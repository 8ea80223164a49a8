"""ban_monitor, for payers the bot could not let in: join requests it failed to approve.

The bot approves a payer's join request at once; when Telegram refuses (the bot demoted or
removed from the chat, Telegram down past the bot's retries) it records the membership as
`requested` (services/bot/handlers/chats.py). Without a second try the request would stay
pending for good and the payer locked out. So each tick, every such request of a member who is
still entitled (staff, or a live subscription: the same rule as the bans') is approved again,
at most once per RETRY_EVERY so a bot without rights is not hammered: approved, the payer is
told; gone (decided by an admin, withdrawn, expired), the payer is told to ask again. A request
recorded under a group Telegram has since upgraded to a supergroup follows the chat to its new
id and is approved there (monitors/chat_migration.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog

from monitors import texts
from monitors.chat_migration import call_following_migration
from monitors.decisions.telegram import (
    REQUEST_GONE,
    USER_ALREADY_IN,
    Verdict,
    classify_telegram_response,
)
from monitors.outbox import enqueue
from monitors.telegram_client import TelegramClient
from payments.entitlement import entitled_user
from runtime.db import AsyncDatabase
from runtime.errors import MonitorError

RETRY_EVERY = timedelta(minutes=5)

_DUE = f"""
SELECT m.id, m.user_id, u.telegram_id, c.telegram_chat_id FROM memberships m
JOIN chats c ON c.id = m.chat_id AND c.is_managed
JOIN users u ON u.id = m.user_id
WHERE m.status = 'requested' AND m.updated_at <= ?
  AND {entitled_user("u")}
ORDER BY m.id
LIMIT ?
"""


async def approve_pending_requests(
    db: AsyncDatabase, telegram: TelegramClient, now: datetime, limit: int
) -> int:
    """Approve up to `limit` due requests; returns how many were settled (in, or gone)."""
    log = structlog.get_logger("monitors.ban_monitor")
    settled = 0
    for row in await db.fetchall(_DUE, (now - RETRY_EVERY, now, limit)):
        answer = await call_following_migration(
            db,
            telegram,
            "approveChatJoinRequest",
            {"chat_id": row["telegram_chat_id"], "user_id": row["telegram_id"]},
            now,
        )
        outcome = classify_telegram_response(*answer)
        if outcome.verdict is Verdict.BOT_FAULT:
            raise MonitorError(f"Bot API refuses the bot: {outcome.description}")
        log_ = log.bind(chat_id=row["telegram_chat_id"], telegram_id=row["telegram_id"])
        if outcome.verdict is Verdict.DELIVERED:
            # Told even when the bot has already recorded the join from Telegram's update
            # (it may come before this settles): this call is what let the payer in.
            await _settle(db, row, "member", now, texts.JOIN_APPROVED, tell_anyway=True)
            log_.info("join_request_approved_late")
        elif USER_ALREADY_IN in outcome.description:
            await _settle(db, row, "member", now, None)
        elif REQUEST_GONE in outcome.description:
            await _settle(db, row, "left", now, texts.JOIN_REQUEST_LOST)
            log_.warning("join_request_gone")
        else:
            # Still refused (no rights yet, Telegram failing): asked again after RETRY_EVERY.
            await db.execute(
                "UPDATE memberships SET updated_at = ? WHERE id = ? AND status = 'requested'",
                (now, row["id"]),
            )
            log_.warning("join_request_still_not_approved", error=outcome.description)
            continue
        settled += 1
    return settled


async def _settle(
    db: AsyncDatabase,
    row: Any,
    status: str,
    now: datetime,
    text: str | None,
    *,
    tell_anyway: bool = False,
) -> None:
    stamp = "joined_at" if status == "member" else "left_at"
    async with db.transaction() as tx:
        changed = await tx.execute(
            f"UPDATE memberships SET status = ?, {stamp} = ?, updated_at = ?"
            " WHERE id = ? AND status = 'requested'",
            (status, now, now, row["id"]),
        )
        if (changed or tell_anyway) and text is not None:
            await enqueue(
                tx,
                dedupe_key=f"join_request:{row['id']}:{status}:{now.isoformat()}",
                chat_id=row["telegram_id"],
                user_id=row["user_id"],
                kind="join_request",
                text=text,
            )
