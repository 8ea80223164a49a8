"""Rate limits of the public API, counted by the `limits` library.

Two budgets (ApiSettings): per member (API_RATE_LIMIT_MEMBER, keyed by the Telegram id acted
for) and per source address (API_RATE_LIMIT_SOURCE, every caller without a partner key, failed
proofs included, so guessing costs the guesser). Fixed windows: one counter increment per
request, the cheapest strategy; a client may burst up to twice a budget across a window's edge,
which these budgets allow for.

The counters live in memory by default: each API process counts on its own, so with N replicas a
client gets up to N times the budget. API_RATE_LIMIT_STORAGE points `limits` at a shared store
(e.g. redis://127.0.0.1:6379, which needs the `coredis` package installed) to count them together.

In memory, `limits`' asyncio storage is used with one change: it sweeps expired counters at most
once a second. As shipped it starts a task that walks every live counter after nearly every hit,
O(members) per request: with 2000 members under load that walk was more than the rest of the
request (bench/api). The sweep only reclaims memory: a counter past its window is dropped when it
is next read anyway, so counting is unchanged. (The synchronous storage sweeps from a timer thread
instead, and starting that thread every 10 ms stalled the event loop on the GIL handover.)
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import ConfigurationError
from limits.storage import storage_from_string

from runtime.errors import ConfigError
from services.api.errors import ApiError

#: How often the memory storage reclaims expired counters.
SWEEP_INTERVAL_S = 1.0


class SweptMemoryStorage(MemoryStorage):
    """limits' asyncio MemoryStorage, its sweep of expired counters at most once a second."""

    _next_sweep = 0.0

    async def _MemoryStorage__schedule_expiry(self) -> None:
        # The parent's private hook (called from incr and acquire_entry), by its mangled name.
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_S
        await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


class TooManyRequests(ApiError):
    def __init__(self, what: str, retry_after_s: int) -> None:
        super().__init__(
            429,
            "rate_limited",
            f"too many requests {what}; retry in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )


class RateLimits:
    def __init__(self, storage_uri: str, member: RateLimitItem, source: RateLimitItem) -> None:
        uri = storage_uri.removeprefix("async+")
        try:
            storage = (
                SweptMemoryStorage()
                if uri.startswith("memory://")
                else storage_from_string(f"async+{uri}")
            )
        except ConfigurationError as exc:
            raise ConfigError("API_RATE_LIMIT_STORAGE", str(exc)) from None
        self._limiter = FixedWindowRateLimiter(storage)
        self.member = member
        self.source = source

    async def hit_member(self, telegram_id: int) -> None:
        await self._hit(self.member, "member", str(telegram_id), "for this member")

    async def hit_source(self, address: str) -> None:
        await self._hit(self.source, "source", address, "from this address")

    async def _hit(self, item: RateLimitItem, kind: str, key: str, what: str) -> None:
        if await self._limiter.hit(item, kind, key):
            return
        stats = await self._limiter.get_window_stats(item, kind, key)
        raise TooManyRequests(what, max(1, math.ceil(stats.reset_time - time.time())))
