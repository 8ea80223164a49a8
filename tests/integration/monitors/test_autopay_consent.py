"""A member's own "stop auto-renewal" sticks: no payment, by the bot or the API, undoes it
(F3). Only the member's /autorenew_on does (tests/integration/bot/test_autopay_consent.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from monitors.payment_monitor import PaymentMonitor
from services.api.models import PaymentCreate
from services.bot.payments import request_payment_link
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import utcnow


async def _stopped_member(
    db: Any, sandbox: Any, *, status: str = "active", reason: str = "user"
) -> dict[str, Any]:
    """A member whose subscription had auto-renewal with a saved card, stopped for `reason`."""
    user = await f.member(db, sandbox)
    tariff_id = await f.tariff(db)
    ends_in = timedelta(days=5) if status == "active" else timedelta(days=-10)
    sub = await f.subscription(db, user, tariff_id, status=status, ends_in=ends_in)
    method_id = await db.fetchval(
        "INSERT INTO payment_methods (provider_method_id, user_id, method_type, is_saved)"
        " VALUES (?, ?, 'bank_card', ?) RETURNING id",
        (f"pm-old-{user['id']}", user["id"], True),
    )
    await db.execute(
        "UPDATE subscriptions SET auto_renew = ?, auto_renew_stopped_reason = ?,"
        " payment_method_id = ?, next_charge_at = NULL WHERE id = ?",
        (False, reason, method_id, sub["id"]),
    )
    return {"user": user, "tariff": tariff_id, "sub": sub}


async def _pay_through_the_bot(db: Any, sandbox: Any, provider: Any, who: dict[str, Any]) -> Any:
    tariff = await db.fetchone("SELECT * FROM tariffs WHERE id = ?", (who["tariff"],))
    link = await request_payment_link(
        db,
        provider,
        user_id=who["user"]["id"],
        telegram_id=who["user"]["telegram_id"],
        tariff=tariff,
        return_url="https://t.me/domos_bot",
        now=utcnow() - timedelta(minutes=30),
    )
    assert link.confirmation_url
    row = await db.fetchone("SELECT * FROM payments WHERE id = ?", (link.payment_id,))
    await sandbox.control("POST", f"/yookassa/payments/{row['provider_payment_id']}/succeed", {})
    return link, row


async def _member_subscription(db: Any, user: dict[str, Any]) -> dict[str, Any]:
    row = await db.fetchone(
        "SELECT * FROM subscriptions WHERE user_id = ? ORDER BY id DESC LIMIT 1", (user["id"],)
    )
    return dict(row)


async def test_paying_by_hand_after_stopping_autopay_keeps_it_stopped(
    db, sandbox, monitors, api_payments
):
    who = await _stopped_member(db, sandbox)
    link, row = await _pay_through_the_bot(db, sandbox, api_payments.yookassa, who)

    # A one-time payment, and the member is told so.
    assert link.saves_card is False
    assert row["save_payment_method"] is False
    assert row["metadata"]["provider_request"]["save_payment_method"] is False
    await (await monitors(PaymentMonitor)).tick()

    sub = await _member_subscription(db, who["user"])
    assert sub["current_period_end"] == who["sub"]["current_period_end"] + timedelta(days=30)
    assert (sub["auto_renew"], sub["auto_renew_stopped_reason"], sub["next_charge_at"]) == (
        False,
        "user",
        None,
    )


async def test_a_card_saved_by_a_payment_never_undoes_the_members_own_stop(
    db, sandbox, monitors, api_payments
):
    """Even a payment that did save a card (an API client asked explicitly, or a link made
    before the member stopped): the card is kept for /autorenew_on, auto-renewal stays off."""
    who = await _stopped_member(db, sandbox)
    payment, _ = await api_payments.create(
        PaymentCreate(
            telegram_id=who["user"]["telegram_id"],
            tariff_code="days30",
            save_payment_method=True,
        ),
        "explicit-save",
    )
    row = await db.fetchone("SELECT * FROM payments WHERE id = ?", (payment.id,))
    assert row["save_payment_method"] is True
    paid = await sandbox.control(
        "POST", f"/yookassa/payments/{row['provider_payment_id']}/succeed", {}
    )
    await f.provider_event(db, paid)  # the webhook
    await (await monitors(PaymentMonitor)).tick()

    sub = await _member_subscription(db, who["user"])
    assert sub["current_period_end"] == who["sub"]["current_period_end"] + timedelta(days=30)
    assert (sub["auto_renew"], sub["auto_renew_stopped_reason"], sub["next_charge_at"]) == (
        False,
        "user",
        None,
    )
    new_card = await db.fetchval(
        "SELECT payment_method_id FROM payments WHERE id = ?", (payment.id,)
    )
    assert new_card is not None
    assert sub["payment_method_id"] == new_card


async def test_a_returning_member_who_had_stopped_autopay_still_has_it_off(
    db, sandbox, monitors, api_payments
):
    who = await _stopped_member(db, sandbox, status="expired")
    link, _ = await _pay_through_the_bot(db, sandbox, api_payments.yookassa, who)
    assert link.saves_card is False
    await (await monitors(PaymentMonitor)).tick()

    sub = await _member_subscription(db, who["user"])
    assert sub["id"] != who["sub"]["id"]
    assert sub["status"] == "active"
    assert (sub["auto_renew"], sub["auto_renew_stopped_reason"]) == (False, "user")


async def test_autopay_stopped_by_a_decline_is_switched_on_by_a_disclosed_card(
    db, sandbox, monitors, api_payments
):
    """Only the member's own stop sticks: after a hard decline, a payment whose message said
    the card is saved and charged every period turns auto-renewal on with the new card."""
    who = await _stopped_member(db, sandbox, reason="card_expired")
    link, row = await _pay_through_the_bot(db, sandbox, api_payments.yookassa, who)
    assert (link.saves_card, row["save_payment_method"]) == (True, True)
    await (await monitors(PaymentMonitor)).tick()

    sub = await _member_subscription(db, who["user"])
    assert (sub["auto_renew"], sub["auto_renew_stopped_reason"]) == (True, None)
    assert sub["next_charge_at"] == sub["current_period_end"] - timedelta(hours=24)


async def test_the_api_by_default_respects_the_members_stop(db, sandbox, api_payments):
    stopped = await _stopped_member(db, sandbox)
    other = await f.member(db, sandbox)
    answers = {}
    for name, who, save in (
        ("stopped, default", stopped["user"], None),
        ("stopped, explicit false", stopped["user"], False),
        ("never stopped, default", other, None),
    ):
        payment, _ = await api_payments.create(
            PaymentCreate(
                telegram_id=who["telegram_id"], tariff_code="days30", save_payment_method=save
            ),
            f"key-{name}",
        )
        answers[name] = await db.fetchval(
            "SELECT save_payment_method FROM payments WHERE id = ?", (payment.id,)
        )
    assert answers == {
        "stopped, default": False,
        "stopped, explicit false": False,
        "never stopped, default": True,
    }
