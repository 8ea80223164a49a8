"""Time as the runner sees it; tests swap in a fake that advances instantly."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: schedules and durations."""

    def time(self) -> float:
        """Unix time: timestamps that other processes read (health file, metrics)."""

    def now(self) -> datetime:
        """The current time as an aware UTC datetime, for monitors' business logic."""

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        """Wait until `event` is set or `timeout_s` passed; True when the event is set."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        if event.is_set() or timeout_s <= 0:
            return event.is_set()
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return event.is_set()
        return True
