"""eventsmonitor: community events announced to members and reminded to registrants, once each.

Singleton. Each tick: published events not yet announced are announced to every entitled,
reachable member; registrants get the 24 h and 1 h reminders (only the latest due one, per
`monitors.decisions.reminders.event_reminder_due`); registrants of a canceled event are told.

Events are for those who paid (payments.entitlement): reminders, which carry the event's link,
go only to registrants entitled now (staff, or a subscription active or in a grace not run
out). A lapsed registrant's registration stays, left out of the reminders (and of the seats
counted, services/bot/repository.py) until they pay again; if the event is canceled they are
told so, without its link.

Every message is an event_notifications row, unique per (event, member, kind), written in the
same transaction as its outbox row: once per (event, member, reminder) whatever happens.
`event_registrations.last_reminder` records the latest reminder window a registration has been
dealt with (reminded, or passed over), so each tick reads only registrations with a reminder
left to deal with: EVENTS_BATCH_SIZE registrations a tick, every one reminded in a bounded number
of ticks.

Settings: EVENTS_BATCH_SIZE (1000).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from monitors import metrics, texts
from monitors.decisions.reminders import EVENT_REMINDER_OFFSETS, event_reminder_due
from monitors.outbox import enqueue
from payments.entitlement import entitled_user, entitling
from runtime.config import Env, Settings
from runtime.monitor import Monitor

ENTITLED = entitling("s")

#: The reminder windows, the earliest to open first: [('24h', 24 h), ('1h', 1 h)].
REMINDER_WINDOWS = sorted(EVENT_REMINDER_OFFSETS.items(), key=lambda item: item[1], reverse=True)
#: SQL: registration `r` of event `e` has a window left to deal with, given that the first has
#: opened. Binds two per later window: the kind before it, and now + its offset.
_REMINDER_LEFT = " OR ".join(
    ["r.last_reminder IS NULL"]
    + ["(r.last_reminder = ? AND e.starts_at <= ?)"] * (len(REMINDER_WINDOWS) - 1)
)


@dataclass(frozen=True)
class EventsSettings:
    batch_size: int = 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str], settings: Settings) -> Self:
        return cls(batch_size=Env(environ).integer("EVENTS_BATCH_SIZE", 1000, minimum=1))


class EventsMonitor(Monitor):
    name = "eventsmonitor"
    interval_s = 60.0
    mode = "singleton"
    config_type = EventsSettings
    config: EventsSettings

    async def setup(self) -> None:
        self.batch_size = self.config.batch_size

    async def tick(self) -> int:
        now = self.ctx.clock.now()
        return await self.announce(now) + await self.remind(now) + await self.cancellations(now)

    async def announce(self, now: datetime) -> int:
        events = await self.db.fetchall(
            "SELECT * FROM events WHERE status = 'published' AND announced_at IS NULL"
            " AND starts_at > ? ORDER BY starts_at",
            (now,),
        )
        sent = 0
        for event in events:
            members = await self.db.fetchall(
                "SELECT DISTINCT u.id, u.telegram_id FROM users u"
                f" JOIN subscriptions s ON s.user_id = u.id AND {ENTITLED}"
                " WHERE u.is_reachable AND NOT EXISTS (SELECT 1 FROM event_notifications n"
                " WHERE n.event_id = ? AND n.user_id = u.id AND n.kind = 'announcement')"
                " ORDER BY u.id LIMIT ?",
                (now, event["id"], self.batch_size),
            )
            for member in members:
                sent += await self._notify(event, member, "announcement", now)
            if len(members) < self.batch_size:
                await self.db.execute(
                    "UPDATE events SET announced_at = ?, updated_at = ? WHERE id = ?",
                    (now, now, event["id"]),
                )
        return sent

    async def remind(self, now: datetime) -> int:
        """Registrations with a reminder window opened that they have not been dealt with (none
        yet, or the next after `last_reminder`), oldest event first; each one read is dealt with
        (reminded, or passed over as event_reminder_due says) and recorded in `last_reminder`,
        so the next tick reads the next ones."""
        later = [
            param
            for (kind, _), (_, offset) in itertools.pairwise(REMINDER_WINDOWS)
            for param in (kind, now + offset)
        ]
        rows = await self.db.fetchall(
            "SELECT e.id, e.title, e.starts_at, e.location, e.url, r.id AS registration_id,"
            " r.registered_at, u.id AS user_id, u.telegram_id FROM event_registrations r"
            " JOIN events e ON e.id = r.event_id JOIN users u ON u.id = r.user_id"
            " WHERE r.status = 'registered' AND e.status = 'published'"
            f" AND e.starts_at > ? AND e.starts_at <= ? AND ({_REMINDER_LEFT})"
            f" AND {entitled_user('u')} ORDER BY e.starts_at, r.id LIMIT ?",
            (now, now + REMINDER_WINDOWS[0][1], *later, now, self.batch_size),
        )
        sent = 0
        for row in rows:
            done = await self.db.fetchall(
                "SELECT kind FROM event_notifications WHERE event_id = ? AND user_id = ?",
                (row["id"], row["user_id"]),
            )
            kind = event_reminder_due(
                row["starts_at"],
                now,
                {d["kind"] for d in done},
                registered_at=row["registered_at"],
            )
            if kind is not None:
                member = {"id": row["user_id"], "telegram_id": row["telegram_id"]}
                sent += await self._notify(row, member, kind, now)
            # The latest window opened: the one reminded now, or passed over.
            opened = [k for k, offset in REMINDER_WINDOWS if row["starts_at"] - offset <= now]
            await self.db.execute(
                "UPDATE event_registrations SET last_reminder = ? WHERE id = ?",
                (opened[-1], row["registration_id"]),
            )
        return sent

    async def cancellations(self, now: datetime) -> int:
        rows = await self.db.fetchall(
            "SELECT e.id, e.title, e.starts_at, e.location, e.url, u.id AS user_id,"
            f" u.telegram_id, {entitled_user('u')} AS entitled"
            " FROM events e JOIN event_registrations r ON r.event_id = e.id"
            " AND r.status = 'registered' JOIN users u ON u.id = r.user_id"
            " WHERE e.status = 'canceled' AND NOT EXISTS (SELECT 1 FROM event_notifications n"
            " WHERE n.event_id = e.id AND n.user_id = u.id AND n.kind = 'canceled')"
            " ORDER BY r.id LIMIT ?",
            (now, self.batch_size),
        )
        sent = 0
        for row in rows:
            member = {"id": row["user_id"], "telegram_id": row["telegram_id"]}
            # The link is for those who paid, canceled event or not.
            event = row if row["entitled"] else {**row, "url": None}
            sent += await self._notify(event, member, "canceled", now)
        return sent

    def _text(self, event: dict[str, Any], kind: str, now: datetime) -> str:
        # The text says when the event is as seen now: a reminder sent late says «сегодня».
        return texts.event_notice(event, kind, self.ctx.settings.timezone, now)

    async def _notify(
        self, event: dict[str, Any], member: dict[str, Any], kind: str, now: datetime
    ) -> int:
        dedupe = f"event:{event['id']}:{member['id']}:{kind}"
        async with self.db.transaction() as tx:
            recorded = await tx.execute(
                "INSERT INTO event_notifications (event_id, user_id, kind, outbox_dedupe_key)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (event_id, user_id, kind) DO NOTHING",
                (event["id"], member["id"], kind, dedupe),
            )
            if not recorded:
                return 0
            await enqueue(
                tx,
                dedupe_key=dedupe,
                chat_id=member["telegram_id"],
                user_id=member["id"],
                kind=f"event_{kind}",
                text=self._text(event, kind, now),
                priority=60,
            )
        metrics.REMINDERS.labels(monitor=self.name, kind=kind).inc()
        return 1


MONITOR = EventsMonitor
