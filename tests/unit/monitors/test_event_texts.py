"""monitors.texts.event_notice: a reminder's words follow the time it is sent, not its kind."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitors.texts import event_notice

MSK = ZoneInfo("Europe/Moscow")
START = datetime(2026, 12, 6, 9, 18, tzinfo=MSK)
EVENT = {"title": "Meetup", "starts_at": START, "location": "Офис", "url": None}


@pytest.mark.parametrize(
    ("kind", "before", "words"),
    [
        ("24h", timedelta(hours=24), "завтра, 06.12.2026 09:18"),
        ("24h", timedelta(hours=9, minutes=18, seconds=1), "завтра, 06.12.2026 09:18"),  # 23:59:59
        ("24h", timedelta(hours=9, minutes=18), "сегодня, 06.12.2026 09:18"),  # 00:00 local
        ("24h", timedelta(hours=3), "сегодня, 06.12.2026 09:18"),  # the tester's case
        ("1h", timedelta(hours=1), "через час, 06.12.2026 09:18"),
        ("1h", timedelta(minutes=59, seconds=30), "через час, 06.12.2026 09:18"),
        ("1h", timedelta(minutes=20), "через 20 мин., 06.12.2026 09:18"),
        ("1h", timedelta(seconds=10), "через 1 мин., 06.12.2026 09:18"),
        ("1h", timedelta(seconds=-10), "— 06.12.2026 09:18"),  # never "in N minutes" once begun
    ],
)
def test_reminder_words_follow_the_send_time(kind, before, words):
    text = event_notice(EVENT, kind, MSK, START - before)
    assert text == f"Напоминаем: «Meetup» {words}, Офис."


def test_the_local_calendar_decides_today_and_tomorrow():
    # 22:30 UTC on the 5th is 01:30 on the 6th in Moscow: the event is today there.
    now = datetime(2026, 12, 5, 22, 30, tzinfo=ZoneInfo("UTC"))
    assert "сегодня, 06.12.2026 09:18" in event_notice(EVENT, "24h", MSK, now)
    # In New York it is 17:30 on the 5th: the same event (01:18 on the 6th there) is tomorrow.
    new_york = ZoneInfo("America/New_York")
    assert "завтра, 06.12.2026 01:18" in event_notice(EVENT, "24h", new_york, now)


def test_a_reminder_needs_its_send_time():
    with pytest.raises(TypeError, match="now"):
        event_notice(EVENT, "24h", MSK)


def test_announcement_and_cancellation_unchanged():
    assert event_notice(EVENT, "announcement", MSK) == (
        "Новое мероприятие: Meetup — 06.12.2026 09:18, Офис. Записаться: /events"
    )
    canceled = event_notice(EVENT, "canceled", MSK)
    assert canceled == "Мероприятие «Meetup» (06.12.2026 09:18) отменено."
