"""A manual renewal and the auto-charge of the same subscription are never open together, so a
member never pays twice for one period. Both backends, against the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from monitors.recurrent_payments import RecurrentPayments
from payments.renewals import AutoRenewalInProgress
from services.api.errors import ApiError
from services.api.models import PaymentCreate
from services.bot.payments import request_payment_link
from tests.integration.monitors.conftest import utcnow
from tests.integration.monitors.test_recurrent_payments import due_subscription, provider_payments


async def _user(db: Any, sub: dict[str, Any]) -> dict[str, Any]:
    return dict(
        await db.fetchone("SELECT * FROM users WHERE telegram_id = ?", (sub["telegram_id"],))
    )


async def _payment_count(db: Any, sub: dict[str, Any]) -> int:
    return int(
        await db.fetchval("SELECT count(*) FROM payments WHERE subscription_id = ?", (sub["id"],))
    )


async def test_no_manual_renewal_while_the_card_is_being_charged(
    db, sandbox, monitors, api_payments
):
    sub = await due_subscription(db, sandbox)
    charger = await monitors(RecurrentPayments)
    assert await charger.plan_due() == 1  # the attempt and its key are committed, not yet sent
    user = await _user(db, sub)
    tariff = dict(await db.fetchone("SELECT * FROM tariffs WHERE code = 'month'"))

    with pytest.raises(ApiError) as refused:
        await api_payments.create(
            PaymentCreate(telegram_id=sub["telegram_id"], tariff_code="month"), "by-hand-1"
        )
    assert (refused.value.status, refused.value.code) == (409, "renewal_in_progress")
    with pytest.raises(AutoRenewalInProgress):
        await request_payment_link(
            db,
            api_payments.yookassa,
            user_id=user["id"],
            telegram_id=sub["telegram_id"],
            tariff=tariff,
            return_url="https://t.me/domos_bot",
            now=utcnow(),
        )
    assert await _payment_count(db, sub) == 1  # only the charge's own payment

    await charger.tick()  # the charge goes through
    assert [p["status"] for p in await provider_payments(sandbox, sub["method"])] == ["succeeded"]
    payment, created = await api_payments.create(
        PaymentCreate(telegram_id=sub["telegram_id"], tariff_code="month"), "by-hand-2"
    )
    assert created
    assert payment.kind == "renewal"  # paying ahead once the charge has finished is allowed


async def test_the_card_is_not_charged_while_the_member_pays_by_hand(
    db, sandbox, monitors, api_payments
):
    sub = await due_subscription(db, sandbox)
    payment, created = await api_payments.create(
        PaymentCreate(telegram_id=sub["telegram_id"], tariff_code="month"), "by-hand-3"
    )
    assert created
    assert (payment.kind, payment.status) == ("renewal", "pending")
    charger = await monitors(RecurrentPayments)
    assert await charger.plan_due() == 0
    assert (
        await db.fetchval(
            "SELECT count(*) FROM charge_attempts WHERE subscription_id = ?", (sub["id"],)
        )
        == 0
    )

    # The member walks away: the payment ends canceled and processed; the card is charged then.
    await db.execute(
        "UPDATE payments SET status = 'canceled', processed_at = ? WHERE id = ?",
        (utcnow(), payment.id),
    )
    assert await charger.plan_due() == 1
