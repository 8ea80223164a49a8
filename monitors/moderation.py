"""Carrying out recorded moderation actions (ban/unban) through the Bot API.

ban_monitor decides bans and unbans; payment_monitor records the unbans a payment earns. Both
record a moderation_actions row (unique idempotence key) first and then run it here: the row is
claimed, the Bot API called, and the outcome written back with the membership it changed. Calling
twice is harmless: banChatMember of a banned user and unbanChatMember(only_if_banned) of a user
who is not banned both succeed without changing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from structlog.stdlib import BoundLogger

from monitors import metrics
from monitors.chat_migration import follow_migration
from monitors.decisions import entrants
from monitors.decisions.telegram import Verdict, bot_lacks_rights, classify_telegram_response
from monitors.telegram_client import TelegramClient
from payments.entitlement import entitled_user
from runtime.db import AsyncDatabase
from runtime.errors import MonitorError
from runtime.monitor import Clock
from runtime.retry import RetrySchedule

#: Bot API failures that may pass (5xx, network): from 30 s doubling to an hour, 10 tries.
MODERATION_RETRY = RetrySchedule(base_s=30.0, cap_s=3600.0, max_attempts=10, jitter_fraction=0.2)
#: The bot lacks the rights (demoted, kicked): it passes only when an admin acts, which may take
#: days. From 10 min doubling to 6 h, for about a month, so the action is carried out soon after
#: the bot is an admin again without asking Telegram every tick meanwhile.
RIGHTS_RETRY = RetrySchedule(base_s=600.0, cap_s=6 * 3600.0, max_attempts=130, jitter_fraction=0.2)

#: Entitled now: staff, or a subscription active or in grace that has not run out (tsmonitor
#: may not have moved it yet).
ENTITLED = f"SELECT 1 FROM users u WHERE u.id = ? AND {entitled_user('u')}"


@dataclass
class ModerationExecutor:
    db: AsyncDatabase
    telegram: TelegramClient
    clock: Clock
    owner: str
    log: BoundLogger
    lease_s: float = 60.0

    async def run_due(self, *, user_id: int | None = None, limit: int = 50) -> int:
        """Claim and carry out due pending actions (of one member if `user_id`); the count done."""
        now = self.clock.now()
        where = "status = 'pending' AND next_attempt_at <= ?"
        params: list[Any] = [now]
        if user_id is not None:
            where += " AND user_id = ?"
            params.append(user_id)
        rows = await self.db.claim(
            "moderation_actions",
            where=where,
            params=params,
            order_by="id",
            limit=limit,
            owner=self.owner,
            lease_s=self.lease_s,
            now=now,
        )
        finished = 0
        for row in rows:
            if await self.execute(row):
                finished += 1
        return finished

    async def execute(self, action: dict[str, Any], *, followed: bool = False) -> bool:
        """Carry out one claimed action; True when it reached done or failed. Aimed at a group
        Telegram says was upgraded to a supergroup, the chat is followed to its new id (with
        its pending actions, monitors.chat_migration) and the action made there once."""
        target = await self.db.fetchone(
            "SELECT u.telegram_id, c.telegram_chat_id FROM users u, chats c"
            " WHERE u.id = ? AND c.id = ?",
            (action["user_id"], action["chat_id"]),
        )
        assert target is not None, "moderation_actions references its user and chat"
        log = self.log.bind(
            action_id=action["id"],
            action=action["action"],
            user_id=action["user_id"],
            chat_id=target["telegram_chat_id"],
        )
        params: dict[str, Any] = {
            "chat_id": target["telegram_chat_id"],
            "user_id": target["telegram_id"],
        }
        if action["action"] == "ban":
            if await self.db.fetchone(ENTITLED, (action["user_id"], self.clock.now())) is not None:
                # The member paid again after the decision (or the entrant did, or became
                # staff): the ban no longer applies.
                return await self._superseded(action, log, "the member is entitled")
            actor = entrants.unchecked_actor(action["reason"])
            checked = (
                None
                if actor is None
                else await self.telegram.call(
                    "getChatMember", {"chat_id": params["chat_id"], "user_id": actor}
                )
            )
            if checked is not None and _is_admin(*checked):
                return await self._superseded(action, log, "let in by an admin")
            if checked is not None and classify_telegram_response(*checked).verdict is not (
                Verdict.DELIVERED
            ):
                status, body = checked  # still unchecked: retried as a failed ban would be
            else:
                status, body = await self.telegram.call(
                    "banChatMember", {**params, "revoke_messages": False}
                )
        else:
            # Without only_if_banned Telegram would remove a member who already rejoined.
            status, body = await self.telegram.call(
                "unbanChatMember", {**params, "only_if_banned": True}
            )
        outcome = classify_telegram_response(status, body)
        now = self.clock.now()
        if outcome.migrate_to_chat_id is not None:
            if followed:  # the claim runs out and the action is retried
                raise MonitorError(f"chat {params['chat_id']} still answers it was upgraded")
            await follow_migration(self.db, params["chat_id"], outcome.migrate_to_chat_id, now)
            log.info("moderation_action_chat_upgraded", new_chat_id=outcome.migrate_to_chat_id)
            moved = await self.db.fetchone(
                "SELECT * FROM moderation_actions WHERE id = ?", (action["id"],)
            )
            assert moved is not None, "moderation_actions rows are never deleted"
            return await self.execute(dict(moved), followed=True)
        if outcome.verdict is Verdict.DELIVERED:
            await self._done(action, body or {})
            metrics.MODERATION_ACTIONS.labels(action=action["action"], outcome="done").inc()
            log.info("moderation_action_done")
            return True
        if outcome.verdict is Verdict.RETRY_AFTER:
            later = now + timedelta(seconds=outcome.retry_after_s or 1.0)
            await self._reschedule(action, later, outcome.description, count_attempt=False)
            metrics.MODERATION_ACTIONS.labels(action=action["action"], outcome="retried").inc()
            return False
        if outcome.verdict is Verdict.BOT_FAULT:
            await self._reschedule(action, now, outcome.description, count_attempt=False)
            raise MonitorError(f"Bot API refuses the bot: {outcome.description}")
        if outcome.verdict is Verdict.BACKOFF:
            attempts = action["attempts"] + 1
            retry_at = MODERATION_RETRY.next_attempt_at(now, attempts)
            if retry_at is not None:
                await self._reschedule(action, retry_at, outcome.description, count_attempt=True)
                metrics.MODERATION_ACTIONS.labels(action=action["action"], outcome="retried").inc()
                log.warning("moderation_action_retry_scheduled", attempts=attempts)
                return False
        elif bot_lacks_rights(outcome.description):
            attempts = action["attempts"] + 1
            retry_at = RIGHTS_RETRY.next_attempt_at(now, attempts)
            if retry_at is not None:
                await self._reschedule(action, retry_at, outcome.description, count_attempt=True)
                # Counted as failed: the member is still in (or out), and DomosRemovalsFailing
                # must tell the operators to give the bot its rights back.
                metrics.MODERATION_ACTIONS.labels(action=action["action"], outcome="failed").inc()
                log.error("moderation_action_refused", attempts=attempts, error=outcome.description)
                return False
        # Permanent: chat or user not found, the chat owner or an admin, attempts used up.
        await self._finish(action, "failed", outcome.description or "failed")
        metrics.MODERATION_ACTIONS.labels(action=action["action"], outcome="failed").inc()
        log.warning("moderation_action_failed", description=outcome.description)
        return True

    async def _superseded(self, action: dict[str, Any], log: BoundLogger, why: str) -> bool:
        await self._finish(action, "failed", f"superseded: {why}")
        metrics.MODERATION_ACTIONS.labels(action=action["action"], outcome="superseded").inc()
        log.info("ban_superseded", why=why)
        return True

    async def _done(self, action: dict[str, Any], body: dict[str, Any]) -> None:
        now = self.clock.now()
        banned = action["action"] == "ban"
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE moderation_actions SET status = 'done', done_at = ?,"
                " attempts = attempts + 1,"
                " telegram_result = ?, last_error = NULL, lease_owner = NULL,"
                " lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
                (now, body, action["id"], self.owner),
            )
            if banned:
                await tx.execute(
                    "INSERT INTO memberships (user_id, chat_id, status, banned_at, left_at)"
                    " VALUES (?, ?, 'banned', ?, ?) ON CONFLICT (user_id, chat_id) DO UPDATE SET"
                    " status = 'banned', banned_at = excluded.banned_at,"
                    " left_at = excluded.left_at, updated_at = excluded.banned_at",
                    (action["user_id"], action["chat_id"], now, now),
                )
            else:
                await tx.execute(
                    "UPDATE memberships SET status = 'left', unbanned_at = ?, updated_at = ?"
                    " WHERE user_id = ? AND chat_id = ? AND status = 'banned'",
                    (now, now, action["user_id"], action["chat_id"]),
                )

    async def _reschedule(
        self, action: dict[str, Any], at: Any, error: str, *, count_attempt: bool
    ) -> None:
        await self.db.execute(
            "UPDATE moderation_actions SET next_attempt_at = ?, attempts = attempts + ?,"
            " last_error = ?, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (at, 1 if count_attempt else 0, error[:500], action["id"], self.owner),
        )

    async def _finish(self, action: dict[str, Any], status: str, error: str) -> None:
        await self.db.execute(
            "UPDATE moderation_actions SET status = ?, attempts = attempts + 1, last_error = ?,"
            " lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
            (status, error[:500], action["id"], self.owner),
        )


def _is_admin(status: int | None, body: dict[str, Any] | None) -> bool:
    """Whether a getChatMember answer names an admin of the chat (the bot's admin check,
    services/bot/handlers/chats.py, asked again)."""
    member = (body or {}).get("result") or {}
    return status == 200 and member.get("status") in ("creator", "administrator")
