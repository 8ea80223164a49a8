"""Control routes of the YooKassa fake: payments, saved methods, the webhook, a checkout page."""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Any

from aiohttp import web

from services.sandbox.control.base import ControlError, Keys, Route, int_field, str_field
from services.sandbox.yookassa.errors import YooKassaApiError
from services.sandbox.yookassa.service import YooKassaService


def yookassa_routes(keys: Keys) -> list[Route]:
    def yk(request: web.Request) -> YooKassaService:
        return request.app[keys.yookassa]

    async def payments(request: web.Request, data: dict[str, Any]) -> Any:
        return [p.to_api() for p in yk(request).list_payments(request.query.get("status"), 10**6)]

    async def succeed(request: web.Request, data: dict[str, Any]) -> Any:
        card = data.get("card")
        if card is not None and not isinstance(card, dict):
            raise ControlError("card must be an object")
        return yk(request).confirm(request.match_info["payment_id"], card).to_api()

    async def cancel(request: web.Request, data: dict[str, Any]) -> Any:
        reason = str(data.get("reason", "general_decline"))
        party = data.get("party")
        return yk(request).decline(request.match_info["payment_id"], reason, party).to_api()

    async def refund(request: web.Request, data: dict[str, Any]) -> Any:
        """The shop refunds from YooKassa's dashboard: the whole rest, or `amount` ("490.00").
        The refund.succeeded notification follows, as for one made through the API."""
        svc = yk(request)
        payment = svc.payment(request.match_info["payment_id"]).to_api()
        amount = data.get("amount")
        if amount is None:
            captured = Decimal(payment["amount"]["value"])
            refunded = Decimal((payment.get("refunded_amount") or {}).get("value", "0"))
            amount = str(captured - refunded)
        body = {
            "payment_id": payment["id"],
            "amount": {"value": str(amount), "currency": payment["amount"]["currency"]},
        }
        if data.get("description"):
            body["description"] = str(data["description"])
        return svc.create_refund(body)

    async def api_requests(request: web.Request, data: dict[str, Any]) -> Any:
        """The API calls received, oldest first; `?path=/v3/payments&method=POST` narrows."""
        method = request.query.get("method")
        path = request.query.get("path")
        return [
            r
            for r in yk(request).requests
            if (method is None or r["method"] == method) and (path is None or r["path"] == path)
        ]

    async def add_method(request: web.Request, data: dict[str, Any]) -> Any:
        return yk(request).add_saved_method().data

    async def revoke_method(request: web.Request, data: dict[str, Any]) -> Any:
        saved = yk(request).saved_method(request.match_info["method_id"])
        saved.revoked = True
        saved.data["saved"] = False
        saved.data["status"] = "inactive"
        return saved.data

    async def script_declines(request: web.Request, data: dict[str, Any]) -> Any:
        saved = yk(request).saved_method(request.match_info["method_id"])
        reasons = data.get("reasons")
        if reasons is None:
            reasons = [str_field(data, "reason")] * int_field(data, "count", 1)
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise ControlError("reasons must be a list of strings")
        saved.declines.extend(reasons)
        return {"id": saved.data["id"], "declines": list(saved.declines), "revoked": saved.revoked}

    async def get_yk_webhook(request: web.Request, data: dict[str, Any]) -> Any:
        return {"url": yk(request).webhook_url}

    async def set_yk_webhook(request: web.Request, data: dict[str, Any]) -> Any:
        url = data.get("url")
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):
            raise ControlError("url must be an http(s) URL or null")
        yk(request).webhook_url = url

    return [
        ("GET", "/_sandbox/yookassa/payments", payments),
        ("POST", "/_sandbox/yookassa/payments/{payment_id}/succeed", succeed),
        ("POST", "/_sandbox/yookassa/payments/{payment_id}/cancel", cancel),
        ("POST", "/_sandbox/yookassa/payments/{payment_id}/refund", refund),
        ("GET", "/_sandbox/yookassa/requests", api_requests),
        ("POST", "/_sandbox/yookassa/payment_methods", add_method),
        ("POST", "/_sandbox/yookassa/payment_methods/{method_id}/revoke", revoke_method),
        ("POST", "/_sandbox/yookassa/payment_methods/{method_id}/declines", script_declines),
        ("GET", "/_sandbox/yookassa/webhook", get_yk_webhook),
        ("PUT", "/_sandbox/yookassa/webhook", set_yk_webhook),
    ]


def add_checkout(app: web.Application, keys: Keys) -> None:
    """The page a payer's browser is sent to (`confirmation_url`), with Pay and Cancel."""

    def yk(request: web.Request) -> YooKassaService:
        return request.app[keys.yookassa]

    async def checkout_page(request: web.Request) -> web.Response:
        payment = yk(request).payment(request.match_info["payment_id"]).to_api()
        title = html.escape(payment.get("description") or payment["id"])
        amount = f"{payment['amount']['value']} {payment['amount']['currency']}"
        page = (
            f"<!doctype html><title>Sandbox checkout</title><h1>{title}</h1>"
            f"<p>Amount: {html.escape(amount)}. Status: {payment['status']}.</p>"
            "<form method=post><button name=action value=pay>Pay</button> "
            "<button name=action value=cancel>Cancel</button></form>"
        )
        return web.Response(text=page, content_type="text/html")

    async def checkout_submit(request: web.Request) -> web.StreamResponse:
        svc = yk(request)
        payment_id = request.match_info["payment_id"]
        form = await request.post()
        try:
            if form.get("action") == "pay":
                payment = svc.confirm(payment_id)
            else:
                payment = svc.decline(payment_id, "expired_on_confirmation", "yoo_money")
        except YooKassaApiError as exc:
            return web.Response(text=exc.description, status=exc.status)
        return_url = (payment.confirmation or {}).get("return_url")
        if return_url:
            raise web.HTTPSeeOther(return_url)
        return web.Response(text=f"Payment {payment.id}: {payment.status}")

    app.router.add_get("/_sandbox/yookassa/checkout/{payment_id}", checkout_page)
    app.router.add_post("/_sandbox/yookassa/checkout/{payment_id}", checkout_submit)
