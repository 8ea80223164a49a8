"""The monitor_heartbeats row of a monitor: who ticked last, when, how, and the items so far.

The health file is per container; this row is what staff see in the admin, across containers.
It is best effort: a tick never fails because its heartbeat could not be written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from runtime.errors import DatabaseError, QueryError

UPSERT = """
INSERT INTO monitor_heartbeats (monitor, instance, last_tick_at, last_success_at, last_outcome,
                                last_error, items_processed_total, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (monitor) DO UPDATE SET
    instance = excluded.instance,
    last_tick_at = excluded.last_tick_at,
    last_success_at = COALESCE(excluded.last_success_at, monitor_heartbeats.last_success_at),
    last_outcome = excluded.last_outcome,
    last_error = excluded.last_error,
    items_processed_total = monitor_heartbeats.items_processed_total
                            + excluded.items_processed_total,
    updated_at = excluded.updated_at
"""

#: A monitor ticking every second writes its row at most this often (SQLite has one writer);
#: a change of outcome is written at once.
MIN_INTERVAL_S = 15.0


class Heartbeat:
    def __init__(self, db: Any, monitor: str, instance: str) -> None:
        self._db = db
        self._monitor = monitor
        self._instance = instance
        self._log = structlog.get_logger("runtime.monitor").bind(monitor=monitor)
        self._enabled = True
        self._written_at: float | None = None
        self._written_outcome: str | None = None
        #: Items of the ticks since the last write, added to the row's total by the next one.
        self._items = 0
        self._last_success_at: datetime | None = None

    async def record(
        self, *, outcome: str, items: int, error: str | None, at: datetime, monotonic: float
    ) -> None:
        self._items += items
        if outcome == "succeeded":
            self._last_success_at = at
        if not self._enabled:
            return
        due = self._written_at is None or monotonic - self._written_at >= MIN_INTERVAL_S
        if not due and outcome == self._written_outcome:
            return
        params = (
            self._monitor,
            self._instance,
            at,
            self._last_success_at,
            outcome,
            error,
            self._items,
            at,
        )
        try:
            await self._db.execute(UPSERT, params)
        except QueryError as exc:
            # No such table: a database `domos db upgrade` has not reached (tests' own monitors).
            self._enabled = False
            self._log.warning("heartbeat_disabled", error=str(exc))
            return
        except DatabaseError as exc:
            self._log.warning("heartbeat_not_written", error=str(exc))
            return
        self._written_at = monotonic
        self._written_outcome = outcome
        self._items = 0
        self._last_success_at = None
