"""Telegram's flood limits as token buckets: O(1) per message, no history kept."""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.sandbox.config import FloodLimits


@dataclass
class TokenBucket:
    rate_per_s: float
    capacity: float
    tokens: float
    updated_at: float

    def _refill(self, now: float) -> None:
        if now > self.updated_at:
            self.tokens = min(
                self.capacity, self.tokens + (now - self.updated_at) * self.rate_per_s
            )
        self.updated_at = now

    def wait_s(self, now: float) -> float:
        """0 when a token is available now, else seconds until one is."""
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s

    def take(self) -> None:
        self.tokens -= 1.0


class FloodControl:
    """Per bot, per chat and per group buckets; a message must fit in all that apply."""

    def __init__(self, limits: FloodLimits) -> None:
        self.limits = limits
        self._buckets: dict[tuple[str, object], TokenBucket] = {}

    def configure(self, limits: FloodLimits) -> None:
        self.limits = limits
        self._buckets.clear()

    def _bucket(self, key: tuple[str, object], rate: float, burst: int, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            capacity = float(max(burst, 1))
            bucket = TokenBucket(rate, capacity, capacity, now)
            self._buckets[key] = bucket
        return bucket

    def check(self, bot_id: int, chat_id: int, is_group: bool, now: float) -> int | None:
        """Consume one message; None if allowed, else retry_after in whole seconds (>= 1)."""
        limits = self.limits
        if not limits.enabled:
            return None
        buckets: list[TokenBucket] = []
        if limits.per_bot_per_s > 0:
            buckets.append(
                self._bucket(("bot", bot_id), limits.per_bot_per_s, limits.per_bot_burst, now)
            )
        if limits.per_chat_per_s > 0:
            buckets.append(
                self._bucket(
                    ("chat", (bot_id, chat_id)), limits.per_chat_per_s, limits.per_chat_burst, now
                )
            )
        if is_group and limits.per_group_per_min > 0:
            buckets.append(
                self._bucket(
                    ("group", (bot_id, chat_id)),
                    limits.per_group_per_min / 60.0,
                    limits.per_group_burst,
                    now,
                )
            )
        wait = max((bucket.wait_s(now) for bucket in buckets), default=0.0)
        if wait > 0:
            return max(1, math.ceil(wait))
        for bucket in buckets:
            bucket.take()
        return None

    def reset(self) -> None:
        self._buckets.clear()
