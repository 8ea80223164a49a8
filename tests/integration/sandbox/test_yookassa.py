"""YooKassa API v3 with a plain HTTP client: objects, errors, idempotence, webhooks, faults."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from typing import Any

import aiohttp
import pytest

from tests.integration.sandbox.conftest import Receiver, Sandbox

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PAYMENT = {
    "amount": {"value": "990.00", "currency": "RUB"},
    "capture": True,
    "confirmation": {"type": "redirect", "return_url": "https://example.com/back"},
    "description": "Subscription, 1 month",
    "metadata": {"user_id": "42", "tariff": "month"},
    "save_payment_method": True,
}


async def call(
    sandbox: Sandbox,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = "auto",
    auth: bool = True,
    client_timeout_s: float | None = None,
) -> tuple[int, Any]:
    headers = sandbox.auth_header() if auth else {}
    if method == "POST" and key is not None:
        headers["Idempotence-Key"] = str(uuid.uuid4()) if key == "auto" else key
    async with sandbox.http.request(
        method,
        f"{sandbox.base}/v3{path}",
        json=body,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=client_timeout_s) if client_timeout_s else None,
    ) as resp:
        return resp.status, await resp.json()


def assert_error(body: dict[str, Any], code: str, parameter: str | None = None) -> None:
    assert body["type"] == "error"
    assert UUID.match(body["id"])
    assert body["code"] == code
    assert isinstance(body["description"], str)
    assert body["description"]
    if parameter is not None:
        assert body["parameter"] == parameter


async def wait_for(predicate: Any, timeout_s: float = 3.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_requests_without_valid_basic_auth_are_401(sandbox: Sandbox) -> None:
    status, body = await call(sandbox, "GET", "/payments/x", auth=False)
    assert status == 401
    assert_error(body, "invalid_credentials")
    wrong = "Basic " + base64.b64encode(b"100500:wrong").decode()
    async with sandbox.http.get(
        f"{sandbox.base}/v3/payments", headers={"Authorization": wrong}
    ) as resp:
        assert resp.status == 401
        assert_error(await resp.json(), "invalid_credentials")


async def test_create_payment_wire_format(sandbox: Sandbox) -> None:
    status, payment = await call(sandbox, "POST", "/payments", PAYMENT)
    assert status == 200
    assert UUID.match(payment["id"])
    assert payment["status"] == "pending"
    assert payment["paid"] is False
    assert payment["amount"] == {"value": "990.00", "currency": "RUB"}
    assert payment["confirmation"]["type"] == "redirect"
    assert payment["confirmation"]["confirmation_url"].startswith("http")
    assert ISO.match(payment["created_at"])
    assert payment["description"] == "Subscription, 1 month"
    assert payment["metadata"] == {"user_id": "42", "tariff": "month"}
    assert payment["recipient"]["account_id"] == "100500"
    assert payment["test"] is True
    assert payment["refundable"] is False
    status, fetched = await call(sandbox, "GET", f"/payments/{payment['id']}")
    assert (status, fetched) == (200, payment)


async def test_amount_accepts_numbers_and_normalises(sandbox: Sandbox) -> None:
    body = {**PAYMENT, "amount": {"value": 100, "currency": "RUB"}}
    status, payment = await call(sandbox, "POST", "/payments", body)
    assert status == 200
    assert payment["amount"]["value"] == "100.00"


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"capture": True}, "amount"),
        ({"amount": {"value": "-1.00", "currency": "RUB"}}, "amount.value"),
        ({"amount": {"value": "1.005", "currency": "RUB"}}, "amount.value"),
        ({"amount": {"value": "10.00"}}, "amount.currency"),
        ({"amount": {"value": "10.00", "currency": "RUB"}}, "confirmation"),
        (
            {"amount": {"value": "1.00", "currency": "RUB"}, "confirmation": {"type": "redirect"}},
            "confirmation.return_url",
        ),
        ({**PAYMENT, "capture": "yes"}, "capture"),
        ({**PAYMENT, "payment_method_id": "unknown"}, "payment_method_id"),
    ],
)
async def test_invalid_payment_requests(sandbox: Sandbox, body: Any, parameter: str) -> None:
    status, error = await call(sandbox, "POST", "/payments", body)
    assert status == 400
    assert_error(error, "invalid_request", parameter)


async def test_idempotence_key_required_and_honoured(sandbox: Sandbox) -> None:
    status, body = await call(sandbox, "POST", "/payments", PAYMENT, key=None)
    assert status == 400
    assert_error(body, "invalid_request", "Idempotence-Key")

    key = str(uuid.uuid4())
    _, first = await call(sandbox, "POST", "/payments", PAYMENT, key=key)
    _, second = await call(sandbox, "POST", "/payments", PAYMENT, key=key)
    assert first == second
    status, conflict = await call(
        sandbox, "POST", "/payments", {**PAYMENT, "description": "other"}, key=key
    )
    assert status == 400
    assert_error(conflict, "invalid_request", "Idempotence-Key")
    assert conflict["description"] == "Idempotence key duplicated"
    assert len(await sandbox.control("GET", "/yookassa/payments")) == 1

    sandbox.clock.advance(24 * 3600 + 1)  # retention over: the key is free again
    _, later = await call(sandbox, "POST", "/payments", PAYMENT, key=key)
    assert later["id"] != first["id"]


async def test_unknown_payment_is_404(sandbox: Sandbox) -> None:
    status, body = await call(sandbox, "GET", f"/payments/{uuid.uuid4()}")
    assert status == 404
    assert_error(body, "not_found")


async def test_success_saves_the_card_and_notifies(sandbox: Sandbox, receiver: Receiver) -> None:
    await sandbox.control("PUT", "/yookassa/webhook", {"url": receiver.url})
    _, payment = await call(sandbox, "POST", "/payments", PAYMENT)
    succeeded = await sandbox.control("POST", f"/yookassa/payments/{payment['id']}/succeed")
    assert succeeded["status"] == "succeeded"
    assert succeeded["paid"] is True
    assert ISO.match(succeeded["captured_at"])
    assert "confirmation" not in succeeded
    method = succeeded["payment_method"]
    assert method["type"] == "bank_card"
    assert method["saved"] is True
    assert method["card"]["last4"] == "4444"
    assert UUID.match(method["id"])
    assert succeeded["income_amount"]["value"] == "955.35"
    await wait_for(lambda: receiver.calls)
    _, notification = receiver.calls[0]
    assert notification["type"] == "notification"
    assert notification["event"] == "payment.succeeded"
    assert notification["object"]["id"] == payment["id"]
    assert notification["object"]["status"] == "succeeded"


async def test_two_stage_payment_capture_and_cancel(sandbox: Sandbox) -> None:
    body = {**PAYMENT, "capture": False}
    _, first = await call(sandbox, "POST", "/payments", body)
    waiting = await sandbox.control("POST", f"/yookassa/payments/{first['id']}/succeed")
    assert waiting["status"] == "waiting_for_capture"
    assert waiting["paid"] is True
    assert ISO.match(waiting["expires_at"])
    status, captured = await call(sandbox, "POST", f"/payments/{first['id']}/capture", {})
    assert (status, captured["status"]) == (200, "succeeded")

    _, second = await call(sandbox, "POST", "/payments", body)
    await sandbox.control("POST", f"/yookassa/payments/{second['id']}/succeed")
    status, canceled = await call(sandbox, "POST", f"/payments/{second['id']}/cancel", {})
    assert status == 200
    assert canceled["status"] == "canceled"
    assert canceled["cancellation_details"] == {
        "party": "merchant",
        "reason": "canceled_by_merchant",
    }
    status, error = await call(sandbox, "POST", f"/payments/{second['id']}/capture", {})
    assert status == 400
    assert_error(error, "invalid_request")


async def test_declined_payment_carries_cancellation_details(sandbox: Sandbox) -> None:
    _, payment = await call(sandbox, "POST", "/payments", PAYMENT)
    canceled = await sandbox.control(
        "POST", f"/yookassa/payments/{payment['id']}/cancel", {"reason": "insufficient_funds"}
    )
    assert canceled["status"] == "canceled"
    assert canceled["paid"] is False
    assert canceled["cancellation_details"] == {
        "party": "payment_network",
        "reason": "insufficient_funds",
    }


async def test_unconfirmed_payment_expires(sandbox: Sandbox) -> None:
    _, payment = await call(sandbox, "POST", "/payments", PAYMENT)
    sandbox.clock.advance(3601)
    _, expired = await call(sandbox, "GET", f"/payments/{payment['id']}")
    assert expired["status"] == "canceled"
    assert expired["cancellation_details"]["reason"] == "expired_on_confirmation"


async def test_recurring_charges_with_a_saved_method(sandbox: Sandbox) -> None:
    method = await sandbox.control("POST", "/yookassa/payment_methods")
    charge = {
        "amount": {"value": "990.00", "currency": "RUB"},
        "capture": True,
        "payment_method_id": method["id"],
        "description": "Auto-renewal",
    }
    _, ok = await call(sandbox, "POST", "/payments", charge)
    assert ok["status"] == "succeeded"
    assert ok["payment_method"]["id"] == method["id"]

    await sandbox.control(
        "POST",
        f"/yookassa/payment_methods/{method['id']}/declines",
        {"reasons": ["insufficient_funds"]},
    )
    _, soft = await call(sandbox, "POST", "/payments", charge)
    assert soft["status"] == "canceled"
    assert soft["cancellation_details"] == {
        "party": "payment_network",
        "reason": "insufficient_funds",
    }
    _, again = await call(sandbox, "POST", "/payments", charge)
    assert again["status"] == "succeeded"

    await sandbox.control("POST", f"/yookassa/payment_methods/{method['id']}/revoke")
    _, hard = await call(sandbox, "POST", "/payments", charge)
    assert hard["status"] == "canceled"
    assert hard["cancellation_details"] == {"party": "yoo_money", "reason": "permission_revoked"}


async def test_notifications_are_retried_until_acknowledged(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    await sandbox.control("PUT", "/yookassa/webhook", {"url": receiver.url})
    method = await sandbox.control("POST", "/yookassa/payment_methods")
    await call(
        sandbox,
        "POST",
        "/payments",
        {"amount": {"value": "1.00", "currency": "RUB"}, "payment_method_id": method["id"]},
    )
    await wait_for(lambda: len(receiver.calls) >= 3)
    events = [body["event"] for _, body in receiver.calls]
    assert events == ["payment.waiting_for_capture"] * 3
    deliveries = await sandbox.control("GET", "/webhooks?api=yookassa")
    assert [(d["attempt"], d["status"]) for d in deliveries] == [(1, 500), (2, 500), (3, 200)]


async def test_fault_500_is_not_remembered(sandbox: Sandbox) -> None:
    await sandbox.control("POST", "/faults", {"api": "yookassa", "mode": "500", "count": 1})
    key = str(uuid.uuid4())
    status, body = await call(sandbox, "POST", "/payments", PAYMENT, key=key)
    assert status == 500
    assert_error(body, "internal_server_error")
    assert await sandbox.control("GET", "/yookassa/payments") == []
    status, payment = await call(sandbox, "POST", "/payments", PAYMENT, key=key)
    assert status == 200
    assert payment["status"] == "pending"


async def test_fault_429_refuses_without_doing_anything(sandbox: Sandbox) -> None:
    await sandbox.control("POST", "/faults", {"api": "yookassa", "mode": "429", "count": 1})
    key = str(uuid.uuid4())
    status, body = await call(sandbox, "POST", "/payments", PAYMENT, key=key)
    assert status == 429
    assert_error(body, "too_many_requests")
    assert await sandbox.control("GET", "/yookassa/payments") == []
    status, payment = await call(sandbox, "POST", "/payments", PAYMENT, key=key)
    assert (status, payment["status"]) == (200, "pending")


async def test_timeout_fault_processes_then_answers_late(sandbox: Sandbox) -> None:
    await sandbox.control(
        "POST", "/faults", {"api": "yookassa", "mode": "timeout", "count": 1, "delay_s": 0.5}
    )
    key = str(uuid.uuid4())
    with pytest.raises(TimeoutError):
        await call(sandbox, "POST", "/payments", PAYMENT, key=key, client_timeout_s=0.1)
    # The outcome was unknown to the client; repeating with the same key returns it.
    status, payment = await call(sandbox, "POST", "/payments", PAYMENT, key=key)
    assert status == 200
    assert len(await sandbox.control("GET", "/yookassa/payments")) == 1
    assert (await sandbox.control("GET", "/yookassa/payments"))[0]["id"] == payment["id"]


async def test_refunds(sandbox: Sandbox, receiver: Receiver) -> None:
    await sandbox.control("PUT", "/yookassa/webhook", {"url": receiver.url})
    _, payment = await call(sandbox, "POST", "/payments", PAYMENT)
    status, error = await call(
        sandbox,
        "POST",
        "/refunds",
        {"payment_id": payment["id"], "amount": {"value": "1.00", "currency": "RUB"}},
    )
    assert status == 400
    assert_error(error, "invalid_request")
    await sandbox.control("POST", f"/yookassa/payments/{payment['id']}/succeed")
    status, refund = await call(
        sandbox,
        "POST",
        "/refunds",
        {"payment_id": payment["id"], "amount": {"value": "490.00", "currency": "RUB"}},
    )
    assert status == 200
    assert refund["status"] == "succeeded"
    assert UUID.match(refund["id"])
    assert ISO.match(refund["created_at"])
    _, fetched = await call(sandbox, "GET", f"/refunds/{refund['id']}")
    assert fetched == refund
    _, refreshed = await call(sandbox, "GET", f"/payments/{payment['id']}")
    assert refreshed["refunded_amount"] == {"value": "490.00", "currency": "RUB"}
    assert refreshed["refundable"] is True
    status, error = await call(
        sandbox,
        "POST",
        "/refunds",
        {"payment_id": payment["id"], "amount": {"value": "500.01", "currency": "RUB"}},
    )
    assert status == 400
    _, listing = await call(sandbox, "GET", f"/refunds?payment_id={payment['id']}")
    assert [r["id"] for r in listing["items"]] == [refund["id"]]
    await wait_for(lambda: any(b["event"] == "refund.succeeded" for _, b in receiver.calls))


async def test_checkout_page_pays_and_redirects(sandbox: Sandbox) -> None:
    _, payment = await call(sandbox, "POST", "/payments", PAYMENT)
    url = payment["confirmation"]["confirmation_url"]
    async with sandbox.http.get(url) as resp:
        assert resp.status == 200
        assert "990.00 RUB" in await resp.text()
    async with sandbox.http.post(url, data={"action": "pay"}, allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == "https://example.com/back"
    _, paid = await call(sandbox, "GET", f"/payments/{payment['id']}")
    assert paid["status"] == "succeeded"
