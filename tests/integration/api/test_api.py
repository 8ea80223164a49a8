"""The API on both backends: subscription status, payments through a real sandbox, tokens, auth,
errors, health and metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY

from tests.integration.api.conftest import (
    ADMIN,
    ADMIN_KEY,
    Api,
    add_subscription,
    add_tariff,
    add_user,
)
from tests.integration.api.processes import SandboxProcess

# --- subscriptions --------------------------------------------------------------------------


async def test_subscription_status_prefers_the_live_subscription(api: Api, db: Any) -> None:
    tariff = await add_tariff(db)
    user, telegram_id = await add_user(db)
    response = await api.client.get(f"/v1/subscriptions/{telegram_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "none"
    assert response.json()["is_active"] is False

    await add_subscription(db, user, tariff, "expired", datetime.now(UTC) - timedelta(days=40))
    end = datetime.now(UTC) + timedelta(days=5)
    await add_subscription(db, user, tariff, "grace", end)
    body = (await api.client.get(f"/v1/subscriptions/{telegram_id}")).json()
    assert body["status"] == "grace"
    assert body["is_active"] is True
    assert body["tariff_code"] == "month"
    assert datetime.fromisoformat(body["current_period_end"]) == end


async def test_unknown_member_is_a_json_404(api: Api) -> None:
    response = await api.client.get("/v1/subscriptions/42")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "user_not_found"


# --- payments ---------------------------------------------------------------------------------


async def test_payment_is_stored_then_created_at_the_provider_once(
    api: Api, db: Any, sandbox: SandboxProcess
) -> None:
    await add_tariff(db, price_minor=123450)
    _, telegram_id = await add_user(db)
    request = {"telegram_id": telegram_id, "tariff_code": "month"}
    headers = {"Idempotence-Key": "order-1"}

    first = await api.client.post("/v1/payments", json=request, headers=headers)
    assert first.status_code == 201, first.text
    payment = first.json()
    assert payment["status"] == "pending"
    assert payment["amount"] == {"value": "1234.50", "currency": "RUB"}
    assert payment["confirmation_url"].startswith("http")
    assert payment["kind"] == "first"

    row = await db.fetchone("SELECT * FROM payments WHERE id = ?", (payment["id"],))
    assert row["provider_payment_id"] == payment["provider_payment_id"]
    assert row["idempotence_key"].startswith("api-")

    retry = await api.client.post("/v1/payments", json=request, headers=headers)
    assert retry.status_code == 200
    assert retry.json()["id"] == payment["id"]
    assert await db.fetchval("SELECT count(*) FROM payments") == 1
    at_provider = [
        p for p in sandbox.control("GET", "/yookassa/payments")
        if p["id"] == payment["provider_payment_id"]
    ]  # fmt: skip
    assert len(at_provider) == 1
    assert at_provider[0]["amount"]["value"] == "1234.50"

    # Another key while that payment is open (a second tap): the same payment, no second
    # checkout page the member could pay as well.
    other = await api.client.post(
        "/v1/payments", json=request, headers={"Idempotence-Key": "order-2"}
    )
    assert other.status_code == 200, other.text
    assert other.json()["id"] == payment["id"]
    assert await db.fetchval("SELECT count(*) FROM payments") == 1


async def test_an_open_payment_is_reused_for_an_hour_and_only_the_same_terms(
    api: Api, db: Any, sandbox: SandboxProcess
) -> None:
    """Another key gets the member's open payment back while it is young and asks the same
    (tariff, card saving); an older one, another tariff, or another card choice make a new one."""
    await add_tariff(db)
    await add_tariff(db, code="year", price_minor=990000)
    _, telegram_id = await add_user(db)
    month = {"telegram_id": telegram_id, "tariff_code": "month"}

    async def pay(body: dict[str, Any], key: str) -> Any:
        return await api.client.post("/v1/payments", json=body, headers={"Idempotence-Key": key})

    first = (await pay(month, "k1")).json()
    again = await pay(month, "k2")
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    year = await pay({**month, "tariff_code": "year"}, "k3")
    assert year.status_code == 201
    no_card = await pay({**month, "save_payment_method": False}, "k4")
    assert no_card.status_code == 201
    await db.execute(
        "UPDATE payments SET created_at = ? WHERE id = ?",
        (datetime.now(UTC) - timedelta(minutes=61), first["id"]),
    )
    later = await pay(month, "k5")
    assert later.status_code == 201
    assert later.json()["id"] not in (first["id"], no_card.json()["id"])


async def test_provider_failure_keeps_the_row_and_a_retry_completes_it(
    api: Api, db: Any, sandbox: SandboxProcess
) -> None:
    await add_tariff(db)
    _, telegram_id = await add_user(db)
    request = {"telegram_id": telegram_id, "tariff_code": "month"}
    headers = {"Idempotence-Key": "flaky"}

    sandbox.arm_fault(count=1)
    failed = await api.client.post("/v1/payments", json=request, headers=headers)
    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "provider_unavailable"
    row = await db.fetchone("SELECT status, provider_payment_id, last_error FROM payments")
    assert row["status"] == "created"
    assert row["provider_payment_id"] is None
    assert row["last_error"]

    retried = await api.client.post("/v1/payments", json=request, headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
    assert await db.fetchval("SELECT count(*) FROM payments") == 1


async def test_a_retry_past_the_key_window_is_refused_and_a_new_key_starts_over(
    api: Api, db: Any, sandbox: SandboxProcess
) -> None:
    await add_tariff(db)
    _, telegram_id = await add_user(db)
    request = {"telegram_id": telegram_id, "tariff_code": "month"}
    headers = {"Idempotence-Key": "yesterday"}
    sandbox.arm_fault(count=1)
    assert (await api.client.post("/v1/payments", json=request, headers=headers)).status_code == 502
    payment_id = await db.fetchval("SELECT id FROM payments")
    # The client retries a day later: YooKassa may have forgotten the key by now.
    await db.execute(
        "UPDATE payments SET created_at = ? WHERE id = ?",
        (datetime.now(UTC) - timedelta(hours=24), payment_id),
    )
    before = len(sandbox.control("GET", "/yookassa/payments"))

    late = await api.client.post("/v1/payments", json=request, headers=headers)

    assert late.status_code == 409, late.text
    assert late.json()["error"]["code"] == "idempotence_key_expired"
    assert f"payment {payment_id} was never confirmed" in late.json()["error"]["message"]
    row = await db.fetchone("SELECT * FROM payments WHERE id = ?", (payment_id,))
    assert (row["status"], row["provider_payment_id"]) == ("canceled", None)
    assert (row["cancellation_party"], row["cancellation_reason"]) == (
        "merchant",
        "idempotence_key_expired",
    )
    assert row["processed_at"] is not None
    # YooKassa was not called: no payment beside one the first request may have made.
    assert len(sandbox.control("GET", "/yookassa/payments")) == before
    again = await api.client.post("/v1/payments", json=request, headers=headers)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "idempotence_key_expired")

    fresh = await api.client.post(
        "/v1/payments", json=request, headers={"Idempotence-Key": "today"}
    )
    assert fresh.status_code == 201, fresh.text
    assert fresh.json()["id"] != payment_id
    assert fresh.json()["status"] == "pending"
    assert await db.fetchval("SELECT count(*) FROM payments") == 2


async def test_a_payment_the_monitor_canceled_past_the_window_answers_the_same(
    api: Api, db: Any, sandbox: SandboxProcess
) -> None:
    await add_tariff(db)
    _, telegram_id = await add_user(db)
    request = {"telegram_id": telegram_id, "tariff_code": "month"}
    headers = {"Idempotence-Key": "monitor-got-there-first"}
    sandbox.arm_fault(count=1)
    assert (await api.client.post("/v1/payments", json=request, headers=headers)).status_code == 502
    # payment_monitor's cancellation of an expired key (stage 0), before the client came back.
    await db.execute(
        "UPDATE payments SET status = 'canceled', cancellation_party = 'merchant',"
        " cancellation_reason = 'idempotence_key_expired', processed_at = ?",
        (datetime.now(UTC),),
    )
    late = await api.client.post("/v1/payments", json=request, headers=headers)
    assert (late.status_code, late.json()["error"]["code"]) == (409, "idempotence_key_expired")


async def test_the_openapi_description_tells_clients_what_an_old_key_gets(api: Api) -> None:
    operation = (await api.client.get("/openapi.json")).json()["paths"]["/v1/payments"]["post"]
    assert "idempotence_key_expired" in operation["responses"]["409"]["description"]
    assert "new `Idempotence-Key`" in operation["description"]


async def test_the_request_is_committed_with_the_row_and_repeated_as_it_was(
    api: Api, db: Any, sandbox: SandboxProcess
) -> None:
    await add_tariff(db, price_minor=99000)
    _, telegram_id = await add_user(db)
    headers = {"Idempotence-Key": "stored-body"}
    first = {"telegram_id": telegram_id, "tariff_code": "month", "return_url": "https://a.example"}

    sandbox.arm_fault(count=1)
    assert (await api.client.post("/v1/payments", json=first, headers=headers)).status_code == 502
    row = await db.fetchone("SELECT id, tariff_id, metadata FROM payments")
    stored = row["metadata"]["provider_request"]
    assert stored["confirmation"] == {"type": "redirect", "return_url": "https://a.example"}
    assert stored["amount"] == {"value": "990.00", "currency": "RUB"}
    # The bot's metadata too (payments.requests.checkout_request): one shape for both producers.
    assert stored["metadata"] == {
        "payment_row": str(row["id"]),
        "telegram_id": str(telegram_id),
        "source": "api",
        "tariff_id": str(row["tariff_id"]),
    }

    # A retry naming another return URL still repeats the first request: same key, same body.
    second = {**first, "return_url": "https://b.example"}
    retried = await api.client.post("/v1/payments", json=second, headers=headers)
    assert retried.status_code == 200, retried.text
    [at_provider] = [
        p for p in sandbox.control("GET", "/yookassa/payments")
        if p["id"] == retried.json()["provider_payment_id"]
    ]  # fmt: skip
    assert at_provider["confirmation"]["return_url"] == "https://a.example"
    assert at_provider["metadata"] == stored["metadata"]
    row = await db.fetchone("SELECT metadata FROM payments")
    assert row["metadata"]["provider_request"] == stored


async def test_concurrent_retries_create_one_payment(
    api: Api, db: Any, sandbox: SandboxProcess
) -> None:
    await add_tariff(db)
    _, telegram_id = await add_user(db)
    request = {"telegram_id": telegram_id, "tariff_code": "month"}
    answers = await asyncio.gather(
        *(
            api.client.post("/v1/payments", json=request, headers={"Idempotence-Key": "burst"})
            for _ in range(6)
        )
    )
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len({a.json()["provider_payment_id"] for a in answers}) == 1
    assert await db.fetchval("SELECT count(*) FROM payments") == 1


async def test_renewal_kind_and_refusals(api: Api, db: Any) -> None:
    tariff = await add_tariff(db)
    await add_tariff(db, code="old", active=False)
    user, telegram_id = await add_user(db)
    sub = await add_subscription(db, user, tariff, "active")

    renewal = await api.client.post(
        "/v1/payments",
        json={"telegram_id": telegram_id, "tariff_code": "month"},
        headers={"Idempotence-Key": "k"},
    )
    assert renewal.json()["kind"] == "renewal"
    assert await db.fetchval("SELECT subscription_id FROM payments") == sub

    reused = await api.client.post(
        "/v1/payments",
        json={"telegram_id": telegram_id, "tariff_code": "old"},
        headers={"Idempotence-Key": "k"},
    )
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotence_key_reused"

    async def refusal(body: dict[str, Any]) -> str:
        response = await api.client.post(
            "/v1/payments", json=body, headers={"Idempotence-Key": "x"}
        )
        assert response.status_code in (404, 409, 422), response.text
        return str(response.json()["error"]["code"])

    # A tariff off sale answers like an unknown code: which codes exist is not told.
    off_sale = await api.client.post(
        "/v1/payments",
        json={"telegram_id": telegram_id, "tariff_code": "old"},
        headers={"Idempotence-Key": "x"},
    )
    unknown = await api.client.post(
        "/v1/payments",
        json={"telegram_id": telegram_id, "tariff_code": "nope"},
        headers={"Idempotence-Key": "x"},
    )
    assert off_sale.status_code == unknown.status_code == 404
    assert off_sale.json()["error"]["code"] == unknown.json()["error"]["code"] == "tariff_not_found"
    assert await refusal({"telegram_id": 1, "tariff_code": "month"}) == "user_not_found"
    assert await refusal({"telegram_id": "x", "tariff_code": "month"}) == "validation_error"
    missing_key = await api.client.post(
        "/v1/payments", json={"telegram_id": telegram_id, "tariff_code": "month"}
    )
    assert missing_key.status_code == 422


# --- tokens -----------------------------------------------------------------------------------


async def issue(api: Api, kind: str = "advert", **fields: Any) -> dict[str, Any]:
    body = {"issued_to": "partner-1", "scope": "publish", **fields}
    response = await api.client.post(f"/v1/admin/{kind}/tokens", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_token_lifecycle(api: Api, db: Any) -> None:
    issued = await issue(api, max_uses=2, note="test")
    token = issued["token"]
    assert token.startswith("adv_")
    assert issued["token_prefix"] == token[:12]
    stored = await db.fetchone("SELECT token_hash FROM tokens", db="advert")
    assert token not in str(stored)
    assert len(stored["token_hash"]) == 64

    verdict = (await api.client.post("/v1/advert/tokens/verify", json={"token": token})).json()
    assert verdict["valid"] is True
    assert verdict["uses_left"] == 2

    for left in (1, 0):
        used = await api.client.post(
            "/v1/advert/tokens/use", json={"token": token, "used_by": "site"}
        )
        assert used.status_code == 200, used.text
        assert used.json()["uses_left"] == left
    exhausted = await api.client.post("/v1/advert/tokens/use", json={"token": token})
    assert exhausted.status_code == 403
    assert exhausted.json()["error"]["code"] == "token_exhausted"
    uses = await db.fetchall("SELECT ip, used_by FROM token_uses", db="advert")
    assert [(u["ip"], u["used_by"]) for u in uses] == [("203.0.113.7", "site")] * 2

    # The same token means nothing to the contract API.
    other = await api.client.post("/v1/contract/tokens/verify", json={"token": token})
    assert other.json() == {**other.json(), "valid": False, "reason": "unknown"}


async def test_revoked_and_expired_tokens(api: Api, db: Any) -> None:
    revoked = await issue(api, "contract")
    revoke_url = f"/v1/admin/contract/tokens/{revoked['id']}/revoke"
    response = await api.client.post(revoke_url, json={"reason": "leaked"}, headers=ADMIN)
    assert response.json()["state"] == "revoked"
    again = await api.client.post(revoke_url, headers=ADMIN)
    assert again.json()["revoked_reason"] == "leaked"
    verdict = await api.client.post("/v1/contract/tokens/verify", json={"token": revoked["token"]})
    assert verdict.json()["reason"] == "revoked"
    use = await api.client.post("/v1/contract/tokens/use", json={"token": revoked["token"]})
    assert (use.status_code, use.json()["error"]["code"]) == (403, "token_revoked")

    soon = datetime.now(UTC) + timedelta(hours=1)
    expiring = await issue(api, "contract", expires_at=soon.isoformat())
    await db.execute(
        "UPDATE tokens SET expires_at = ? WHERE id = ?",
        (datetime.now(UTC) - timedelta(seconds=1), expiring["id"]),
        db="contract",
    )
    verdict = await api.client.post("/v1/contract/tokens/verify", json={"token": expiring["token"]})
    assert verdict.json()["reason"] == "expired"

    unknown = await api.client.post("/v1/contract/tokens/use", json={"token": "ctr_nope"})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (401, "token_invalid")

    listed = await api.client.get(
        "/v1/admin/contract/tokens", params={"issued_to": "partner-1"}, headers=ADMIN
    )
    assert {item["id"] for item in listed.json()["items"]} == {revoked["id"], expiring["id"]}
    assert all("token" not in item for item in listed.json()["items"])
    past = await api.client.post(
        "/v1/admin/contract/tokens",
        json={"issued_to": "p", "scope": "s", "expires_at": "2000-01-01T00:00:00Z"},
        headers=ADMIN,
    )
    assert past.status_code == 422


async def test_concurrent_uses_never_exceed_max_uses(api: Api, db: Any) -> None:
    token = (await issue(api, max_uses=3))["token"]
    answers = await asyncio.gather(
        *(api.client.post("/v1/advert/tokens/use", json={"token": token}) for _ in range(10))
    )
    assert sorted(a.status_code for a in answers) == [200] * 3 + [403] * 7
    assert await db.fetchval("SELECT use_count FROM tokens", db="advert") == 3
    assert await db.fetchval("SELECT count(*) FROM token_uses", db="advert") == 3


async def test_admin_endpoints_need_the_key(api: Api) -> None:
    body = {"issued_to": "p", "scope": "s"}
    missing = await api.client.post("/v1/admin/advert/tokens", json=body)
    wrong = await api.client.post(
        "/v1/admin/advert/tokens", json=body, headers={"X-API-Key": ADMIN_KEY + "x"}
    )
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    listed = await api.client.get("/v1/admin/advert/tokens/1", headers=ADMIN)
    assert listed.status_code == 404


# --- errors, health, metrics ---------------------------------------------------------------------


async def test_errors_are_json_without_internals(api: Api) -> None:
    unknown = await api.client.get("/nope")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"

    nul = await api.client.post("/v1/advert/tokens/verify", json={"token": "a\x00b"})
    assert nul.status_code == 422
    error = nul.json()["error"]
    assert error["code"] == "validation_error"
    assert "NUL" in error["message"]

    broken = await api.client.post(
        "/v1/advert/tokens/verify", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert "Traceback" not in broken.text


async def test_health_reports_the_database(api: Api) -> None:
    healthy = await api.client.get("/health")
    assert healthy.json() == {"status": "ok", "database": "ok"}
    await api.services.db.close()
    down = await api.client.get("/health")
    assert down.status_code == 503
    assert down.json()["status"] == "unavailable"
    status = await api.client.get("/v1/subscriptions/5")
    assert status.status_code == 503
    assert status.json()["error"]["code"] == "database_unavailable"


async def test_metrics_count_requests_by_route_template(api: Api) -> None:
    labels = {
        "program": "api-test",
        "route": "/v1/subscriptions/{telegram_id}",
        "method": "GET",
        "status": "404",
    }
    before = REGISTRY.get_sample_value("domos_http_requests_total", labels) or 0.0
    for telegram_id in (11, 12, 13):
        await api.client.get(f"/v1/subscriptions/{telegram_id}")
    await api.client.get("/random/path/1")
    text = (await api.client.get("/metrics")).text
    assert REGISTRY.get_sample_value("domos_http_requests_total", labels) == before + 3
    assert 'route="<unmatched>"' in text
    assert "/random/path/1" not in text
    assert "domos_http_request_duration_seconds_bucket" in text


async def test_the_bot_and_the_mini_app_at_once_make_one_payment(
    api: Api, db: Any, sandbox: SandboxProcess
) -> None:
    """/subscribe in the bot and Pay in the Mini App at the same moment, for the same tariff:
    both lock the member's row first, so the one decided second finds the other's payment."""
    from services.bot.payments import request_payment_link

    tariff_id = await add_tariff(db)
    tariff = await db.fetchone("SELECT * FROM tariffs WHERE id = ?", (tariff_id,))
    for _ in range(3):
        user_id, telegram_id = await add_user(db)
        bot_link, api_answer = await asyncio.gather(
            request_payment_link(
                db,
                api.services.payments.yookassa,
                user_id=user_id,
                telegram_id=telegram_id,
                tariff=tariff,
                return_url="https://t.me/domos_bot",
                now=datetime.now(UTC),
            ),
            api.client.post(
                "/v1/payments",
                json={"telegram_id": telegram_id, "tariff_code": "month"},
                headers={"Idempotence-Key": f"tap-{telegram_id}"},
            ),
        )
        assert api_answer.status_code in (200, 201), api_answer.text
        assert api_answer.json()["id"] == bot_link.payment_id
        rows = await db.fetchval("SELECT count(*) FROM payments WHERE user_id = ?", (user_id,))
        assert rows == 1
