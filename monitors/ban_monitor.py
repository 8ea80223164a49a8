"""ban_monitor: members past grace leave the managed chats; members who paid again come back.

Each tick (work-claiming; the decisions are idempotent inserts, so replicas may both decide):
0. a member whose subscriptions all ended, with no row for a paid chat, is looked up in
   Telegram and recorded (`monitors.membership_census`), so that the bans below see them;
1. bans: a member whose subscriptions all ended (expired, or grace run out) and who is in a
   managed chat gets a `ban` action keyed `ban:<subscription>:<period end>:<chat>`; staff and
   admins never do.
2. unbans: a member banned from a managed chat who has a live subscription again gets an
   `unban` action keyed `unban:<membership>:<banned at>` (payment_monitor records the same for
   payments it applies, and carries them out at once).
3. join requests of payers the bot failed to approve are approved again
   (`monitors.join_approvals`);
4. the pending actions are claimed and carried out (`monitors.moderation`): banChatMember, or
   unbanChatMember with only_if_banned=true so a member who rejoined is not removed. Every action
   is a moderation_actions row written before the call, with its outcome written after. An
   action aimed at a group Telegram has upgraded to a supergroup (400 with migrate_to_chat_id)
   follows the chat to its new id (`monitors.chat_migration`) and is made there.

Settings: BAN_BATCH_SIZE (100).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from monitors import metrics
from monitors.join_approvals import approve_pending_requests
from monitors.membership_census import record_unrecorded_members
from monitors.moderation import ModerationExecutor
from monitors.telegram_client import TelegramClient
from payments.entitlement import entitling
from runtime.config import Env, Settings
from runtime.metrics import start_at_zero
from runtime.monitor import Monitor

#: Members past grace still in a managed chat, with the subscription that ended last.
PLAN_BANS = f"""
INSERT INTO moderation_actions (idempotence_key, user_id, chat_id, subscription_id, action, reason)
SELECT 'ban:' || CAST(s.id AS TEXT) || ':' || CAST(s.current_period_end AS TEXT) || ':'
       || CAST(m.chat_id AS TEXT),
       m.user_id, m.chat_id, s.id, 'ban', 'subscription_ended'
FROM memberships m
JOIN chats c ON c.id = m.chat_id AND c.is_managed
JOIN users u ON u.id = m.user_id AND u.role = 'member'
JOIN subscriptions s ON s.user_id = m.user_id
WHERE m.status IN ('member', 'requested')
  AND (s.status = 'expired' OR (s.status = 'grace' AND s.grace_until <= ?))
  AND NOT EXISTS (
    SELECT 1 FROM subscriptions live WHERE live.user_id = m.user_id
      AND {entitling("live")})
  AND NOT EXISTS (
    SELECT 1 FROM subscriptions later WHERE later.user_id = s.user_id
      AND (later.current_period_end > s.current_period_end
           OR (later.current_period_end = s.current_period_end AND later.id > s.id)))
  AND NOT EXISTS (
    SELECT 1 FROM moderation_actions pending WHERE pending.user_id = m.user_id
      AND pending.chat_id = m.chat_id AND pending.action = 'ban' AND pending.status = 'pending')
ORDER BY m.id
LIMIT ?
ON CONFLICT (idempotence_key) DO NOTHING
"""

#: Banned members with a live subscription again.
PLAN_UNBANS = f"""
INSERT INTO moderation_actions (idempotence_key, user_id, chat_id, subscription_id, action, reason)
SELECT 'unban:' || CAST(m.id AS TEXT) || ':' || CAST(m.banned_at AS TEXT),
       m.user_id, m.chat_id, s.id, 'unban', 'paid'
FROM memberships m
JOIN chats c ON c.id = m.chat_id AND c.is_managed
JOIN subscriptions s ON s.user_id = m.user_id
  AND {entitling("s")}
WHERE m.status = 'banned'
  AND NOT EXISTS (
    SELECT 1 FROM moderation_actions pending WHERE pending.user_id = m.user_id
      AND pending.chat_id = m.chat_id AND pending.action = 'unban' AND pending.status = 'pending')
ORDER BY m.id
LIMIT ?
ON CONFLICT (idempotence_key) DO NOTHING
"""


@dataclass(frozen=True)
class BanSettings:
    batch_size: int = 100

    @classmethod
    def from_env(cls, environ: Mapping[str, str], settings: Settings) -> Self:
        return cls(batch_size=Env(environ).integer("BAN_BATCH_SIZE", 100, minimum=1))


class BanMonitor(Monitor):
    name = "ban_monitor"
    interval_s = 60.0
    mode = "claiming"
    config_type = BanSettings
    config: BanSettings

    async def setup(self) -> None:
        # DomosRemovalsFailing fires on the first failure: those series start at 0.
        metrics.MODERATION_ACTIONS.labels(action="ban", outcome="failed")
        start_at_zero(metrics.MEMBERSHIPS_ASKED, "outcome", ("recorded", "failed"))
        self.batch_size = self.config.batch_size
        self.telegram = TelegramClient(self.ctx.settings)
        await self.telegram.open()
        self.executor = ModerationExecutor(
            self.db, self.telegram, self.ctx.clock, self.ctx.owner, self.log
        )

    async def teardown(self) -> None:
        await self.telegram.close()

    async def tick(self) -> int:
        await self.plan()
        done = await approve_pending_requests(
            self.db, self.telegram, self.ctx.clock.now(), self.batch_size
        )
        while not self.ctx.stop_requested:
            finished = await self.executor.run_due(limit=self.batch_size)
            done += finished
            if finished < self.batch_size:
                break
        return done

    async def plan(self) -> tuple[int, int]:
        now = self.ctx.clock.now()
        await record_unrecorded_members(self.db, self.telegram, now, self.batch_size)
        bans = await self.db.execute(PLAN_BANS, (now, now, self.batch_size))
        unbans = await self.db.execute(PLAN_UNBANS, (now, self.batch_size))
        if bans:
            metrics.MODERATION_DECISIONS.labels(action="ban").inc(bans)
        if unbans:
            metrics.MODERATION_DECISIONS.labels(action="unban").inc(unbans)
        if bans or unbans:
            self.log.info("moderation_planned", bans=bans, unbans=unbans)
        return bans, unbans


MONITOR = BanMonitor
