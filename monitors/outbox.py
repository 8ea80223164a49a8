"""The outbox from the producers' and the operator's side.

`enqueue`: one outbox row per dedupe key, inside the caller's transaction. `backlog`: what is
waiting, for the backlog gauges notifymonitor refreshes every tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitors import metrics
from runtime.db import AsyncDatabase, AsyncTransaction
from runtime.retry import RetrySchedule

#: Kind of the outbox rows of a staff broadcast (written by the admin through botapi's enqueue).
#: notifymonitor sends one only while its member is still entitled (payments.entitlement).
BROADCAST_KIND = "broadcast"

#: Outbox delivery after network errors and 5xx: fast at first, at most 10 min apart, 8 tries.
OUTBOX_DELIVERY = RetrySchedule(base_s=5.0, cap_s=600.0, max_attempts=8, jitter_fraction=0.2)

#: Statuses the backlog counts; `sent` rows are history, and counting them would scan the table.
BACKLOG_STATUSES = ("queued", "failed", "sending", "dead")

# One arm per partial index (outbox_due_idx, outbox_sending_lease_idx, outbox_dead_idx): a
# single `status IN (...)` would scan every sent row on PostgreSQL.
_BACKLOG_SQL = (
    "SELECT status, COUNT(*) AS n FROM outbox WHERE status IN ('queued', 'failed') GROUP BY status"
    " UNION ALL SELECT status, COUNT(*) FROM outbox WHERE status = 'sending' GROUP BY status"
    " UNION ALL SELECT status, COUNT(*) FROM outbox WHERE status = 'dead' GROUP BY status"
)
# The column itself (not MIN()) so SQLite decodes it as a timestamp; outbox_due_idx order.
_OLDEST_DUE_SQL = (
    "SELECT next_attempt_at FROM outbox WHERE status IN ('queued', 'failed')"
    " AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT 1"
)


async def enqueue(
    tx: AsyncTransaction,
    *,
    dedupe_key: str,
    chat_id: int,
    user_id: int | None,
    kind: str,
    text: str,
    priority: int = 100,
    parse_mode: str | None = None,
    reply_markup: dict[str, Any] | None = None,
) -> bool:
    """Insert the message unless its dedupe key exists; True when this call inserted it."""
    inserted = await tx.execute(
        "INSERT INTO outbox (dedupe_key, chat_id, user_id, kind, text, priority, parse_mode,"
        " reply_markup) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
        (dedupe_key, chat_id, user_id, kind, text, priority, parse_mode, reply_markup),
    )
    return inserted == 1


@dataclass(frozen=True)
class Backlog:
    #: Rows per status in BACKLOG_STATUSES (0 when none).
    counts: dict[str, int]
    #: How long the oldest due row (queued or failed, next attempt reached) has been waiting
    #: past its due time; 0 when nothing is due.
    oldest_due_age_s: float


async def backlog(db: AsyncDatabase, now: datetime) -> Backlog:
    counts = dict.fromkeys(BACKLOG_STATUSES, 0)
    for row in await db.fetchall(_BACKLOG_SQL):
        counts[row["status"]] = int(row["n"])
    oldest = await db.fetchval(_OLDEST_DUE_SQL, (now,))
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return Backlog(counts=counts, oldest_due_age_s=age)


async def refresh_backlog_gauges(db: AsyncDatabase, now: datetime) -> Backlog:
    """Read the backlog and set domos_outbox_backlog and domos_outbox_oldest_due_age_seconds."""
    found = await backlog(db, now)
    for status, count in found.counts.items():
        metrics.OUTBOX_BACKLOG.labels(status=status).set(count)
    metrics.OUTBOX_OLDEST_DUE_AGE.set(found.oldest_due_age_s)
    return found
