"""Time as the runner sees it; tests swap in a fake that advances instantly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from runtime.config import Env

#: Seconds added to the business time (`Clock.now`) of `domos monitor`: lets tests and demos run
#: a subscription term through in seconds. Schedules, durations and health stamps stay real.
CLOCK_OFFSET_VARIABLE = "DOMOS_CLOCK_OFFSET_S"


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


class OffsetClock(SystemClock):
    """The system clock with `now()` moved by a fixed offset (see CLOCK_OFFSET_VARIABLE)."""

    def __init__(self, offset_s: float) -> None:
        self.offset = timedelta(seconds=offset_s)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def clock_from_env(environ: Mapping[str, str]) -> Clock:
    """SystemClock, or an OffsetClock when DOMOS_CLOCK_OFFSET_S is set to a non-zero number."""
    offset_s = Env(environ).number(CLOCK_OFFSET_VARIABLE, 0.0, minimum=float("-inf"))
    return OffsetClock(offset_s) if offset_s else SystemClock()
