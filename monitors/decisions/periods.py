"""Subscription periods, renewal due dates, idempotence keys and the subscription state machine.

Periods are added on the calendar of the configured time zone, so a monthly subscription that ends
at 10:00 Moscow time keeps ending at 10:00 Moscow time, and Jan 31 + 1 month is Feb 28 (or 29).
"""

from __future__ import annotations

import calendar
import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from payments.keys import charge_key


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def add_months(day: date, months: int) -> date:
    """Calendar month arithmetic, clamping to the last day of the target month."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    return day.replace(year=year, month=month, day=min(day.day, last))


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        """Stable text naming this period of a subscription: its start instant in UTC."""
        return self.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def period_after(start: datetime, *, months: int = 0, days: int = 0, tz: tzinfo) -> Period:
    """The period beginning at `start` and lasting `months` + `days` on the local calendar."""
    _require_aware(start, "start")
    if months < 0 or days < 0 or (months == 0 and days == 0):
        raise ValueError("a period needs a positive length")
    local = start.astimezone(tz)
    end_date = add_months(local.date(), months) + timedelta(days=days)
    # Re-attach the wall-clock time in the zone: DST changes keep the local hour.
    end = datetime.combine(end_date, local.timetz().replace(tzinfo=None), tzinfo=tz)
    return Period(start, end)


def extension_start(
    current_end: datetime | None, now: datetime, *, still_entitled: bool
) -> datetime:
    """Where a paid extension starts.

    A member who pays while active or in grace continues from the old end (no gap, no gift); an
    expired member, or one who never had a period, starts now.
    """
    _require_aware(now, "now")
    if current_end is None or not still_entitled:
        return now
    _require_aware(current_end, "current_end")
    return current_end


@dataclass(frozen=True)
class RenewalDue:
    """The next period to charge for an auto-renewing subscription."""

    period: Period
    due_at: datetime


def renewal_due(
    current_end: datetime,
    now: datetime,
    *,
    months: int = 1,
    days: int = 0,
    charge_ahead: timedelta = timedelta(days=1),
    tz: tzinfo,
) -> RenewalDue | None:
    """The renewal to charge now, or None when it is not yet time.

    The charged period always starts at `current_end`: renewal extends, it never restarts, so a
    retry days later still charges the same period (and derives the same keys).
    """
    _require_aware(current_end, "current_end")
    _require_aware(now, "now")
    due_at = current_end - charge_ahead
    if now < due_at:
        return None
    return RenewalDue(period_after(current_end, months=months, days=days, tz=tz), due_at)


def charge_idempotence_key(subscription_id: int | str, period: Period, attempt_no: int) -> str:
    """The Idempotence-Key of one charge attempt.

    Stable per (subscription, period, attempt): a process that crashed after committing the attempt
    and before or after calling the provider sends the SAME key again, so the provider answers with
    the original payment instead of charging twice. A new attempt (after a decline, which YooKassa
    requires to carry a new key) gets a new number and thus a new key.
    """
    return charge_key(subscription_id, period.key, attempt_no)


def dedupe_key(*parts: object) -> str:
    """A short stable key for 'send this once' rows (outbox dedupe keys, reminder marks)."""
    return ":".join(str(part) for part in parts)


class SubscriptionStatus(enum.Enum):
    ACTIVE = "active"
    GRACE = "grace"
    EXPIRED = "expired"


def next_status(
    status: SubscriptionStatus, period_end: datetime, now: datetime, *, grace: timedelta
) -> SubscriptionStatus:
    """The status a subscription should have at `now`; a paid extension moves `period_end` instead.

    active -> grace at period_end; grace -> expired at period_end + grace; a monitor that was down
    moves active straight to expired. Never moves backwards: reactivation is the payment's job.
    """
    _require_aware(period_end, "period_end")
    _require_aware(now, "now")
    if status is SubscriptionStatus.EXPIRED:
        return status
    if now >= period_end + grace:
        return SubscriptionStatus.EXPIRED
    if now >= period_end:
        return SubscriptionStatus.GRACE
    return status
