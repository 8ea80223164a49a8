"""HTTP routes of the YooKassa API v3: Basic auth, Idempotence-Key, faults, error objects."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.sandbox.faults import Faults
from services.sandbox.yookassa import listing
from services.sandbox.yookassa.errors import YooKassaApiError, invalid
from services.sandbox.yookassa.idempotence import check_key, fingerprint
from services.sandbox.yookassa.service import YooKassaService, sandbox_uuid

Operation = Callable[[YooKassaService, web.Request, dict[str, Any]], dict[str, Any]]


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
    )


def _base_url(svc: YooKassaService, request: web.Request) -> str:
    return svc.config.public_url or str(request.url.origin())


def _authorized(svc: YooKassaService, request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    shop_id, _, secret = decoded.partition(":")
    return hmac.compare_digest(shop_id, svc.config.yookassa_shop_id) and hmac.compare_digest(
        secret, svc.config.yookassa_secret_key
    )


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    if request.content_type != "application/json":
        raise _UnsupportedMediaType()
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    return body


class _UnsupportedMediaType(Exception):
    pass


def add_routes(
    app: web.Application,
    svc_key: web.AppKey[YooKassaService],
    faults_key: web.AppKey[Faults],
) -> None:
    def error(svc: YooKassaService, exc: YooKassaApiError) -> web.Response:
        return _json(exc.body(sandbox_uuid(svc.next_counter(), 0xE000)), status=exc.status)

    def endpoint(
        operation: Callable[[YooKassaService, web.Request, dict[str, Any]], dict[str, Any]],
        *,
        idempotent: bool,
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            svc = request.app[svc_key]
            # Every call the shop makes, as the provider's own request log would show it.
            svc.record_request(request.method, request.path, dict(request.query), request.headers)
            if not _authorized(svc, request):
                return error(
                    svc,
                    YooKassaApiError(
                        "invalid_credentials",
                        "Authentication by given credentials failed",
                        "Authorization",
                    ),
                )
            fault = request.app[faults_key].take("yookassa")
            if fault is not None and fault.mode == "500":
                return error(
                    svc, YooKassaApiError("internal_server_error", "Internal server error")
                )
            if fault is not None and fault.mode == "429":
                return error(svc, YooKassaApiError("too_many_requests", "Too many requests"))
            try:
                body = await _body(request) if request.method == "POST" else {}
            except _UnsupportedMediaType:
                return web.Response(status=415)
            except YooKassaApiError as exc:
                return error(svc, exc)
            status, payload = _run(svc, request, operation, body, idempotent)
            if fault is not None:
                # "timeout": the operation happened, but the answer comes too late.
                await asyncio.sleep(fault.delay_s)
            return _json(payload, status=status)

        return handle

    def _run(
        svc: YooKassaService,
        request: web.Request,
        operation: Operation,
        body: dict[str, Any],
        idempotent: bool,
    ) -> tuple[int, dict[str, Any]]:
        now = svc.clock.now()
        try:
            if not idempotent:
                return 200, operation(svc, request, body)
            key = check_key(request.headers.get("Idempotence-Key"))
            print_ = fingerprint(request.method, request.path, body)
            stored = svc.idempotence.lookup(key, print_, now)
            if stored is not None:
                return stored.status, stored.body
        except YooKassaApiError as exc:
            return exc.status, exc.body(sandbox_uuid(svc.next_counter(), 0xE000))
        try:
            status, payload = 200, operation(svc, request, body)
        except YooKassaApiError as exc:
            status, payload = exc.status, exc.body(sandbox_uuid(svc.next_counter(), 0xE000))
        svc.idempotence.remember(key, print_, status, payload, now)
        return status, payload

    def create_payment(
        svc: YooKassaService, request: web.Request, body: dict[str, Any]
    ) -> dict[str, Any]:
        return svc.create_payment(body, _base_url(svc, request)).to_api()

    def get_payment(
        svc: YooKassaService, request: web.Request, body: dict[str, Any]
    ) -> dict[str, Any]:
        return svc.payment(request.match_info["payment_id"]).to_api()

    def list_payments(
        svc: YooKassaService, request: web.Request, body: dict[str, Any]
    ) -> dict[str, Any]:
        query = listing.parse_query(request.query)
        return listing.page((p.to_api() for p in svc.payments_newest_first()), query)

    def capture(svc: YooKassaService, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return svc.capture(request.match_info["payment_id"], body).to_api()

    def cancel(svc: YooKassaService, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return svc.cancel(request.match_info["payment_id"]).to_api()

    def create_refund(
        svc: YooKassaService, request: web.Request, body: dict[str, Any]
    ) -> dict[str, Any]:
        return svc.create_refund(body)

    def get_refund(
        svc: YooKassaService, request: web.Request, body: dict[str, Any]
    ) -> dict[str, Any]:
        return svc.refund(request.match_info["refund_id"])

    def list_refunds(
        svc: YooKassaService, request: web.Request, body: dict[str, Any]
    ) -> dict[str, Any]:
        query = listing.parse_query(request.query)
        return listing.page(reversed(svc.refunds.values()), query)

    async def not_found(request: web.Request) -> web.Response:
        svc = request.app[svc_key]
        return error(svc, YooKassaApiError("not_found", "Requested resource is not found"))

    router = app.router
    router.add_post("/v3/payments", endpoint(create_payment, idempotent=True))
    router.add_get("/v3/payments", endpoint(list_payments, idempotent=False))
    router.add_get("/v3/payments/{payment_id}", endpoint(get_payment, idempotent=False))
    router.add_post("/v3/payments/{payment_id}/capture", endpoint(capture, idempotent=True))
    router.add_post("/v3/payments/{payment_id}/cancel", endpoint(cancel, idempotent=True))
    router.add_post("/v3/refunds", endpoint(create_refund, idempotent=True))
    router.add_get("/v3/refunds", endpoint(list_refunds, idempotent=False))
    router.add_get("/v3/refunds/{refund_id}", endpoint(get_refund, idempotent=False))
    router.add_route("*", "/v3/{tail:.*}", not_found)
