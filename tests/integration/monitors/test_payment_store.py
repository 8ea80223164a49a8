"""payments.store as the producers use it: one rule for a refused request, an answer recorded as
given, a period added exactly once (both backends)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from monitors.decisions.periods import period_after
from payments.client import Answer
from payments.store import extend_subscription
from services.api.errors import ApiError
from services.api.models import PaymentCreate
from services.api.payments import PaymentService
from services.bot.payments import request_payment_link
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import utcnow

REFUSAL: Answer = (
    400,
    {"type": "error", "code": "invalid_request", "description": "amount is required"},
)


class Provider:
    """A YooKassa stand-in answering every create with `answer`."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls: list[tuple[dict[str, Any], str]] = []

    async def create_payment(self, body: dict[str, Any], idempotence_key: str) -> Answer:
        self.calls.append((body, idempotence_key))
        return self.answer


async def bot_payment(db: Any, sandbox: Any, provider: Provider) -> tuple[Any, dict[str, Any]]:
    user = await f.member(db, sandbox)
    tariff = await db.fetchone("SELECT * FROM tariffs WHERE id = ?", (await f.tariff(db),))
    link = await request_payment_link(
        db,
        provider,
        user_id=user["id"],
        telegram_id=user["telegram_id"],
        tariff=tariff,
        return_url="https://t.me/domos_bot",
        now=utcnow(),
    )
    row = await db.fetchone("SELECT * FROM payments WHERE id = ?", (link.payment_id,))
    return link, dict(row)


def refused(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["status"],
        row["cancellation_party"],
        row["cancellation_reason"],
        row["processed_at"] is not None,
    )


async def test_a_request_the_bot_sends_and_yookassa_refuses_is_canceled_by_yoo_money(db, sandbox):
    # Drift: the bot recorded party `merchant`; YooKassa names who decided, and it refused.
    link, row = await bot_payment(db, sandbox, Provider(REFUSAL))
    assert link.rejected
    assert refused(row) == ("canceled", "yoo_money", "request_rejected", True)
    assert row["last_error"] == "invalid_request: amount is required"


async def test_a_request_the_api_sends_and_yookassa_refuses_is_canceled_alike(db, sandbox):
    user = await f.member(db, sandbox)
    await f.tariff(db)
    code = await db.fetchval("SELECT code FROM tariffs")
    service = PaymentService(db, Provider(REFUSAL), "https://t.me/domos_bot")  # type: ignore[arg-type]
    payment, created = await service.create(
        PaymentCreate(telegram_id=user["telegram_id"], tariff_code=code), "refused-once"
    )
    assert created
    row = dict(await db.fetchone("SELECT * FROM payments WHERE id = ?", (payment.id,)))
    assert refused(row) == ("canceled", "yoo_money", "request_rejected", True)
    assert row["last_error"] == "invalid_request: amount is required"
    assert payment.cancellation_reason == "request_rejected"


async def test_the_bot_repeats_a_key_answered_too_many_requests(db, sandbox):
    # Drift: the bot took 429 for a refusal and canceled the payment; it is "try again later"
    # (payments.decisions.classify_response), so the key stays open for a repeat.
    link, row = await bot_payment(db, sandbox, Provider((429, {"code": "too_many_requests"})))
    assert not link.rejected
    assert (row["status"], row["processed_at"], row["last_error"]) == ("created", None, "HTTP 429")


async def test_refused_credentials_leave_the_key_to_be_repeated(db, sandbox):
    # Drift: the API and the bot canceled a payment answered 401 as if the request were refused;
    # payment_monitor's repeat (classify_create) knew better: nothing was made under the key,
    # which stays open to be repeated once the shop's credentials are fixed.
    credentials: Answer = (401, {"type": "error", "code": "invalid_credentials"})
    link, row = await bot_payment(db, sandbox, Provider(credentials))
    assert not link.rejected
    assert (row["status"], row["processed_at"], row["last_error"]) == ("created", None, "HTTP 401")

    user = await f.member(db, sandbox)
    code = await db.fetchval("SELECT code FROM tariffs")
    service = PaymentService(db, Provider(credentials), "https://t.me/domos_bot")  # type: ignore[arg-type]
    with pytest.raises(ApiError) as refused_call:
        await service.create(
            PaymentCreate(telegram_id=user["telegram_id"], tariff_code=code), "credentials"
        )
    assert (refused_call.value.status, refused_call.value.code) == (502, "provider_unavailable")
    row = await db.fetchone("SELECT * FROM payments WHERE user_id = ?", (user["id"],))
    assert (row["status"], row["processed_at"]) == ("created", None)


async def test_the_bot_records_a_final_answer_as_given(db, sandbox):
    # Drift: the bot wrote `pending` for any answer, so a payment final at once waited
    # PAYMENT_POLL_AFTER_MIN for its poll; as given, payment_monitor applies it at its next tick.
    answer = {"id": "2f0c-final", "status": "succeeded", "paid": True}
    _, row = await bot_payment(db, sandbox, Provider((200, answer)))
    assert (row["provider_payment_id"], row["status"]) == ("2f0c-final", "succeeded")
    assert row["paid_at"] is not None
    assert row["processed_at"] is None, "applied by payment_monitor, never from the answer"


@pytest.mark.parametrize("status", ["active", "grace", "expired"])
async def test_a_period_is_added_once_and_to_a_lapsed_subscription_only_for_a_charge(
    db, sandbox, status
):
    user = await f.member(db, sandbox)
    grace_until = utcnow() + timedelta(days=13) if status == "grace" else None
    sub = await f.subscription(db, user, await f.tariff(db), status=status, grace_until=grace_until)
    now = utcnow()
    period = period_after(sub["current_period_end"], days=30, tz=now.tzinfo)  # type: ignore[arg-type]

    async def extend(*, lapsed_too: bool) -> bool:
        async with db.transaction() as tx:
            return await extend_subscription(
                tx,
                sub["id"],
                from_end=sub["current_period_end"],
                period=period,
                next_charge_at=period.end - timedelta(hours=24),
                now=now,
                lapsed_too=lapsed_too,
            )

    # A payment made by hand extends a live subscription only.
    assert await extend(lapsed_too=False) is (status != "expired")
    # A saved-card charge for this very period renews it either way; never twice.
    assert await extend(lapsed_too=True) is (status == "expired")
    assert await extend(lapsed_too=True) is False
    fresh = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert (fresh["status"], fresh["current_period_end"]) == ("active", period.end)
