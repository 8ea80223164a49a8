"""monthly_anket: the monthly questionnaire, once per member and month, one reminder at most.

Singleton. Each tick, once the month's send time has come (`SurveySchedule`, local time zone):
every entitled, reachable member without a survey for this month gets one — the surveys row
(unique per member and month) and its outbox row in one transaction. A non-responder whose survey
is `remind_after` old gets a single reminder: `reminded_at` is set by a conditional UPDATE in the
transaction that enqueues it. Unanswered surveys of past months expire.

The send time is when the month's surveys start, not the only moment one goes out: a member who
becomes entitled later in the month (pays on the 6th) gets that month's survey at the next tick,
and a monitor ticks at once when it starts. So a restart or an upgrade right after members paid
sends them the month's survey at once, where the running process would have at its next tick
(every 5 min): the same single survey, never a second (the surveys row, unique per member and
month, is read by every version alike; tests/integration/monitors/test_survey_after_upgrade.py).

Settings: ANKET_SEND_DAY (1), ANKET_SEND_AT (11:00), ANKET_REMIND_AFTER_DAYS (3),
ANKET_BATCH_SIZE (1000).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Self

from monitors import metrics, texts
from monitors.decisions.reminders import SurveySchedule, month_key
from monitors.outbox import enqueue
from payments.entitlement import entitling
from runtime.config import Env, Settings
from runtime.errors import ConfigError
from runtime.monitor import Monitor

OPEN = "('sent', 'in_progress')"


def schedule_from_env(env: Env) -> SurveySchedule:
    raw_at = env.text("ANKET_SEND_AT", "11:00") or "11:00"
    try:
        send_at = time.fromisoformat(raw_at)
    except ValueError:
        raise ConfigError("ANKET_SEND_AT", f"must be HH:MM, got {raw_at!r}") from None
    return SurveySchedule(
        send_day=env.integer("ANKET_SEND_DAY", 1, minimum=1, maximum=28),
        send_at=send_at,
        remind_after=timedelta(days=env.number("ANKET_REMIND_AFTER_DAYS", 3.0)),
    )


@dataclass(frozen=True)
class AnketSettings:
    schedule: SurveySchedule
    batch_size: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str], settings: Settings) -> Self:
        env = Env(environ)
        return cls(
            schedule=schedule_from_env(env),
            batch_size=env.integer("ANKET_BATCH_SIZE", 1000, minimum=1),
        )


class MonthlyAnket(Monitor):
    name = "monthly_anket"
    interval_s = 300.0
    mode = "singleton"
    config_type = AnketSettings
    config: AnketSettings

    async def setup(self) -> None:
        self.schedule = self.config.schedule
        self.batch_size = self.config.batch_size

    async def tick(self) -> int:
        now = self.ctx.clock.now()
        return await self.send(now) + await self.remind(now) + await self.expire(now)

    async def send(self, now: datetime) -> int:
        month = self.schedule.survey_due(now, self.ctx.settings.timezone, already_sent=False)
        if month is None:
            return 0
        members = await self.db.fetchall(
            "SELECT DISTINCT u.id, u.telegram_id FROM users u JOIN subscriptions s"
            f" ON s.user_id = u.id AND {entitling('s')}"
            " WHERE u.is_reachable AND NOT EXISTS (SELECT 1 FROM surveys v"
            " WHERE v.user_id = u.id AND v.month = ?) ORDER BY u.id LIMIT ?",
            (now, month, self.batch_size),
        )
        sent = 0
        for member in members:
            async with self.db.transaction() as tx:
                survey_id = await tx.fetchval(
                    "INSERT INTO surveys (user_id, month, sent_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (user_id, month) DO NOTHING RETURNING id",
                    (member["id"], month, now),
                )
                if survey_id is None:
                    continue
                await enqueue(
                    tx,
                    dedupe_key=f"survey:{member['id']}:{month}",
                    chat_id=member["telegram_id"],
                    user_id=member["id"],
                    kind="survey",
                    text=texts.SURVEY_INVITE,
                    reply_markup=texts.survey_keyboard(),
                    priority=200,
                )
            sent += 1
            metrics.REMINDERS.labels(monitor=self.name, kind="survey").inc()
        return sent

    async def remind(self, now: datetime) -> int:
        tz = self.ctx.settings.timezone
        surveys = await self.db.fetchall(
            "SELECT v.id, v.user_id, v.month, v.sent_at, u.telegram_id FROM surveys v"
            f" JOIN users u ON u.id = v.user_id WHERE v.status IN {OPEN}"
            " AND v.reminded_at IS NULL AND v.sent_at <= ? AND v.month = ?"
            " ORDER BY v.sent_at LIMIT ?",
            (now - self.schedule.remind_after, month_key(now, tz), self.batch_size),
        )
        sent = 0
        for survey in surveys:
            if not self.schedule.reminder_due(
                survey["sent_at"], now, tz, responded=False, reminded=False
            ):
                continue
            async with self.db.transaction() as tx:
                marked = await tx.execute(
                    "UPDATE surveys SET reminded_at = ?, updated_at = ?"
                    f" WHERE id = ? AND reminded_at IS NULL AND status IN {OPEN}",
                    (now, now, survey["id"]),
                )
                if not marked:
                    continue
                await enqueue(
                    tx,
                    dedupe_key=f"survey_reminder:{survey['id']}",
                    chat_id=survey["telegram_id"],
                    user_id=survey["user_id"],
                    kind="survey_reminder",
                    text=texts.SURVEY_REMINDER,
                    reply_markup=texts.survey_keyboard(),
                    priority=200,
                )
            sent += 1
            metrics.REMINDERS.labels(monitor=self.name, kind="survey_reminder").inc()
        return sent

    async def expire(self, now: datetime) -> int:
        month = month_key(now, self.ctx.settings.timezone)
        return await self.db.execute(
            f"UPDATE surveys SET status = 'expired', updated_at = ? WHERE status IN {OPEN}"
            " AND month < ?",
            (now, month),
        )


MONITOR = MonthlyAnket
