"""monthly_anket across a restart or an upgrade: never a second survey in a month.

The tester's rehearsal: the 7d57295 image's monthly_anket ticked at start, before the members
paid, and was replaced by main's before its next tick (every 300 s); main's first tick, at
start, sent each member the month's survey. That is the month's only one: whichever version
ticks first once a member is entitled sends it, and the surveys row (unique per member and
month, a table no migration since 7d57295 touches) stops every later tick of either.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from monitors.monthly_anket import MonthlyAnket
from tests.integration.monitors.conftest import FixedClock
from tests.integration.monitors.test_events_and_surveys import entitled, kinds

MOSCOW = ZoneInfo("Europe/Moscow")
SEND_TIME = datetime(2026, 12, 1, 11, 0, tzinfo=MOSCOW)  # ANKET_SEND_DAY 1, ANKET_SEND_AT 11:00


async def test_a_restarted_monitor_sends_the_month_s_survey_once(db, sandbox, monitors):
    now = datetime(2026, 12, 6, 7, 17, tzinfo=MOSCOW)
    clock = FixedClock(now)
    before = await monitors(MonthlyAnket, clock)
    assert await before.tick() == 0  # at start: nobody entitled yet
    # Sent by the running version on the 1st (same row, same dedupe key as 7d57295 writes).
    anna = await entitled(db, sandbox, SEND_TIME)
    await db.execute(
        "INSERT INTO surveys (user_id, month, sent_at) VALUES (?, '2026-12', ?)",
        (anna["id"], SEND_TIME),
    )
    boris = await entitled(db, sandbox, now)  # paid today, before the upgrade

    clock.at = now + timedelta(minutes=2)
    after = await monitors(MonthlyAnket, clock)  # the new version's first tick, at start
    assert await after.tick() == 2
    assert await kinds(db, boris) == ["survey"]
    # Her December survey was the older version's, 5 days ago: its one reminder, no survey.
    assert await kinds(db, anna) == ["survey_reminder"]
    again = await monitors(MonthlyAnket, clock)  # and a restart after that
    assert await again.tick() == 0
    assert await before.tick() == 0
    months = await db.fetchall("SELECT user_id, month FROM surveys ORDER BY user_id, month", ())
    assert [(r["user_id"], r["month"]) for r in months] == [
        (anna["id"], "2026-12"),
        (boris["id"], "2026-12"),
    ]


async def test_no_survey_before_the_month_s_send_time_whatever_restarts(db, sandbox, monitors):
    clock = FixedClock(SEND_TIME - timedelta(minutes=1))
    await entitled(db, sandbox, clock.at)
    for _ in range(2):
        assert await (await monitors(MonthlyAnket, clock)).tick() == 0
    clock.at = SEND_TIME
    assert await (await monitors(MonthlyAnket, clock)).tick() == 1
    assert await (await monitors(MonthlyAnket, clock)).tick() == 0
