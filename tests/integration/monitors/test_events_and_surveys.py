from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from monitors.eventsmonitor import EventsMonitor
from monitors.monthly_anket import MonthlyAnket
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import FixedClock, metric

MOSCOW = ZoneInfo("Europe/Moscow")


async def entitled(db: Any, sandbox: Any, now: datetime) -> dict[str, Any]:
    user = await f.member(db, sandbox)
    await db.execute(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end) VALUES (?, ?, 'active', ?, ?)",
        (user["id"], await f.tariff(db), now - timedelta(days=5), now + timedelta(days=60)),
    )
    return user


async def kinds(db: Any, user: dict[str, Any], table: str = "outbox") -> list[str]:
    rows = await db.fetchall(
        f"SELECT kind FROM {table} WHERE user_id = ? ORDER BY id", (user["id"],)
    )
    return [row["kind"] for row in rows]


async def test_event_announced_once_and_reminded_once_per_kind(db, sandbox, monitors):
    now = datetime(2030, 5, 10, 12, 0, tzinfo=MOSCOW)
    starts = now + timedelta(days=2)
    early, late = await entitled(db, sandbox, now), await entitled(db, sandbox, now)
    lapsed = await f.member(db, sandbox)
    event_id = await db.fetchval(
        "INSERT INTO events (title, starts_at, location) VALUES ('Разбор сделок', ?, 'Офис')"
        " RETURNING id",
        (starts,),
    )
    await db.execute(
        "INSERT INTO event_registrations (event_id, user_id, registered_at) VALUES (?, ?, ?)",
        (event_id, early["id"], now),
    )
    clock = FixedClock(now)
    before = metric("domos_reminders_enqueued_total", monitor="eventsmonitor", kind="1h")
    monitor = await monitors(EventsMonitor, clock)
    assert await monitor.tick() == 2  # announced to both entitled members
    assert await monitor.tick() == 0
    assert await kinds(db, lapsed) == []

    clock.at = starts - timedelta(minutes=30)
    # Registered 30 minutes before: only the 1 h reminder is useful to them.
    await db.execute(
        "INSERT INTO event_registrations (event_id, user_id, registered_at) VALUES (?, ?, ?)",
        (event_id, late["id"], clock.at - timedelta(minutes=5)),
    )
    clock.at = starts - timedelta(hours=23)
    await monitor.tick()
    clock.at = starts - timedelta(minutes=30)
    await monitor.tick()
    await monitor.tick()
    assert await kinds(db, early) == ["event_announcement", "event_24h", "event_1h"]
    assert await kinds(db, late) == ["event_announcement", "event_1h"]
    assert (
        metric("domos_reminders_enqueued_total", monitor="eventsmonitor", kind="1h") - before == 2
    )

    await db.execute("UPDATE events SET status = 'canceled' WHERE id = ?", (event_id,))
    await monitor.tick()
    await monitor.tick()
    assert (await kinds(db, early))[-1] == "event_canceled"
    assert (await kinds(db, early)).count("event_canceled") == 1


async def test_survey_once_per_member_and_month_with_one_reminder(db, sandbox, monitors):
    sent_at = datetime(2030, 5, 1, 11, 0, tzinfo=MOSCOW)
    answering, silent = await entitled(db, sandbox, sent_at), await entitled(db, sandbox, sent_at)
    clock = FixedClock(sent_at - timedelta(minutes=1))
    before = metric("domos_reminders_enqueued_total", monitor="monthly_anket", kind="survey")
    monitor = await monitors(MonthlyAnket, clock)
    assert await monitor.tick() == 0  # before the month's send time

    clock.at = sent_at
    assert await monitor.tick() == 2
    assert await monitor.tick() == 0
    await db.execute(
        "UPDATE surveys SET status = 'answered', answered_at = ? WHERE user_id = ?",
        (sent_at + timedelta(hours=2), answering["id"]),
    )
    clock.at = sent_at + timedelta(days=3, minutes=1)
    assert await monitor.tick() == 1
    clock.at = sent_at + timedelta(days=10)
    assert await monitor.tick() == 0

    assert await kinds(db, answering) == ["survey"]
    assert await kinds(db, silent) == ["survey", "survey_reminder"]
    assert metric("domos_reminders_enqueued_total", monitor="monthly_anket", kind="survey") == (
        before + 2
    )

    # Next month: a new survey each, and last month's unanswered one expires.
    clock.at = datetime(2030, 6, 1, 11, 0, tzinfo=MOSCOW)
    assert await monitor.tick() == 3
    surveys = await db.fetchall(
        "SELECT month, status FROM surveys WHERE user_id = ? ORDER BY month", (silent["id"],)
    )
    assert [(s["month"], s["status"]) for s in surveys] == [
        ("2030-05", "expired"),
        ("2030-06", "sent"),
    ]


async def with_subscription(
    db: Any,
    sandbox: Any,
    now: datetime,
    status: str,
    *,
    ended_ago: timedelta,
    grace_ago: timedelta | None = None,
) -> dict[str, Any]:
    user = await f.member(db, sandbox)
    end = now - ended_ago
    await db.execute(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end, grace_until) VALUES (?, ?, ?, ?, ?, ?)",
        (
            user["id"],
            await f.tariff(db),
            status,
            end - timedelta(days=30),
            end,
            None if grace_ago is None else now - grace_ago,
        ),
    )
    return user


