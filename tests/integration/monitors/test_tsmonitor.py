from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from monitors.tsmonitor import TermsMonitor
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import FixedClock, metric

MOSCOW = ZoneInfo("Europe/Moscow")


async def subscription_ending(db: Any, sandbox: Any, end: datetime) -> dict[str, Any]:
    user = await f.member(db, sandbox)
    tariff_id = await f.tariff(db)
    sub_id = await db.fetchval(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end, auto_renew) VALUES (?, ?, 'active', ?, ?, ?) RETURNING id",
        (user["id"], tariff_id, end - timedelta(days=30), end, False),
    )
    return {"id": sub_id, "user": user, "end": end}


async def notices(db: Any, sub: dict[str, Any]) -> list[str]:
    rows = await db.fetchall(
        "SELECT kind FROM subscription_reminders WHERE subscription_id = ? ORDER BY id",
        (sub["id"],),
    )
    outbox = await db.fetchall(
        "SELECT dedupe_key FROM outbox WHERE user_id = ? ORDER BY id", (sub["user"]["id"],)
    )
    assert len(outbox) == len(rows)  # every recorded notice was enqueued, once
    return [row["kind"] for row in rows]


async def test_each_reminder_once_per_period_at_local_time(db, sandbox, monitors):
    end = datetime(2030, 3, 20, 15, 0, tzinfo=MOSCOW)
    sub = await subscription_ending(db, sandbox, end)
    clock = FixedClock(datetime(2030, 3, 13, 9, 59, tzinfo=MOSCOW))
    before = metric("domos_reminders_enqueued_total", monitor="tsmonitor", kind="T-7")
    monitor = await monitors(TermsMonitor, clock)

    assert await monitor.tick() == 0  # 09:59 Moscow: T-7 is due at 10:00
    for day, kinds in [
        (13, ["T-7"]),
        (14, ["T-7"]),
        (17, ["T-7", "T-3"]),
        (19, ["T-7", "T-3", "T-1"]),
        (20, ["T-7", "T-3", "T-1", "T-0"]),
    ]:
        clock.at = datetime(2030, 3, day, 10, 0, tzinfo=MOSCOW)
        await monitor.tick()
        await monitor.tick()
        assert await notices(db, sub) == kinds
    assert metric("domos_reminders_enqueued_total", monitor="tsmonitor", kind="T-7") - before == 1


async def test_a_monitor_that_was_down_sends_only_the_latest_reminder(db, sandbox, monitors):
    sub = await subscription_ending(db, sandbox, datetime(2030, 3, 20, 15, 0, tzinfo=MOSCOW))
    clock = FixedClock(datetime(2030, 3, 19, 12, 0, tzinfo=MOSCOW))
    monitor = await monitors(TermsMonitor, clock)
    await monitor.tick()
    assert await notices(db, sub) == ["T-1"]


async def test_a_late_reminder_counts_the_days_left_when_it_is_sent(db, sandbox, monitors):
    """T-3 is due on the 17th at 10:00; a monitor down until the 18th sends it then, and says
    two days, not three (nor does a T-1 sent on the last day say one)."""
    sub = await subscription_ending(db, sandbox, datetime(2030, 3, 20, 15, 0, tzinfo=MOSCOW))
    clock = FixedClock(datetime(2030, 3, 18, 12, 0, tzinfo=MOSCOW))
    monitor = await monitors(TermsMonitor, clock)
    await monitor.tick()
    clock.at = datetime(2030, 3, 20, 9, 0, tzinfo=MOSCOW)  # T-1 (the 19th) missed as well
    await monitor.tick()
    assert await notices(db, sub) == ["T-3", "T-1"]
    texts = await db.fetchall(
        "SELECT text FROM outbox WHERE user_id = ? ORDER BY id", (sub["user"]["id"],)
    )
    assert [row["text"] for row in texts] == [
        "Подписка заканчивается через 2 дн. (20.03.2030 15:00). Продлить: /subscribe",
        "Подписка заканчивается сегодня (20.03.2030 15:00). Продлить: /subscribe",
    ]


async def test_reminders_follow_the_configured_time_zone(db, sandbox, monitors):
    vladivostok = ZoneInfo("Asia/Vladivostok")
    sub = await subscription_ending(db, sandbox, datetime(2030, 3, 20, 15, 0, tzinfo=vladivostok))
    clock = FixedClock(datetime(2030, 3, 17, 9, 59, tzinfo=vladivostok))
    monitor = await monitors(TermsMonitor, clock, DOMOS_TIMEZONE="Asia/Vladivostok")
    await monitor.tick()
    assert await notices(db, sub) == ["T-7"]
    # 10:00 in Vladivostok is 03:00 in Moscow: due here, not yet on Moscow's calendar.
    clock.at = datetime(2030, 3, 17, 10, 0, tzinfo=vladivostok)
    await monitor.tick()
    assert await notices(db, sub) == ["T-7", "T-3"]


async def test_active_to_grace_to_expired_on_time(db, sandbox, monitors):
    end = datetime(2030, 3, 20, 15, 0, tzinfo=MOSCOW)
    sub = await subscription_ending(db, sandbox, end)
    clock = FixedClock(end - timedelta(seconds=1))
    before = metric("domos_subscription_transitions_total", to="grace")
    monitor = await monitors(TermsMonitor, clock)
    await monitor.move_states()
    row = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert row["status"] == "active"

    clock.at = end
    assert await monitor.move_states() == 1
    row = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert row["status"] == "grace"
    assert row["grace_until"] == datetime(2030, 3, 23, 15, 0, tzinfo=MOSCOW)
    assert metric("domos_subscription_transitions_total", to="grace") - before == 1

    clock.at = datetime(2030, 3, 23, 14, 59, tzinfo=MOSCOW)
    assert await monitor.move_states() == 0
    clock.at = datetime(2030, 3, 23, 15, 0, tzinfo=MOSCOW)
    assert await monitor.move_states() == 1
    row = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert (row["status"], row["expired_at"]) == ("expired", clock.at)
    assert await monitor.tick() == 0
    assert await notices(db, sub) == ["grace_started", "expired"]


async def test_a_long_outage_moves_active_straight_to_expired(db, sandbox, monitors):
    end = datetime(2030, 3, 20, 15, 0, tzinfo=MOSCOW)
    sub = await subscription_ending(db, sandbox, end)
    monitor = await monitors(TermsMonitor, FixedClock(end + timedelta(days=10)))
    await monitor.tick()
    row = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert row["status"] == "expired"
    assert await notices(db, sub) == ["expired"]
