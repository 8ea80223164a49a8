"""The YooKassa API client (httpx), async for the API, the bot and the monitors, sync for the WSGI
botapi. Both variants build their requests and read their answers here, once.

It does not interpret answers: payments.decisions does. An answer is `(status, body)`, the body
None unless it is a JSON object; a network failure or timeout is `(None, None)`, which callers
read as "outcome unknown" (repeat the same Idempotence-Key, or fetch the payment later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from runtime.config import Settings

Answer = tuple[int | None, dict[str, Any] | None]
#: The monitors' and the bot's calls; the API and botapi pass their own.
DEFAULT_TIMEOUT_S = 15.0
UNKNOWN: Answer = (None, None)
#: YooKassa's largest page of a list.
PAGE_SIZE = 100
#: A list holding more pages than this is not read to its end.
MAX_PAGES = 50


@dataclass(frozen=True)
class Call:
    """One request to the API, relative to its `/v3` base."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The query string (GET /v3/payments' filters and cursor).
    params: dict[str, str] | None = None


def create_payment_call(body: dict[str, Any], idempotence_key: str) -> Call:
    return Call("POST", "/payments", body, {"Idempotence-Key": idempotence_key})


def get_payment_call(payment_id: str) -> Call:
    # The id comes from a webhook body or an answer: quoted, it can only name a payment.
    return Call("GET", f"/payments/{quote(payment_id, safe='')}")


def list_payments_call(params: Mapping[str, str]) -> Call:
    """GET /v3/payments: `created_at.gte/gt/lte/lt`, `status`, `payment_method`, `limit`
    (1-100) and `cursor` (the previous page's `next_cursor`); the answer is
    `{"type": "list", "items": [...], "next_cursor": ...}`, newest first."""
    return Call("GET", "/payments", params=dict(params))


def get_refund_call(refund_id: str) -> Call:
    return Call("GET", f"/refunds/{quote(refund_id, safe='')}")


def list_refunds_call(params: Mapping[str, str]) -> Call:
    """GET /v3/refunds: `created_at.gte/gt/lte/lt`, `status`, `payment_id`, `limit` and
    `cursor`, answered as GET /v3/payments is (newest first, `next_cursor`)."""
    return Call("GET", "/refunds", params=dict(params))


@dataclass(frozen=True)
class PagesRead:
    """What reading a list (GET /v3/payments, /v3/refunds) gave: every item of every page,
    `complete` False when a page failed or the pages did not end (`error` says why)."""

    complete: bool
    items: list[dict[str, Any]]
    pages: int
    error: str | None = None


async def read_every_page(
    fetch: Callable[[Mapping[str, str]], Awaitable[Answer]], params: Mapping[str, str], what: str
) -> PagesRead:
    """Follow `next_cursor` from `params` (its filters and `limit`) to the last page."""
    items: list[dict[str, Any]] = []
    query = dict(params)
    for page in range(1, MAX_PAGES + 1):
        status, body = await fetch(query)
        listed = body.get("items") if body is not None else None
        if status != 200 or body is None or not isinstance(listed, list):
            return PagesRead(False, items, page, f"{what}: HTTP {status}")
        items += [item for item in listed if isinstance(item, dict)]
        cursor = body.get("next_cursor")
        if not isinstance(cursor, str) or not cursor:
            return PagesRead(True, items, page)
        query = {**query, "cursor": cursor}
    return PagesRead(False, items, MAX_PAGES, f"{what}: more than {MAX_PAGES} pages")


def read_answer(response: httpx.Response) -> Answer:
    try:
        body = response.json()
    except ValueError:  # not JSON, empty, or not UTF-8
        body = None
    return response.status_code, body if isinstance(body, dict) else None


def _client_options(settings: Settings, timeout_s: float) -> dict[str, Any]:
    shop_id, secret = settings.yookassa.require_credentials()
    return {
        "base_url": f"{settings.yookassa.api_url}/v3",
        "auth": httpx.BasicAuth(shop_id, secret),
        "timeout": timeout_s,
    }


class YooKassaClient:
    """Async; `open()` before the first call, `close()` at the end."""

    def __init__(self, settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._options = _client_options(settings, timeout_s)
        self._timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None

    async def open(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(**self._options)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def create_payment(self, body: dict[str, Any], idempotence_key: str) -> Answer:
        return await self._send(create_payment_call(body, idempotence_key))

    async def get_payment(self, payment_id: str) -> Answer:
        return await self._send(get_payment_call(payment_id))

    async def list_payments(self, params: Mapping[str, str]) -> Answer:
        return await self._send(list_payments_call(params))

    async def get_refund(self, refund_id: str) -> Answer:
        return await self._send(get_refund_call(refund_id))

    async def list_refunds(self, params: Mapping[str, str]) -> Answer:
        return await self._send(list_refunds_call(params))

    async def _send(self, call: Call) -> Answer:
        assert self._http is not None, "YooKassaClient.open() first"
        try:
            # httpx's timeout is per phase; the deadline bounds the whole call, as it always did.
            async with asyncio.timeout(self._timeout_s):
                response = await self._http.request(
                    call.method, call.path, json=call.json, headers=call.headers, params=call.params
                )
        except (TimeoutError, httpx.HTTPError):
            return UNKNOWN
        return read_answer(response)


class SyncYooKassaClient:
    """Sync, for the WSGI workers; usable at once, `close()` at the end."""

    def __init__(self, settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._http = httpx.Client(**_client_options(settings, timeout_s))

    def close(self) -> None:
        self._http.close()

    def create_payment(self, body: dict[str, Any], idempotence_key: str) -> Answer:
        return self._send(create_payment_call(body, idempotence_key))

    def get_payment(self, payment_id: str) -> Answer:
        return self._send(get_payment_call(payment_id))

    def list_payments(self, params: Mapping[str, str]) -> Answer:
        return self._send(list_payments_call(params))

    def get_refund(self, refund_id: str) -> Answer:
        return self._send(get_refund_call(refund_id))

    def _send(self, call: Call) -> Answer:
        try:
            response = self._http.request(
                call.method, call.path, json=call.json, headers=call.headers, params=call.params
            )
        except httpx.HTTPError:
            return UNKNOWN
        return read_answer(response)
