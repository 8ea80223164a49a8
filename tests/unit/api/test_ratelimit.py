"""The rate limits' counting, and the memory storage's sweep throttled to once a second."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse

from services.api.ratelimit import RateLimits, SweptMemoryStorage, TooManyRequests


async def test_a_budget_refuses_with_retry_after_and_keys_are_apart() -> None:
    limits = RateLimits("memory://", parse("2/minute"), parse("3/minute"))
    await limits.hit_member(1)
    await limits.hit_member(1)
    with pytest.raises(TooManyRequests) as refused:
        await limits.hit_member(1)
    assert refused.value.status == 429
    assert refused.value.headers is not None
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    await limits.hit_member(2)  # another member's budget is untouched
    for _ in range(3):
        await limits.hit_source("198.51.100.1")
    with pytest.raises(TooManyRequests):
        await limits.hit_source("198.51.100.1")


async def test_the_sweep_of_expired_counters_runs_at_most_once_a_second() -> None:
    storage = SweptMemoryStorage()
    for i in range(200):
        await storage.incr(f"key-{i}", expiry=60)
    await asyncio.sleep(0)
    # As shipped, limits starts a sweep task whenever the last one is done: ~one per hit here.
    first = storage.timer
    assert first is not None
    for i in range(200):
        await storage.incr(f"key-{i}", expiry=60)
        await asyncio.sleep(0)
    assert storage.timer is first
    assert await storage.get("key-0") == 2
