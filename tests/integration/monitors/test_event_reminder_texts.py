"""What an event reminder says when eventsmonitor sends it late (after downtime, an upgrade).

The tester's reproduction: an event published at now + 3 h, its registration made 2 days ago.
The 24 h reminder, sent 3 h before the start, said «завтра» of an event later the same day.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from monitors.eventsmonitor import EventsMonitor
from tests.integration.monitors.conftest import FixedClock
from tests.integration.monitors.test_events_and_surveys import entitled, kinds, texts_of

MOSCOW = ZoneInfo("Europe/Moscow")


async def registered(db: Any, sandbox: Any, now: datetime, starts_at: datetime) -> dict[str, Any]:
    """An entitled member registered 2 days ago to a published, announced 'Meetup'."""
    user = await entitled(db, sandbox, now)
    event_id = await db.fetchval(
        "INSERT INTO events (title, starts_at, status, announced_at)"
        " VALUES ('Meetup', ?, 'published', ?) RETURNING id",
        (starts_at, now - timedelta(days=3)),
    )
    await db.execute(
        "INSERT INTO event_registrations (event_id, user_id, registered_at) VALUES (?, ?, ?)",
        (event_id, user["id"], now - timedelta(days=2)),
    )
    return user


async def test_a_late_24h_reminder_says_today_of_an_event_today(db, sandbox, monitors):
    now = datetime(2026, 12, 6, 6, 18, tzinfo=MOSCOW)
    user = await registered(db, sandbox, now, now + timedelta(hours=3))
    monitor = await monitors(EventsMonitor, FixedClock(now))
    assert await monitor.tick() == 1
    assert await texts_of(db, user, "event_24h") == [
        "Напоминаем: «Meetup» сегодня, 06.12.2026 09:18."
    ]


async def test_a_24h_reminder_on_time_says_tomorrow(db, sandbox, monitors):
    now = datetime(2026, 12, 6, 9, 18, tzinfo=MOSCOW)
    user = await registered(db, sandbox, now, now + timedelta(hours=24))
    monitor = await monitors(EventsMonitor, FixedClock(now))
    assert await monitor.tick() == 1
    assert await texts_of(db, user, "event_24h") == [
        "Напоминаем: «Meetup» завтра, 07.12.2026 09:18."
    ]


async def test_a_late_1h_reminder_says_how_many_minutes_are_left(db, sandbox, monitors):
    now = datetime(2026, 12, 6, 8, 58, tzinfo=MOSCOW)
    user = await registered(db, sandbox, now, now + timedelta(minutes=20))
    monitor = await monitors(EventsMonitor, FixedClock(now))
    assert await monitor.tick() == 1
    # Only the latest window opened is sent: the 1 h one, not the 24 h one as well.
    assert await texts_of(db, user, "event_24h") == []
    assert await texts_of(db, user, "event_1h") == [
        "Напоминаем: «Meetup» через 20 мин., 06.12.2026 09:18."
    ]


async def test_no_reminder_once_the_event_has_started(db, sandbox, monitors):
    now = datetime(2026, 12, 6, 9, 19, tzinfo=MOSCOW)
    user = await registered(db, sandbox, now, now - timedelta(minutes=1))
    monitor = await monitors(EventsMonitor, FixedClock(now))
    assert await monitor.tick() == 0
    assert await monitor.tick() == 0
    assert await texts_of(db, user, "event_24h") == []
    assert await texts_of(db, user, "event_1h") == []
    assert await kinds(db, user, "event_notifications") == []
