"""Broadcasts: one message from staff to the active members, or to one tariff's.

A broadcast is confirmed once (its form's token is the `broadcasts.idempotence_key`), counted
against the day's allowance (`WEB_BROADCASTS_PER_DAY`, the day in DOMOS_TIMEZONE: the unique
`(local_day, day_slot)` makes the limit hold under concurrent submits on both backends), and its
recipients are fixed in the same transaction. Each recipient then gets an outbox row through
botapi's `enqueue` (the outbox's producer for messages that come from outside the monitors),
keyed `broadcast:<id>:<telegram id>`, so queuing twice, or resuming after a crash, sends
nobody a second copy. notifymonitor delivers them at Telegram's limits, after receipts and
reminders (a bulk priority). Progress is counted from those outbox rows.

Reads go through Django's ORM like the rest of the admin; writes through the runtime's DB layer,
which the enqueue helper needs, opened for the one request that writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from monitors.outbox import BROADCAST_KIND
from runtime.db import Database, Transaction, sync_database
from runtime.errors import DomosError
from services.botapi.send import SendRequest, enqueue
from services.web.domain import models as m

#: Lower sends first: receipts (10) and reminders (60, 100) go before a bulk message, as the
#: monthly survey (200) does.
PRIORITY = 200
#: Telegram's limit on one message; the schema checks it too.
MAX_TEXT = 4096
#: Outbox rows written per transaction: one commit per row cost PostgreSQL 3.7 ms a member
#: (7.4 s for 2,000, near gunicorn's 30 s timeout for a large community); a transaction per
#: chunk keeps SQLite's write lock, which the monitors wait for, short.
QUEUE_CHUNK = 500
#: Outbox statuses a broadcast's rows are still on their way in.
IN_FLIGHT = ("queued", "sending", "failed")
#: How many times a slot taken by a concurrent submit is tried again (PostgreSQL only: SQLite
#: serializes writers).
_SLOT_RETRIES = 5


class BroadcastError(DomosError):
    """A broadcast that cannot be created; the message is shown to staff."""


class DailyLimitReached(BroadcastError):
    def __init__(self, per_day: int) -> None:
        if per_day == 0:
            super().__init__("Рассылки выключены (WEB_BROADCASTS_PER_DAY=0).")
        else:
            super().__init__(f"Сегодня уже отправлено рассылок: {per_day} из {per_day}.")
        self.per_day = per_day


@dataclass(frozen=True)
class Audience:
    """Whom a broadcast is for: every active member, or those of one tariff."""

    tariff: m.Tariff | None = None

    @property
    def kind(self) -> str:
        return "active" if self.tariff is None else "tariff"

    @property
    def label(self) -> str:
        if self.tariff is None:
            return "все активные участники"
        return f"участники тарифа «{self.tariff.title}»"

    def members(self, now: datetime) -> QuerySet[m.Member]:
        """Members entitled now (active, or in grace not yet over: the chat still has them, as
        monthly_anket counts them), the tariff's only if one is chosen."""
        live = m.Subscription.objects.filter(user=OuterRef("pk")).filter(
            Q(status="active") | Q(status="grace", grace_until__gt=now)
        )
        if self.tariff is not None:
            live = live.filter(tariff=self.tariff)
        return m.Member.objects.filter(Exists(live))

    def reach(self, now: datetime) -> tuple[int, int]:
        """(members it will reach, members left out because they blocked the bot)."""
        counts = self.members(now).aggregate(
            reachable=Count("id", filter=Q(is_reachable=True)),
            blocked=Count("id", filter=Q(is_reachable=False)),
        )
        return counts["reachable"], counts["blocked"]

    def recipients(self, now: datetime) -> list[tuple[int, int]]:
        """(user id, telegram id) of every member it reaches, in id order."""
        rows = self.members(now).filter(is_reachable=True).order_by("id")
        return list(rows.values_list("id", "telegram_id"))


def dedupe_key(broadcast_id: int, telegram_id: int) -> str:
    return f"{BROADCAST_KIND}:{broadcast_id}:{telegram_id}"


@contextmanager
def domain_db() -> Iterator[Database]:
    """The runtime's DB layer on the web's own database settings, for one request's writes (a
    pool per request: broadcasts are a few a day, and no pool idles in every gunicorn worker)."""
    with sync_database(settings.DOMOS) as db:
        yield db


def sent_today(local_day: date) -> int:
    return m.Broadcast.objects.filter(local_day=local_day.isoformat()).count()


@dataclass(frozen=True)
class Created:
    id: int
    #: False when the token had been used: the broadcast of the first submit.
    created: bool


