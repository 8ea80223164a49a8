"""monitors.texts.term_reminder: the days left are counted when the reminder is sent."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitors.texts import term_reminder

MSK = ZoneInfo("Europe/Moscow")
END = datetime(2026, 12, 10, 14, 0, tzinfo=MSK)


@pytest.mark.parametrize(
    ("sent_at", "words"),
    [
        (datetime(2026, 12, 7, 10, 0, tzinfo=MSK), "через 3 дн."),  # T-3 on time
        (datetime(2026, 12, 8, 10, 0, tzinfo=MSK), "через 2 дн."),  # T-3 a day late
        (datetime(2026, 12, 9, 23, 59, tzinfo=MSK), "через 1 дн."),
        (datetime(2026, 12, 10, 0, 1, tzinfo=MSK), "сегодня"),  # T-1 late, on the last day
        (datetime(2026, 12, 10, 13, 59, tzinfo=MSK), "сегодня"),
    ],
)
def test_the_days_left_follow_the_send_time(sent_at: datetime, words: str) -> None:
    assert term_reminder(END, False, sent_at) == (
        f"Подписка заканчивается {words} (10.12.2026 14:00). Продлить: /subscribe"
    )


def test_auto_renewal_says_when_the_card_is_charged() -> None:
    text = term_reminder(END, True, END - timedelta(days=7))
    assert text.startswith("Подписка продлится автоматически через 7 дн. (10.12.2026 14:00)")
