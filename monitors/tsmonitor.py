"""tsmonitor: subscription terms — reminders before the end, and active -> grace -> expired.

Singleton. Each tick:
1. reminders: for every active subscription ending within the reminder horizon, the latest due
   T-n reminder (`monitors.decisions.reminders.term_reminder_due`: n days before the end, at the
   configured local time) is enqueued unless it was sent for this period. The
   subscription_reminders row (unique per subscription, period end and kind) and the outbox row
   are written in one transaction: each reminder goes out once per period.
2. transitions: an active subscription whose period ended moves to grace (grace_until = the end
   plus the grace days on the local calendar), a grace that ran out moves to expired; a monitor
   that was down moves active straight to expired. Each UPDATE is conditional on the state read,
   so a payment extending the subscription meanwhile wins. The member is told once per period.

Settings: DOMOS_TIMEZONE (Europe/Moscow), SUBSCRIPTION_GRACE_DAYS (3), TS_REMINDER_DAYS
(7,3,1,0), TS_REMINDER_AT (10:00 local), TS_BATCH_SIZE (500).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from monitors import metrics, texts
from monitors.decisions.periods import Period, SubscriptionStatus, next_status, period_after
from monitors.decisions.reminders import TERM_REMINDER_DAYS, term_reminder_due
from monitors.outbox import enqueue
from runtime.config import Env, Settings
from runtime.errors import ConfigError
from runtime.monitor import Monitor


@dataclass(frozen=True)
class TermSettings:
    grace_days: int
    reminder_days: tuple[int, ...]
    reminder_at: time
    batch_size: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str], settings: Settings) -> TermSettings:
        env = Env(environ)
        raw_days = env.text("TS_REMINDER_DAYS")
        days = TERM_REMINDER_DAYS
        if raw_days is not None:
            try:
                days = tuple(sorted({int(part) for part in raw_days.split(",")}, reverse=True))
            except ValueError:
                raise ConfigError(
                    "TS_REMINDER_DAYS", f"must be integers, got {raw_days!r}"
                ) from None
            if any(day < 0 for day in days):
                raise ConfigError("TS_REMINDER_DAYS", "days must not be negative")
        raw_at = env.text("TS_REMINDER_AT", "10:00") or "10:00"
        try:
            reminder_at = time.fromisoformat(raw_at)
        except ValueError:
            raise ConfigError("TS_REMINDER_AT", f"must be HH:MM, got {raw_at!r}") from None
        return cls(
            grace_days=env.integer("SUBSCRIPTION_GRACE_DAYS", 3),
            reminder_days=days,
            reminder_at=reminder_at,
            batch_size=env.integer("TS_BATCH_SIZE", 500, minimum=1),
        )


class TermsMonitor(Monitor):
    name = "tsmonitor"
    interval_s = 60.0
    mode = "singleton"
    config_type = TermSettings
    config: TermSettings

    async def tick(self) -> int:
        return await self.send_reminders() + await self.move_states()

    # --- 1. reminders ---

    async def send_reminders(self) -> int:
        now = self.ctx.clock.now()
        horizon = now + timedelta(days=max(self.config.reminder_days) + 1)
        rows = await self.db.fetchall(
            "SELECT s.id, s.user_id, s.current_period_start, s.current_period_end, s.auto_renew,"
            " u.telegram_id FROM subscriptions s JOIN users u ON u.id = s.user_id"
            " WHERE s.status = 'active' AND s.current_period_end > ?"
            " AND s.current_period_end <= ? ORDER BY s.current_period_end, s.id LIMIT ?",
            (now, horizon, self.config.batch_size),
        )
        sent = 0
        for row in rows:
            if await self._remind(row, now):
                sent += 1
        return sent

    async def _remind(self, sub: dict[str, Any], now: datetime) -> bool:
        tz = self.ctx.settings.timezone
        end = sub["current_period_end"]
        done = await self.db.fetchall(
            "SELECT kind FROM subscription_reminders WHERE subscription_id = ? AND period_end = ?",
            (sub["id"], end),
        )
        kind = term_reminder_due(
            sub["current_period_start"],
            end,
            now,
            {row["kind"] for row in done},
            tz,
            days=self.config.reminder_days,
            send_at=self.config.reminder_at,
        )
        if kind is None:
            return False
        text = texts.term_reminder(end.astimezone(tz), sub["auto_renew"], now.astimezone(tz))
        return await self._notify(sub, kind, text)

    async def _notify(self, sub: dict[str, Any], kind: str, text: str) -> bool:
        """Record and enqueue one notice of this period; False when it was sent before."""
        period_key = Period(sub["current_period_start"], sub["current_period_end"]).key
        dedupe = f"subscription:{sub['id']}:{period_key}:{kind}"
        async with self.db.transaction() as tx:
            recorded = await tx.execute(
                "INSERT INTO subscription_reminders (subscription_id, period_end, kind,"
                " outbox_dedupe_key) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (subscription_id, period_end, kind) DO NOTHING",
                (sub["id"], sub["current_period_end"], kind, dedupe),
            )
            if not recorded:
                return False
            await enqueue(
                tx,
                dedupe_key=dedupe,
                chat_id=sub["telegram_id"],
                user_id=sub["user_id"],
                kind="reminder",
                text=text,
                priority=50,
            )
        metrics.REMINDERS.labels(monitor=self.name, kind=kind).inc()
        self.log.info("subscription_notice_enqueued", subscription_id=sub["id"], kind=kind)
        return True

    # --- 2. active -> grace -> expired ---

    async def move_states(self) -> int:
        now = self.ctx.clock.now()
        rows = await self.db.fetchall(
            "SELECT s.id, s.user_id, s.status, s.current_period_start, s.current_period_end,"
            " s.grace_until, u.telegram_id FROM subscriptions s JOIN users u ON u.id = s.user_id"
            " WHERE (s.status = 'active' AND s.current_period_end <= ?)"
            " OR (s.status = 'grace' AND s.grace_until <= ?)"
            " ORDER BY s.id LIMIT ?",
            (now, now, self.config.batch_size),
        )
        moved = 0
        for row in rows:
            if await self._move(row, now):
                moved += 1
        return moved

    def grace_end(self, period_end: datetime) -> datetime:
        if self.config.grace_days == 0:
            return period_end
        tz = self.ctx.settings.timezone
        return period_after(period_end, days=self.config.grace_days, tz=tz).end

    async def _move(self, sub: dict[str, Any], now: datetime) -> bool:
        grace_until = sub["grace_until"] or self.grace_end(sub["current_period_end"])
        status = SubscriptionStatus(sub["status"])
        target = next_status(
            status, sub["current_period_end"], now, grace=grace_until - sub["current_period_end"]
        )
        if target is status:
            return False
        changed = await self.db.execute(
            "UPDATE subscriptions SET status = ?, grace_until = ?, expired_at = ?,"
            " updated_at = ? WHERE id = ? AND status = ? AND current_period_end = ?",
            (
                target.value,
                grace_until,
                now if target is SubscriptionStatus.EXPIRED else None,
                now,
                sub["id"],
                status.value,
                sub["current_period_end"],
            ),
        )
        if not changed:
            return False  # a payment extended it meanwhile
        metrics.SUBSCRIPTION_TRANSITIONS.labels(to=target.value).inc()
        self.log.info("subscription_moved", subscription_id=sub["id"], to=target.value)
        tz = self.ctx.settings.timezone
        if target is SubscriptionStatus.GRACE:
            text = texts.grace_started(grace_until, tz)
            await self._notify(sub, "grace_started", text)
        else:
            text = texts.SUBSCRIPTION_EXPIRED
            await self._notify(sub, "expired", text)
        return True


MONITOR = TermsMonitor