async def texts_of(db: Any, user: dict[str, Any], kind: str) -> list[str]:
    rows = await db.fetchall(
        "SELECT text FROM outbox WHERE user_id = ? AND kind = ? ORDER BY id", (user["id"], kind)
    )
    return [row["text"] for row in rows]


async def test_reminders_and_the_paid_url_go_only_to_the_entitled(db, sandbox, monitors):
    now = datetime(2030, 5, 10, 12, 0, tzinfo=MOSCOW)
    url = "https://zoom.example/j/SECRET-PAID-LINK"
    paying = await entitled(db, sandbox, now)
    staff = await f.member(db, sandbox, role="staff")
    in_grace = await with_subscription(
        db, sandbox, now, "grace", ended_ago=timedelta(days=2), grace_ago=-timedelta(days=1)
    )
    expired = await with_subscription(db, sandbox, now, "expired", ended_ago=timedelta(days=3))
    # tsmonitor has not yet moved it on: the row still says grace, but the grace is over.
    grace_over = await with_subscription(
        db, sandbox, now, "grace", ended_ago=timedelta(days=4), grace_ago=timedelta(days=1)
    )
    refunded = await with_subscription(db, sandbox, now, "canceled", ended_ago=timedelta(days=1))
    lapsed = [expired, grace_over, refunded]
    event_id = await db.fetchval(
        "INSERT INTO events (title, starts_at, url, announced_at) VALUES (?, ?, ?, ?) RETURNING id",
        ("Closed masterclass", now + timedelta(hours=20), url, now - timedelta(days=6)),
    )
    for user in [paying, staff, in_grace, *lapsed]:
        await db.execute(
            "INSERT INTO event_registrations (event_id, user_id, registered_at) VALUES (?, ?, ?)",
            (event_id, user["id"], now - timedelta(days=5)),
        )
    monitor = await monitors(EventsMonitor, FixedClock(now))
    assert await monitor.tick() == 3
    for user in [paying, staff, in_grace]:
        [reminder] = await texts_of(db, user, "event_24h")
        assert "Closed masterclass" in reminder
        assert url in reminder
    for user in lapsed:
        assert await kinds(db, user) == []
        assert await kinds(db, user, "event_notifications") == []

    # Canceled: every registrant is told, the lapsed ones without the paid link.
    await db.execute("UPDATE events SET status = 'canceled' WHERE id = ?", (event_id,))
    assert await monitor.tick() == 6
    for user in [paying, staff, in_grace]:
        [canceled] = await texts_of(db, user, "event_canceled")
        assert url in canceled
    for user in lapsed:
        [canceled] = await texts_of(db, user, "event_canceled")
        assert "«Closed masterclass»" in canceled
        assert "отменено" in canceled
        assert "SECRET" not in canceled
        assert "zoom.example" not in canceled


async def test_every_registrant_is_reminded_within_bounded_ticks(db, sandbox, monitors):
    now = datetime(2030, 5, 10, 12, 0, tzinfo=MOSCOW)
    first = now + timedelta(hours=20)
    second = now + timedelta(hours=22)
    first_id, second_id = [
        await db.fetchval(
            "INSERT INTO events (title, starts_at, announced_at) VALUES (?, ?, ?) RETURNING id",
            (title, starts, now - timedelta(days=6)),
        )
        for title, starts in (("Разбор сделок", first), ("Ипотека", second))
    ]

    async def register(event_id: int, registered_at: datetime) -> dict[str, Any]:
        user = await entitled(db, sandbox, now)
        await db.execute(
            "INSERT INTO event_registrations (event_id, user_id, registered_at) VALUES (?, ?, ?)",
            (event_id, user["id"], registered_at),
        )
        return user

    # First by id: two who registered inside the 24 h window (no 24 h reminder for them).
    late = [await register(first_id, now - timedelta(hours=2)) for _ in range(2)]
    early = [await register(first_id, now - timedelta(days=5)) for _ in range(3)]
    other = [await register(second_id, now - timedelta(days=5)) for _ in range(2)]
    clock = FixedClock(now)
    monitor = await monitors(EventsMonitor, clock, EVENTS_BATCH_SIZE="2")

    # 7 registrations, 2 a tick: 4 ticks see every one once.
    for _ in range(4):
        await monitor.tick()
    for user in early + other:
        assert await kinds(db, user) == ["event_24h"]
    for user in late:
        assert await kinds(db, user) == []
    assert await monitor.tick() == 0

    clock.at = first - timedelta(minutes=30)
    for _ in range(3):  # the first event's 5 registrants
        await monitor.tick()
    for user in early:
        assert await kinds(db, user) == ["event_24h", "event_1h"]
    for user in late:
        assert await kinds(db, user) == ["event_1h"]
    for user in other:
        assert await kinds(db, user) == ["event_24h"]
    assert await monitor.tick() == 0
