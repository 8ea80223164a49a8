"""The sandbox clock: wall time that tests can freeze, set and advance.

Every timestamp the sandbox produces (message dates, created_at, flood buckets, ban expiry,
idempotence retention) comes from here, so a test can move time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime


class Clock:
    def __init__(self, source: Callable[[], float] = time.time) -> None:
        self._source = source
        self._offset_s = 0.0
        self._frozen_at: float | None = None

    def now(self) -> float:
        base = self._frozen_at if self._frozen_at is not None else self._source()
        return base + self._offset_s

    def now_int(self) -> int:
        return int(self.now())

    def iso_now(self) -> str:
        return iso(self.now())

    def advance(self, seconds: float) -> None:
        self._offset_s += seconds

    def set(self, timestamp: float) -> None:
        """Jump to `timestamp`; keeps running from there unless frozen."""
        base = self._frozen_at if self._frozen_at is not None else self._source()
        self._offset_s = timestamp - base

    def freeze(self) -> None:
        if self._frozen_at is None:
            self._frozen_at = self._source()

    def unfreeze(self) -> None:
        if self._frozen_at is not None:
            # Keep the current reading continuous when time starts running again.
            now = self.now()
            self._frozen_at = None
            self._offset_s = now - self._source()

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def reset(self) -> None:
        self._offset_s = 0.0
        self._frozen_at = None


def iso(timestamp: float) -> str:
    """YooKassa's timestamp format: UTC with milliseconds, `2018-07-18T10:51:18.139Z`."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
