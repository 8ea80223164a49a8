from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitors.decisions.reminders import (
    SurveySchedule,
    event_reminder_due,
    month_key,
    term_reminder_due,
    term_reminder_times,
)

MSK = ZoneInfo("Europe/Moscow")
END = datetime(2025, 4, 15, 18, 30, tzinfo=MSK)
START = datetime(2025, 3, 15, 18, 30, tzinfo=MSK)


def test_term_reminders_are_at_ten_local_on_calendar_days():
    times = term_reminder_times(END, MSK)
    assert times == {
        "T-7": datetime(2025, 4, 8, 10, 0, tzinfo=MSK),
        "T-3": datetime(2025, 4, 12, 10, 0, tzinfo=MSK),
        "T-1": datetime(2025, 4, 14, 10, 0, tzinfo=MSK),
        "T-0": datetime(2025, 4, 15, 10, 0, tzinfo=MSK),
    }


def test_t0_never_comes_after_the_end():
    early_end = datetime(2025, 4, 15, 0, 30, tzinfo=MSK)
    assert term_reminder_times(early_end, MSK)["T-0"] == early_end


def test_calendar_day_is_the_configured_zone_not_utc():
    # 23:30 UTC on 14 April is already 15 April in Moscow.
    end = datetime(2025, 4, 14, 23, 30, tzinfo=UTC)
    assert term_reminder_times(end, MSK)["T-1"] == datetime(2025, 4, 14, 10, 0, tzinfo=MSK)


@pytest.mark.parametrize(
    ("now", "sent", "expected"),
    [
        (datetime(2025, 4, 8, 9, 59, tzinfo=MSK), set(), None),
        (datetime(2025, 4, 8, 10, 0, tzinfo=MSK), set(), "T-7"),
        (datetime(2025, 4, 9, 10, 0, tzinfo=MSK), {"T-7"}, None),
        (datetime(2025, 4, 12, 10, 0, tzinfo=MSK), {"T-7"}, "T-3"),
        # Down for days: only the latest due reminder is sent, not a burst of stale ones.
        (datetime(2025, 4, 14, 12, 0, tzinfo=MSK), set(), "T-1"),
        (datetime(2025, 4, 14, 12, 0, tzinfo=MSK), {"T-1"}, None),
        (datetime(2025, 4, 15, 10, 0, tzinfo=MSK), {"T-7", "T-3", "T-1"}, "T-0"),
        (datetime(2025, 4, 15, 18, 30, tzinfo=MSK), {"T-7", "T-3", "T-1"}, "T-0"),
        # Past the end: tsmonitor moves the state; no reminder.
        (datetime(2025, 4, 16, 10, 0, tzinfo=MSK), set(), None),
    ],
)
def test_term_reminder_due(now, sent, expected):
    assert term_reminder_due(START, END, now, sent, MSK) == expected


def test_reminders_before_a_short_period_started_do_not_count():
    start = datetime(2025, 4, 13, 12, 0, tzinfo=MSK)  # bought two days before the end
    now = datetime(2025, 4, 13, 12, 5, tzinfo=MSK)
    assert term_reminder_due(start, END, now, set(), MSK) is None
    assert term_reminder_due(start, END, now + timedelta(days=1), set(), MSK) == "T-1"


def test_reminder_hour_is_configurable():
    now = datetime(2025, 4, 8, 9, 0, tzinfo=MSK)
    assert term_reminder_due(START, END, now, set(), MSK, send_at=time(9, 0)) == "T-7"


STARTS = datetime(2025, 5, 20, 19, 0, tzinfo=MSK)


@pytest.mark.parametrize(
    ("now", "sent", "registered", "expected"),
    [
        (STARTS - timedelta(hours=25), set(), None, None),
        (STARTS - timedelta(hours=24), set(), None, "24h"),
        (STARTS - timedelta(hours=2), {"24h"}, None, None),
        (STARTS - timedelta(hours=1), {"24h"}, None, "1h"),
        (STARTS - timedelta(minutes=30), {"24h", "1h"}, None, None),
        (STARTS, set(), None, None),
        # Registered 20 h before: the 24 h window opened before that; only the 1 h one counts.
        (STARTS - timedelta(hours=19), set(), STARTS - timedelta(hours=20), None),
        (STARTS - timedelta(minutes=59), set(), STARTS - timedelta(hours=20), "1h"),
        # Registered 30 min before: the last reminder still goes out.
        (STARTS - timedelta(minutes=29), set(), STARTS - timedelta(minutes=30), "1h"),
    ],
)
def test_event_reminder_due(now, sent, registered, expected):
    assert event_reminder_due(STARTS, now, sent, registered_at=registered) == expected


@pytest.mark.parametrize(
    ("now", "key"),
    [
        (datetime(2025, 3, 31, 20, 59, tzinfo=UTC), "2025-03"),
        (datetime(2025, 3, 31, 21, 0, tzinfo=UTC), "2025-04"),  # already April in Moscow
        (datetime(2025, 12, 31, 21, 0, tzinfo=UTC), "2026-01"),
    ],
)
def test_month_key_follows_the_local_calendar(now, key):
    assert month_key(now, MSK) == key


@pytest.mark.parametrize(
    ("now", "already_sent", "expected"),
    [
        (datetime(2025, 4, 1, 10, 59, tzinfo=MSK), False, None),
        (datetime(2025, 4, 1, 11, 0, tzinfo=MSK), False, "2025-04"),
        (datetime(2025, 4, 20, 8, 0, tzinfo=MSK), False, "2025-04"),
        (datetime(2025, 4, 20, 8, 0, tzinfo=MSK), True, None),
    ],
)
def test_survey_due(now, already_sent, expected):
    assert SurveySchedule().survey_due(now, MSK, already_sent) == expected


SENT = datetime(2025, 4, 1, 11, 0, tzinfo=MSK)


@pytest.mark.parametrize(
    ("now", "responded", "reminded", "expected"),
    [
        (SENT + timedelta(days=2, hours=23), False, False, False),
        (SENT + timedelta(days=3), False, False, True),
        (SENT + timedelta(days=3), True, False, False),
        (SENT + timedelta(days=3), False, True, False),
        (datetime(2025, 4, 26, 12, 0, tzinfo=MSK), False, False, False),
        (datetime(2025, 5, 2, 12, 0, tzinfo=MSK), False, False, False),
    ],
)
def test_survey_reminder_due(now, responded, reminded, expected):
    schedule = SurveySchedule()
    assert schedule.reminder_due(SENT, now, MSK, responded=responded, reminded=reminded) is expected


def test_survey_send_day_is_validated():
    with pytest.raises(ValueError, match="send_day"):
        SurveySchedule(send_day=31)