def create(
    db: Database,
    *,
    token: str,
    text: str,
    audience: Audience,
    created_by: str,
    now: datetime,
    local_day: date,
    per_day: int,
) -> Created:
    """Record the broadcast and its recipients in one transaction (outbox rows come after, in
    `queue`). The same token again returns the first broadcast and records nothing."""
    recipients = audience.recipients(now)
    for _ in range(_SLOT_RETRIES):
        with db.transaction() as tx:
            existing = tx.fetchval("SELECT id FROM broadcasts WHERE idempotence_key = ?", (token,))
            if existing is not None:
                return Created(int(existing), created=False)
            if not recipients:
                raise BroadcastError("Некому отправлять: рассылка не создана.")
            slot = 1 + int(
                tx.fetchval(
                    "SELECT COALESCE(MAX(day_slot), 0) FROM broadcasts WHERE local_day = ?",
                    (local_day.isoformat(),),
                )
            )
            if slot > per_day:
                raise DailyLimitReached(per_day)
            broadcast_id = tx.fetchval(
                "INSERT INTO broadcasts (idempotence_key, text, audience, tariff_id, local_day,"
                " day_slot, recipients_count, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
                (
                    token,
                    text,
                    audience.kind,
                    audience.tariff.pk if audience.tariff is not None else None,
                    local_day.isoformat(),
                    slot,
                    len(recipients),
                    created_by,
                    now,
                ),
            )
            if broadcast_id is None:
                # A concurrent submit took this token or this slot (it committed while this
                # insert waited on the unique index): look again.
                continue
            _insert_recipients(tx, int(broadcast_id), recipients)
            return Created(int(broadcast_id), created=True)
    raise BroadcastError("Слишком много одновременных рассылок: повторите через минуту.")


def _insert_recipients(
    tx: Transaction, broadcast_id: int, recipients: list[tuple[int, int]]
) -> None:
    tx.executemany(
        "INSERT INTO broadcast_recipients (broadcast_id, user_id, chat_id, outbox_dedupe_key)"
        " VALUES (?, ?, ?, ?)",
        [
            (broadcast_id, user_id, telegram_id, dedupe_key(broadcast_id, telegram_id))
            for user_id, telegram_id in recipients
        ],
    )


def queue(db: Database, broadcast_id: int, *, now: datetime) -> int:
    """Write the outbox row of every recipient that has none yet; returns how many this call
    wrote. Safe to repeat and to run twice at once: the dedupe key admits one row each."""
    broadcast = db.fetchone("SELECT text FROM broadcasts WHERE id = ?", (broadcast_id,))
    if broadcast is None:
        raise BroadcastError(f"Рассылки {broadcast_id} нет.")
    missing = db.fetchall(
        "SELECT r.chat_id, r.outbox_dedupe_key FROM broadcast_recipients r"
        " LEFT JOIN outbox o ON o.dedupe_key = r.outbox_dedupe_key"
        " WHERE r.broadcast_id = ? AND o.id IS NULL ORDER BY r.id",
        (broadcast_id,),
    )
    written = 0
    for start in range(0, len(missing), QUEUE_CHUNK):
        with db.transaction() as tx:
            for row in missing[start : start + QUEUE_CHUNK]:
                request = SendRequest(
                    chat_id=row["chat_id"],
                    text=broadcast["text"],
                    dedupe_key=row["outbox_dedupe_key"],
                    kind=BROADCAST_KIND,
                    priority=PRIORITY,
                )
                _, created = enqueue(tx, request)
                written += created
    db.execute(
        "UPDATE broadcasts SET status = 'queued', queued_at = ?"
        " WHERE id = ? AND status = 'queuing'",
        (now, broadcast_id),
    )
    return written


@dataclass(frozen=True)
class Progress:
    """Where a broadcast's messages are, from their outbox rows."""

    recipients: int
    #: Outbox rows per status (queued, sending, sent, failed, dead).
    by_status: dict[str, int]

    @property
    def in_outbox(self) -> int:
        return sum(self.by_status.values())

    @property
    def not_queued(self) -> int:
        """Recipients whose outbox row is not written yet (the queuing was interrupted)."""
        return max(0, self.recipients - self.in_outbox)

    @property
    def waiting(self) -> int:
        return sum(self.by_status.get(status, 0) for status in IN_FLIGHT)

    @property
    def sent(self) -> int:
        return self.by_status.get("sent", 0)

    @property
    def dead(self) -> int:
        return self.by_status.get("dead", 0)

    @property
    def done(self) -> bool:
        return self.not_queued == 0 and self.waiting == 0


def progress(broadcast: m.Broadcast) -> Progress:
    keys = m.BroadcastRecipient.objects.filter(broadcast=broadcast).values("outbox_dedupe_key")
    rows: Any = (
        m.OutboxMessage.objects.filter(dedupe_key__in=keys)
        .order_by()
        .values("status")
        .annotate(n=Count("id"))
    )
    by_status = {status: 0 for status, _ in m.OUTBOX_STATUSES}
    for row in rows:
        by_status[row["status"]] = row["n"]
    return Progress(recipients=broadcast.recipients_count, by_status=by_status)
