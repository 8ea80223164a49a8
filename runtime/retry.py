"""Capped exponential retry schedules with attempt limits.

Used for soft payment declines and payment polling (payments.schedules), outbox delivery
failures (monitors.outbox) and the monitors' Telegram retries. The schedule is pure:
it never reads the clock; callers pass `now`. Jitter takes a number in [0, 1) from the caller so
tests stay deterministic while replicas still spread their retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetrySchedule:
    """Delay before retry number `n` is `min(cap_s, base_s * factor ** (n - 1))`.

    `max_attempts` counts every attempt including the first; after that many failures the caller
    gives up (dead letter, stop auto-renewal, ...).
    """

    base_s: float
    cap_s: float
    max_attempts: int
    factor: float = 2.0
    #: Fraction of the delay that jitter may remove (0.0 = none, 0.2 = up to 20 % earlier).
    jitter_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.factor < 1:
            raise ValueError("factor must be >= 1")
        if not 0 <= self.jitter_fraction < 1:
            raise ValueError("jitter_fraction must be in [0, 1)")

    def delay_s(self, failed_attempts: int, jitter: float = 0.0) -> float:
        """Seconds to wait after `failed_attempts` failures (>= 1) before the next attempt."""
        if failed_attempts < 1:
            raise ValueError("failed_attempts must be >= 1")
        # Exponent capped so huge attempt counts cannot overflow a float.
        exponent = min(failed_attempts - 1, 64)
        delay = min(self.cap_s, self.base_s * self.factor**exponent)
        return delay * (1.0 - self.jitter_fraction * jitter)

    def exhausted(self, failed_attempts: int) -> bool:
        return failed_attempts >= self.max_attempts

    def next_attempt_at(
        self, now: datetime, failed_attempts: int, jitter: float = 0.0
    ) -> datetime | None:
        """When to try again after `failed_attempts` failures, or None when attempts are used up."""
        if self.exhausted(failed_attempts):
            return None
        return now + timedelta(seconds=self.delay_s(failed_attempts, jitter))
