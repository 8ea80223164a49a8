"""Outgoing webhook calls for both APIs: one attempt at a time, every attempt recorded.

Telegram delivers a bot's updates in order (its worker lives in `telegram.webhooks`); YooKassa
notifications are independent, each retried on the configured schedule until acknowledged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from services.sandbox.clock import Clock

log = structlog.get_logger("sandbox.webhooks")


@dataclass
class Delivery:
    id: int
    api: str
    url: str
    attempt: int
    at: float
    status: int | None
    error: str | None
    payload: Any

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "api": self.api,
            "url": self.url,
            "attempt": self.attempt,
            "at": self.at,
            "status": self.status,
            "ok": self.ok,
            "error": self.error,
            "payload": self.payload,
        }


def retry_delay_s(intervals_s: tuple[float, ...], attempt: int) -> float:
    """Pause after failed attempt number `attempt` (1-based); the last interval repeats."""
    if not intervals_s:
        return 0.0
    return intervals_s[min(attempt, len(intervals_s)) - 1]


class WebhookSender:
    def __init__(
        self,
        clock: Clock,
        *,
        timeout_s: float,
        retry_intervals_s: tuple[float, ...],
        max_attempts: int,
    ) -> None:
        self.clock = clock
        self.timeout_s = timeout_s
        self.retry_intervals_s = retry_intervals_s
        self.max_attempts = max_attempts
        self.deliveries: list[Delivery] = []
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_id = 1

    async def attempt(
        self, api: str, url: str, payload: Any, headers: Mapping[str, str], attempt: int
    ) -> bool:
        """POST once; True when the receiver answered 2xx."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                url,
                data=json.dumps(payload, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json", **headers},
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery = Delivery(
            id=self._next_id,
            api=api,
            url=url,
            attempt=attempt,
            at=self.clock.now(),
            status=status,
            error=error,
            payload=payload,
        )
        self._next_id += 1
        self.deliveries.append(delivery)
        log.info("webhook_attempted", api=api, url=url, attempt=attempt, status=status, error=error)
        return delivery.ok

    def send_with_retries(
        self, api: str, url: str, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        """Deliver in the background, retrying on the schedule until 2xx or max_attempts."""
        self.spawn(self._retry_loop(api, url, payload, dict(headers or {})))

    async def _retry_loop(self, api: str, url: str, payload: Any, headers: dict[str, str]) -> None:
        for attempt in range(1, self.max_attempts + 1):
            if await self.attempt(api, url, payload, headers, attempt):
                return
            if attempt < self.max_attempts:
                await asyncio.sleep(retry_delay_s(self.retry_intervals_s, attempt))
        log.warning("webhook_abandoned", api=api, url=url, attempts=self.max_attempts)

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def list(self, api: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries if api is None or d.api == api]

    async def cancel_pending(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def reset_log(self) -> None:
        self.deliveries.clear()
        self._next_id = 1

    async def close(self) -> None:
        await self.cancel_pending()
        if self._session is not None:
            await self._session.close()
            self._session = None
