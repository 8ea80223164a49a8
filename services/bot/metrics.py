"""Bot metrics and the middleware that records them (and tracks handlers in flight for a
graceful stop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update
from prometheus_client import Counter, Gauge, Histogram

from runtime.metrics import start_at_zero

UPDATES = Counter("domos_bot_updates_total", "Updates received by the bot, by type.", ["type"])
HANDLER_ERRORS = Counter(
    "domos_bot_handler_errors_total", "Updates whose handler raised, by update type.", ["type"]
)
UPDATE_DURATION = Histogram(
    "domos_bot_update_duration_seconds",
    "Time to handle one update, by type.",
    ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PAYMENTS_REQUESTED = Counter(
    "domos_bot_payments_requested_total",
    "Payment links requested through /subscribe, by outcome.",
    ["outcome"],
)
JOIN_REQUESTS = Counter(
    "domos_bot_join_requests_total", "Chat join requests decided, by decision.", ["decision"]
)
STRANGERS = Counter(
    "domos_bot_strangers_total",
    "People without a subscription entering a paid chat (services/bot/entry.py), by outcome:"
    " removed; not_removed (Telegram refused: still in); unchecked (who let them in could not"
    " be asked: left in).",
    ["outcome"],
)
STRANGER_OUTCOMES = ("removed", "not_removed", "unchecked")
UNDECODABLE_UPDATES = Counter(
    "domos_bot_updates_undecodable_total",
    "Updates from Telegram this aiogram cannot read: logged and skipped"
    " (services/bot/undecodable_updates.py).",
)
UPDATES_DEFERRED = Counter(
    "domos_bot_updates_deferred_total",
    "Updates put aside because the database was unavailable (or behind such an update of the"
    " same chat), to be handled again (services/bot/redelivery.py), by update type.",
    ["type"],
)
UPDATES_REPLAYED = Counter(
    "domos_bot_updates_replayed_total",
    "Deferred updates handled again once the database answered, by update type.",
    ["type"],
)
UPDATES_GIVEN_UP = Counter(
    "domos_bot_updates_given_up_total",
    "Deferred updates never handled, by reason: too_old (waited past a day), too_many (the"
    " waiting list was full), unreadable (a spool line that could not be read).",
    ["reason"],
)
GIVEN_UP_REASONS = ("too_old", "too_many", "unreadable")
UPDATES_WAITING = Gauge(
    "domos_bot_updates_waiting",
    "Deferred updates waiting to be handled again (services/bot/redelivery.py).",
)
#: The workflow-data key under which services/bot/redelivery.py feeds an update again.
REPLAY_KEY = "redelivery"
# Rare, and alerted on from the first: every series starts at 0.
start_at_zero(STRANGERS, "outcome", STRANGER_OUTCOMES)
start_at_zero(UPDATES_GIVEN_UP, "reason", GIVEN_UP_REASONS)


class InFlight:
    """Counts handlers running, so a stop can wait for them before closing the database."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def count(self) -> int:
        return self._count

    def enter(self) -> None:
        self._count += 1
        self._idle.clear()

    def leave(self) -> None:
        self._count -= 1
        if self._count == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


class UpdateMetricsMiddleware(BaseMiddleware):
    """Outer middleware of `dp.update`: counts every update and every handler error."""

    def __init__(self, in_flight: InFlight) -> None:
        self.in_flight = in_flight

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        kind = event.event_type if isinstance(event, Update) else type(event).__name__
        if REPLAY_KEY not in data:  # a replay (services/bot/redelivery.py) was counted once
            UPDATES.labels(type=kind).inc()
        started = time.perf_counter()
        self.in_flight.enter()
        try:
            return await handler(event, data)
        except Exception:
            HANDLER_ERRORS.labels(type=kind).inc()
            raise
        finally:
            self.in_flight.leave()
            UPDATE_DURATION.labels(type=kind).observe(time.perf_counter() - started)
