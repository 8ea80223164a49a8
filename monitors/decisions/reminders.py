"""Which reminder is due now: subscription terms, community events, the monthly survey.

The common rule: of the reminders whose moment has come, only the LATEST is sent, and only if it
has not been sent yet. A monitor that was down for three days therefore sends "1 day left" once,
not "7 days", "3 days" and "1 day" in a burst; a member who registers for an event 30 minutes
before it starts gets the 1-hour reminder, not the 24-hour one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def latest_due(
    due_times: Mapping[str, datetime],
    now: datetime,
    sent: Collection[str],
    *,
    not_before: datetime | None = None,
    until: datetime | None = None,
) -> str | None:
    """The kind of the latest reminder due at `now` unless it was sent; else None.

    Reminders due before `not_before` (e.g. the period or registration start) never count: they
    would say "7 days left" when fewer remain. Nothing is due at or after `until`.
    """
    if until is not None and now >= until:
        return None
    due = [
        (at, kind)
        for kind, at in due_times.items()
        if at <= now and (not_before is None or at >= not_before)
    ]
    if not due:
        return None
    _, kind = max(due)
    return None if kind in sent else kind


# --- subscription terms -------------------------------------------------------------------------

#: Days before the period end, as reminder kinds.
TERM_REMINDER_DAYS: tuple[int, ...] = (7, 3, 1, 0)


def term_reminder_kind(days: int) -> str:
    return f"T-{days}"


def term_reminder_times(
    period_end: datetime,
    tz: tzinfo,
    *,
    days: tuple[int, ...] = TERM_REMINDER_DAYS,
    send_at: time = time(10, 0),
) -> dict[str, datetime]:
    """Moments of the T-n reminders: `send_at` local time, n calendar days before the end date.

    The T-0 reminder never comes after the end itself (an end at 00:30 gets it at 00:30).
    """
    _require_aware(period_end, "period_end")
    end_local = period_end.astimezone(tz)
    times = {}
    for n in days:
        local_day = end_local.date() - timedelta(days=n)
        moment = datetime.combine(local_day, send_at, tzinfo=tz)
        times[term_reminder_kind(n)] = min(moment, period_end)
    return times


def term_reminder_due(
    period_start: datetime,
    period_end: datetime,
    now: datetime,
    sent: Collection[str],
    tz: tzinfo,
    *,
    days: tuple[int, ...] = TERM_REMINDER_DAYS,
    send_at: time = time(10, 0),
) -> str | None:
    """The T-n reminder to send now for this period ('T-3'), or None."""
    _require_aware(now, "now")
    times = term_reminder_times(period_end, tz, days=days, send_at=send_at)
    # After the end the subscription is in grace: tsmonitor sends the state change, not a reminder.
    until = period_end + timedelta(seconds=1)
    return latest_due(times, now, sent, not_before=period_start, until=until)


# --- community events ---------------------------------------------------------------------------

EVENT_REMINDER_OFFSETS: Mapping[str, timedelta] = {
    "24h": timedelta(hours=24),
    "1h": timedelta(hours=1),
}


def event_reminder_due(
    starts_at: datetime,
    now: datetime,
    sent: Collection[str],
    *,
    registered_at: datetime | None = None,
    offsets: Mapping[str, timedelta] = EVENT_REMINDER_OFFSETS,
) -> str | None:
    """The event reminder ('24h' or '1h') to send to one registrant now, or None.

    A reminder whose window opened before the member registered is not sent (they just saw the
    event), except that the last window before the start always counts: it is the useful one.
    """
    _require_aware(starts_at, "starts_at")
    _require_aware(now, "now")
    times = {kind: starts_at - offset for kind, offset in offsets.items()}
    kind = latest_due(times, now, sent, until=starts_at)
    if kind is None or registered_at is None:
        return kind
    last_kind = max(times, key=lambda k: times[k])
    if times[kind] < registered_at and kind != last_kind:
        return None
    return kind


# --- monthly survey -----------------------------------------------------------------------------


def month_key(now: datetime, tz: tzinfo) -> str:
    """'2025-03': the survey month of `now` on the local calendar."""
    _require_aware(now, "now")
    local = now.astimezone(tz)
    return f"{local.year:04d}-{local.month:02d}"


@dataclass(frozen=True)
class SurveySchedule:
    #: Day of month (1-28) and local time the survey goes out.
    send_day: int = 1
    send_at: time = time(11, 0)
    #: Non-responders get one reminder this long after the survey was sent.
    remind_after: timedelta = timedelta(days=3)
    #: No reminder once the month is this close to its end (answers count per month).
    reminder_cutoff_day: int = 25

    def __post_init__(self) -> None:
        if not 1 <= self.send_day <= 28:
            raise ValueError("send_day must be between 1 and 28")

    def send_time(self, month: str, tz: tzinfo) -> datetime:
        year, mon = (int(part) for part in month.split("-"))
        return datetime.combine(date(year, mon, self.send_day), self.send_at, tzinfo=tz)

    def survey_due(self, now: datetime, tz: tzinfo, already_sent: bool) -> str | None:
        """The month key to send the survey for now, or None."""
        key = month_key(now, tz)
        if already_sent or now < self.send_time(key, tz):
            return None
        return key

    def reminder_due(
        self,
        sent_at: datetime,
        now: datetime,
        tz: tzinfo,
        *,
        responded: bool,
        reminded: bool,
    ) -> bool:
        """Whether a non-responder gets their single reminder now."""
        _require_aware(sent_at, "sent_at")
        if responded or reminded or now < sent_at + self.remind_after:
            return False
        if month_key(now, tz) != month_key(sent_at, tz):
            return False
        return now.astimezone(tz).day < self.reminder_cutoff_day
