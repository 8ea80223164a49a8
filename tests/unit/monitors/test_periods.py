from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitors.decisions.periods import (
    Period,
    SubscriptionStatus,
    add_months,
    charge_idempotence_key,
    extension_start,
    next_status,
    period_after,
    renewal_due,
)

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2025, 1, 31), 1, date(2025, 2, 28)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2025, 3, 31), 1, date(2025, 4, 30)),
        (date(2025, 12, 15), 1, date(2026, 1, 15)),
        (date(2025, 11, 30), 3, date(2026, 2, 28)),
        (date(2025, 5, 5), 12, date(2026, 5, 5)),
    ],
)
def test_add_months_clamps_to_month_end(day, months, expected):
    assert add_months(day, months) == expected


def test_monthly_period_keeps_local_wall_clock_across_dst():
    start = datetime(2025, 3, 15, 10, 0, tzinfo=BERLIN)  # CET, DST starts 30 March
    period = period_after(start, months=1, tz=BERLIN)
    assert period.end == datetime(2025, 4, 15, 10, 0, tzinfo=BERLIN)
    # Same-zone subtraction is wall-clock in Python; in real time the month lost an hour.
    elapsed = period.end.astimezone(UTC) - period.start.astimezone(UTC)
    assert elapsed == timedelta(days=31) - timedelta(hours=1)


def test_period_in_days():
    start = datetime(2025, 3, 1, 0, 0, tzinfo=MSK)
    assert period_after(start, days=30, tz=MSK).end == datetime(2025, 3, 31, tzinfo=MSK)


def test_period_needs_positive_length_and_aware_start():
    with pytest.raises(ValueError, match="positive length"):
        period_after(datetime(2025, 1, 1, tzinfo=UTC), tz=MSK)
    with pytest.raises(ValueError, match="timezone-aware"):
        period_after(datetime(2025, 1, 1), months=1, tz=MSK)


def test_period_key_is_utc_and_zone_independent():
    a = Period(datetime(2025, 3, 1, 3, 0, tzinfo=MSK), datetime(2025, 4, 1, 3, 0, tzinfo=MSK))
    b = Period(datetime(2025, 3, 1, 0, 0, tzinfo=UTC), datetime(2025, 4, 1, 0, 0, tzinfo=UTC))
    assert a.key == b.key == "2025-03-01T00:00:00Z"


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (datetime(2025, 3, 30, 11, 59, tzinfo=MSK), False),
        (datetime(2025, 3, 30, 12, 0, tzinfo=MSK), True),
        (datetime(2025, 4, 2, 12, 0, tzinfo=MSK), True),
    ],
)
def test_renewal_due_one_day_ahead(now, due):
    end = datetime(2025, 3, 31, 12, 0, tzinfo=MSK)
    result = renewal_due(end, now, months=1, tz=MSK)
    assert (result is not None) is due
    if result is not None:
        # Late or on time, the charged period starts where the old one ended.
        assert result.period.start == end
        assert result.period.end == datetime(2025, 4, 30, 12, 0, tzinfo=MSK)


def test_idempotence_key_is_stable_per_subscription_period_and_attempt():
    period = Period(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
    other = Period(datetime(2025, 4, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC))
    key = charge_idempotence_key(7, period, 1)
    assert key == charge_idempotence_key(7, period, 1)
    assert len(key) == 36  # a UUID, as YooKassa recommends
    distinct = {
        key,
        charge_idempotence_key(7, period, 2),
        charge_idempotence_key(8, period, 1),
        charge_idempotence_key(7, other, 1),
    }
    assert len(distinct) == 4
    with pytest.raises(ValueError, match="starts at 1"):
        charge_idempotence_key(7, period, 0)


def test_idempotence_key_never_changes_between_releases():
    # Keys of attempts already committed must be re-derivable by the next release.
    period = Period(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
    assert charge_idempotence_key(42, period, 1) == "cafe7acf-bdaa-5890-a41b-363beda89d3f"


@pytest.mark.parametrize(
    ("status", "now_offset", "expected"),
    [
        (SubscriptionStatus.ACTIVE, timedelta(hours=-1), SubscriptionStatus.ACTIVE),
        (SubscriptionStatus.ACTIVE, timedelta(0), SubscriptionStatus.GRACE),
        (SubscriptionStatus.ACTIVE, timedelta(days=2), SubscriptionStatus.GRACE),
        (SubscriptionStatus.ACTIVE, timedelta(days=3), SubscriptionStatus.EXPIRED),
        (SubscriptionStatus.GRACE, timedelta(days=2, hours=23), SubscriptionStatus.GRACE),
        (SubscriptionStatus.GRACE, timedelta(days=3), SubscriptionStatus.EXPIRED),
        (SubscriptionStatus.EXPIRED, timedelta(days=-10), SubscriptionStatus.EXPIRED),
    ],
)
def test_state_machine(status, now_offset, expected):
    end = datetime(2025, 3, 31, 12, 0, tzinfo=MSK)
    assert next_status(status, end, end + now_offset, grace=timedelta(days=3)) is expected


def test_extension_continues_while_entitled_and_restarts_when_expired():
    now = datetime(2025, 4, 2, tzinfo=UTC)
    old_end = datetime(2025, 4, 1, tzinfo=UTC)
    assert extension_start(old_end, now, still_entitled=True) == old_end
    assert extension_start(old_end, now, still_entitled=False) == now
    assert extension_start(None, now, still_entitled=True) == now
