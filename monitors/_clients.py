"""Thin HTTP clients for the Bot API and the YooKassa API (aiohttp), returning raw answers.

They do not interpret answers: the pure classifiers in monitors.decisions do. A network failure
or timeout is returned as `(None, None)`, which the classifiers read as "outcome unknown".
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from runtime.config import Settings

Answer = tuple[int | None, dict[str, Any] | None]
DEFAULT_TIMEOUT_S = 15.0


async def _read_json(response: aiohttp.ClientResponse) -> dict[str, Any] | None:
    try:
        body = await response.json(content_type=None)
    except (json.JSONDecodeError, aiohttp.ContentTypeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


class TelegramClient:
    def __init__(self, settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._base = f"{settings.telegram.api_url}/bot{settings.telegram.require_token()}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=64)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, params: dict[str, Any]) -> Answer:
        assert self._session is not None, "TelegramClient.open() first"
        try:
            async with self._session.post(f"{self._base}/{method}", json=params) as response:
                return response.status, await _read_json(response)
        except (TimeoutError, aiohttp.ClientError):
            return None, None


class YooKassaClient:
    def __init__(self, settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        shop_id, secret = settings.yookassa.require_credentials()
        self._base = f"{settings.yookassa.api_url}/v3"
        token = base64.b64encode(f"{shop_id}:{secret}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def create_payment(self, body: dict[str, Any], idempotence_key: str) -> Answer:
        assert self._session is not None, "YooKassaClient.open() first"
        headers = {"Idempotence-Key": idempotence_key}
        try:
            async with self._session.post(
                f"{self._base}/payments", json=body, headers=headers
            ) as response:
                return response.status, await _read_json(response)
        except (TimeoutError, aiohttp.ClientError):
            return None, None

    async def get_payment(self, payment_id: str) -> Answer:
        assert self._session is not None, "YooKassaClient.open() first"
        try:
            async with self._session.get(f"{self._base}/payments/{payment_id}") as response:
                return response.status, await _read_json(response)
        except (TimeoutError, aiohttp.ClientError):
            return None, None
