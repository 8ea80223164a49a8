"""A thin HTTP client for the Telegram Bot API (aiohttp), returning raw answers.

It does not interpret answers: the pure classifiers in monitors.decisions do. A network failure
or timeout is returned as `(None, None)`, which the classifiers read as "outcome unknown".
(The YooKassa client is payments.client.)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
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


@dataclass(frozen=True)
class Download:
    #: HTTP status, None when no answer arrived.
    status: int | None
    size: int = 0
    sha256: str | None = None
    #: The body was larger than allowed; nothing was kept.
    too_large: bool = False


class TelegramClient:
    def __init__(self, settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        token = settings.telegram.require_token()
        self._base = f"{settings.telegram.api_url}/bot{token}"
        self._file_base = f"{settings.telegram.api_url}/file/bot{token}"
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

    async def download(self, file_path: str, dest: Path, *, max_bytes: int) -> Download:
        """Stream a file (after getFile) into `dest` atomically, never past `max_bytes`."""
        assert self._session is not None, "TelegramClient.open() first"
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        size = 0
        try:
            async with self._session.get(f"{self._file_base}/{file_path}") as response:
                if response.status != 200:
                    return Download(response.status)
                with partial.open("wb") as out:
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        size += len(chunk)
                        if size > max_bytes:
                            break
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
        except (TimeoutError, aiohttp.ClientError):
            partial.unlink(missing_ok=True)
            return Download(None)
        if size > max_bytes:
            partial.unlink(missing_ok=True)
            return Download(200, size, too_large=True)
        partial.replace(dest)
        return Download(200, size, digest.hexdigest())
