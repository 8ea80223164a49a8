"""Idempotence-Key handling: the same key and body give the same response for the retention time.

A key reused with another request (method, path or body) is refused with YooKassa's
"Idempotence key duplicated". 500s are never stored: YooKassa tells clients to retry those with
the same key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from services.sandbox.yookassa.errors import YooKassaApiError, invalid

MAX_KEY_LENGTH = 64


@dataclass
class StoredResponse:
    fingerprint: str
    status: int
    body: dict[str, Any]
    stored_at: float


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise invalid("Idempotence key is empty", "Idempotence-Key")
    if len(key) > MAX_KEY_LENGTH:
        raise invalid("Idempotence key is too long", "Idempotence-Key")
    return key


class IdempotenceStore:
    def __init__(self, retention_s: float) -> None:
        self.retention_s = retention_s
        self._responses: dict[str, StoredResponse] = {}

    def lookup(self, key: str, print_: str, now: float) -> StoredResponse | None:
        stored = self._responses.get(key)
        if stored is None:
            return None
        if now - stored.stored_at > self.retention_s:
            del self._responses[key]
            return None
        if stored.fingerprint != print_:
            raise YooKassaApiError(
                "invalid_request", "Idempotence key duplicated", "Idempotence-Key"
            )
        return stored

    def remember(
        self, key: str, print_: str, status: int, body: dict[str, Any], now: float
    ) -> None:
        if status >= 500:
            return
        self._responses[key] = StoredResponse(print_, status, body, now)

    def reset(self) -> None:
        self._responses.clear()
