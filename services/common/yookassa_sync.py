"""A synchronous YooKassa client for the WSGI services (botapi), the twin of the async client in
monitors._clients: same `(status, body)` answers, and `(None, None)` when the outcome is unknown
(network failure, timeout), which callers must treat as "try again later".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from runtime.config import Settings

Answer = tuple[int | None, dict[str, Any] | None]
DEFAULT_TIMEOUT_S = 5.0


class SyncYooKassaClient:
    def __init__(self, settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        shop_id, secret = settings.yookassa.require_credentials()
        self._http = httpx.Client(
            base_url=f"{settings.yookassa.api_url}/v3",
            auth=(shop_id, secret),
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._http.close()

    def get_payment(self, payment_id: str) -> Answer:
        return self._get(f"/payments/{quote(payment_id, safe='')}")

    def get_refund(self, refund_id: str) -> Answer:
        return self._get(f"/refunds/{quote(refund_id, safe='')}")

    def _get(self, path: str) -> Answer:
        try:
            response = self._http.get(path)
        except httpx.HTTPError:
            return None, None
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, body if isinstance(body, dict) else None
