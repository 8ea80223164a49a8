"""Which monitor finalizes which payment: payment_monitor every row without a charge attempt
(first payments and renewals paid by hand through the API or the bot), recurrent_payments its own
auto-charges. Both backends, against the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from monitors.payment_monitor import PaymentMonitor
from monitors.recurrent_payments import RecurrentPayments
from payments.client import YooKassaClient
from runtime.config import Settings
from services.api.models import PaymentCreate
from services.bot.payments import request_payment_link
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import metric, utcnow


@pytest.fixture
async def slow_yookassa(monitor_environ: dict[str, str]) -> AsyncIterator[YooKassaClient]:
    """A YooKassa client whose calls give up after 0.3 s: a "timeout" fault loses the answer."""
    client = YooKassaClient(Settings.from_env(monitor_environ), timeout_s=0.3)
    await client.open()
    yield client
    await client.close()


async def live_member(db: Any, sandbox: Any, *, ends_in: timedelta) -> dict[str, Any]:
    """A member whose subscription is live for `ends_in` more."""
    user = await f.member(db, sandbox)
    tariff_id = await f.tariff(db)
    sub = await f.subscription(db, user, tariff_id, ends_in=ends_in)
    return {"user": user, "tariff": tariff_id, "sub": sub}


async def payment_row(db: Any, payment_id: int) -> dict[str, Any]:
    return dict(await db.fetchone("SELECT * FROM payments WHERE id = ?", (payment_id,)))


async def live_subscriptions(db: Any, user: dict[str, Any]) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT * FROM subscriptions WHERE user_id = ? AND status IN ('active', 'grace')",
        (user["id"],),
    )
    return [dict(row) for row in rows]


async def outbox(db: Any, user: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT * FROM outbox WHERE kind = ? AND user_id = ?", (kind, user["id"])
    )
    return [dict(row) for row in rows]


def finalized_total() -> float:
    return sum(
        metric("domos_payments_finalized_total", status=status, source=source)
        for status in ("succeeded", "canceled")
        for source in ("webhook", "poll", "resend")
    )


async def test_a_renewal_paid_through_the_api_with_its_webhook_lost_is_polled_and_extends_once(
    db, sandbox, monitors, api_payments, monitor_environ
):
    member = await live_member(db, sandbox, ends_in=timedelta(days=5))
    user, old = member["user"], member["sub"]
    inside = await f.managed_chat(db, sandbox, title="Клуб агентов")
    await f.join(db, sandbox, user, inside)
    outside = await f.managed_chat(db, sandbox, title="Объявления")
    payment, created = await api_payments.create(
        PaymentCreate(telegram_id=user["telegram_id"], tariff_code="days30"), "renew-1"
    )
    assert created
    assert (payment.kind, payment.status) == ("renewal", "pending")
    await db.execute(
        "UPDATE payments SET created_at = ? WHERE id = ?",
        (utcnow() - timedelta(minutes=15), payment.id),
    )
    paid = await sandbox.control(
        "POST", f"/yookassa/payments/{payment.provider_payment_id}/succeed", {}
    )
    before = metric("domos_payments_finalized_total", status="succeeded", source="poll")
    confirmations = metric("domos_payment_confirmations_total")
    monitor = await monitors(PaymentMonitor)

    await monitor.tick()

    row = await payment_row(db, payment.id)
    assert row["status"] == "succeeded"
    assert (row["processed_at"] is not None, row["confirmed_at"] is not None) == (True, True)
    [sub] = await live_subscriptions(db, user)
    # The live subscription is extended from its end, not replaced.
    assert sub["id"] == old["id"] == row["subscription_id"]
    assert sub["current_period_start"] == old["current_period_end"]
    assert sub["current_period_end"] == old["current_period_end"] + timedelta(days=30)
    assert row["applied_period_end"] == sub["current_period_end"]
    # The receipt carries a way into the chat the member is not in, and only that one.
    [receipt] = await outbox(db, user, "receipt")
    # The receipt's date is the community's (Moscow after 21:00 UTC is already tomorrow).
    tz = Settings.from_env(monitor_environ).timezone
    assert f"{sub['current_period_end'].astimezone(tz):%d.%m.%Y}" in receipt["text"]
    [link] = await sandbox.control(
        "GET", f"/telegram/invite_links?chat_id={outside['telegram_chat_id']}"
    )
    assert link["invite_link"] in receipt["text"]
    assert "Клуб агентов" not in receipt["text"]
    assert (
        await sandbox.control("GET", f"/telegram/invite_links?chat_id={inside['telegram_chat_id']}")
        == []
    )
    assert metric("domos_payments_finalized_total", status="succeeded", source="poll") - before == 1
    assert metric("domos_payment_confirmations_total") - confirmations == 1

    # The webhook arrives after all: the same guard, nothing applied or sent twice.
    event_id = await f.provider_event(db, paid)
    await monitor.tick()
    event = await db.fetchone("SELECT * FROM provider_events WHERE id = ?", (event_id,))
    assert (event["outcome"], event["last_error"]) == ("ignored", "outcome applied before")
    assert [s["current_period_end"] for s in await live_subscriptions(db, user)] == [
        sub["current_period_end"]
    ]
    assert len(await outbox(db, user, "receipt")) == 1


async def test_a_renewal_paid_through_the_bot_is_applied_once_by_webhook_and_poll_together(
    db, sandbox, monitors, slow_yookassa
):
    member = await live_member(db, sandbox, ends_in=timedelta(days=2))
    user, old = member["user"], member["sub"]
    tariff = await db.fetchone("SELECT * FROM tariffs WHERE id = ?", (member["tariff"],))
    link = await request_payment_link(
        db,
        slow_yookassa,
        user_id=user["id"],
        telegram_id=user["telegram_id"],
        tariff=tariff,
        return_url="https://t.me/domos_bot",
        now=utcnow() - timedelta(minutes=30),
    )
    assert link.confirmation_url
    row = await payment_row(db, link.payment_id)
    assert (row["kind"], row["status"], row["subscription_id"]) == ("renewal", "pending", old["id"])
    paid = await sandbox.control(
        "POST", f"/yookassa/payments/{row['provider_payment_id']}/succeed", {}
    )
    await f.provider_event(db, paid)
    before = finalized_total()
    one = await monitors(PaymentMonitor)
    two = await monitors(PaymentMonitor)

    # One replica takes the event, the other polls the payment (its webhook looked lost).
    await asyncio.gather(one.process_events(), two.poll_open())
    await one.tick()
    await two.tick()

    [sub] = await live_subscriptions(db, user)
    assert sub["current_period_end"] == old["current_period_end"] + timedelta(days=30)
    assert finalized_total() - before == 1
    assert len(await outbox(db, user, "receipt")) == 1
    row = await payment_row(db, link.payment_id)
    assert row["status"] == "succeeded"
    assert row["confirmed_at"] is not None
    # The card saved with the payment turns auto-renewal on for the extended subscription.
    assert sub["auto_renew"] is True
    assert sub["next_charge_at"] == sub["current_period_end"] - timedelta(hours=24)


async def test_a_renewal_whose_create_answer_was_lost_is_sent_again(
    db, sandbox, monitors, api_payments
):
    member = await live_member(db, sandbox, ends_in=timedelta(days=5))
    lost = await f.lost_create(
        db,
        sandbox,
        api_payments,
        reached_provider=False,
        age=timedelta(minutes=5),
        user=member["user"],
    )
    assert lost["kind"] == "renewal"
    recorded_before = metric("domos_unsent_payments_total", outcome="recorded")
    monitor = await monitors(PaymentMonitor)

    assert await monitor.resend_unsent() == 1

    [made] = await f.at_provider(sandbox, lost["id"])
    row = await payment_row(db, lost["id"])
    assert (row["provider_payment_id"], row["status"]) == (made["id"], "pending")
    assert metric("domos_unsent_payments_total", outcome="recorded") - recorded_before == 1


async def test_recurrent_payments_own_charges_are_never_handled_here(
    db, sandbox, monitors, slow_yookassa
):
    method = await sandbox.control("POST", "/yookassa/payment_methods", {})
    member = await live_member(db, sandbox, ends_in=timedelta(hours=2))
    user, old = member["user"], member["sub"]
    method_id = await db.fetchval(
        "INSERT INTO payment_methods (provider_method_id, user_id, method_type, is_saved)"
        " VALUES (?, ?, 'bank_card', ?) RETURNING id",
        (method["id"], user["id"], True),
    )
    await db.execute(
        "UPDATE subscriptions SET auto_renew = ?, payment_method_id = ? WHERE id = ?",
        (True, method_id, old["id"]),
    )
    recurrent = await monitors(RecurrentPayments)
    normal = recurrent.yookassa
    # The charge reaches YooKassa (and succeeds there); its answer is lost: a `created` renewal
    # without a provider id.
    await sandbox.control(
        "POST", "/faults", {"api": "yookassa", "mode": "timeout", "delay_s": 1.0, "count": 1}
    )
    recurrent.yookassa = slow_yookassa
    try:
        assert await recurrent.tick() == 1
    finally:
        recurrent.yookassa = normal
    charge = await db.fetchone(
        "SELECT p.* FROM payments p JOIN charge_attempts ca ON ca.payment_id = p.id"
        " WHERE p.subscription_id = ?",
        (old["id"],),
    )
    assert (charge["kind"], charge["status"], charge["provider_payment_id"]) == (
        "renewal",
        "created",
        None,
    )
    await db.execute(
        "UPDATE payments SET created_at = ? WHERE id = ?",
        (utcnow() - timedelta(hours=1), charge["id"]),
    )
    [made] = [
        p
        for p in await sandbox.control("GET", "/yookassa/payments")
        if p["metadata"].get("subscription_id") == str(old["id"])
    ]
    assert made["status"] == "succeeded"
    event_id = await f.provider_event(db, made)
    payment_monitor = await monitors(PaymentMonitor)

    # Old enough to resend and to poll, and its webhook is in: still none of payment_monitor's.
    assert await payment_monitor.resend_unsent() == 0
    assert await payment_monitor.poll_open() == 0
    assert await payment_monitor.process_events() == 1
    event = await db.fetchone("SELECT * FROM provider_events WHERE id = ?", (event_id,))
    assert (event["outcome"], event["last_error"]) == (
        "ignored",
        "renewal charges are reconciled by recurrent_payments",
    )
    assert (await payment_row(db, charge["id"]))["provider_payment_id"] is None

    # recurrent_payments repeats its key, gets that payment back, and applies it once.
    await recurrent.tick()
    row = await payment_row(db, charge["id"])
    assert (row["provider_payment_id"], row["status"]) == (made["id"], "succeeded")
    assert row["confirmed_at"] is not None
    [sub] = await live_subscriptions(db, user)
    assert sub["current_period_end"] == old["current_period_end"] + timedelta(days=30)
    assert await payment_monitor.tick() == 0
    assert await outbox(db, user, "receipt") == []
    assert len(await outbox(db, user, "renewal_receipt")) == 1
    assert [
        p["id"]
        for p in await sandbox.control("GET", "/yookassa/payments")
        if p["metadata"].get("subscription_id") == str(old["id"])
    ] == [made["id"]]


async def test_a_status_final_in_the_first_answer_is_fetched_and_applied(db, sandbox, monitors):
    user = await f.member(db, sandbox)
    tariff_id = await f.tariff(db)
    provider = await f.provider_payment(sandbox)
    # The API records the status YooKassa answered with; a final one still has to be applied.
    payment_id = await f.local_payment(db, user, tariff_id, provider, age=timedelta(seconds=5))
    await db.execute(
        "UPDATE payments SET status = 'succeeded', paid_at = ? WHERE id = ?", (utcnow(), payment_id)
    )
    monitor = await monitors(PaymentMonitor)

    # What was stored is not trusted: the provider still says pending, so nothing is applied.
    assert await monitor.poll_open() == 1
    row = await payment_row(db, payment_id)
    assert (row["status"], row["processed_at"]) == ("pending", None)
    assert await live_subscriptions(db, user) == []

    await sandbox.control("POST", f"/yookassa/payments/{provider['id']}/succeed", {})
    await db.execute(
        "UPDATE payments SET status = 'succeeded', next_check_at = NULL WHERE id = ?",
        (payment_id,),
    )
    before = metric("domos_payments_finalized_total", status="succeeded", source="poll")
    assert await monitor.poll_open() == 1
    row = await payment_row(db, payment_id)
    assert row["processed_at"] is not None
    assert len(await live_subscriptions(db, user)) == 1
    assert metric("domos_payments_finalized_total", status="succeeded", source="poll") - before == 1
    assert await monitor.poll_open() == 0


async def test_polling_goes_on_past_its_schedule_until_the_payment_is_final(db, sandbox, monitors):
    user = await f.member(db, sandbox)
    tariff_id = await f.tariff(db)
    provider = await f.provider_payment(sandbox)
    payment_id = await f.local_payment(db, user, tariff_id, provider, age=timedelta(days=2))
    # The schedule (about a day of polls) is used up.
    await db.execute(
        "UPDATE payments SET check_attempts = 30, next_check_at = ? WHERE id = ?",
        (utcnow(), payment_id),
    )
    monitor = await monitors(PaymentMonitor)

    assert await monitor.poll_open() == 1
    row = await payment_row(db, payment_id)
    assert row["check_attempts"] == 31
    assert "fetched hourly until final" in row["last_error"]
    assert utcnow() + timedelta(minutes=59) < row["next_check_at"] <= utcnow() + timedelta(hours=1)

    await sandbox.control(
        "POST", f"/yookassa/payments/{provider['id']}/cancel", {"reason": "expired_on_confirmation"}
    )
    await db.execute("UPDATE payments SET next_check_at = ? WHERE id = ?", (utcnow(), payment_id))
    assert await monitor.poll_open() == 1
    row = await payment_row(db, payment_id)
    assert (row["status"], row["cancellation_reason"]) == ("canceled", "expired_on_confirmation")
    assert row["processed_at"] is not None


@pytest.mark.parametrize("producer", ["api", "bot"])
async def test_a_request_the_provider_refuses_is_final_at_once(
    db, sandbox, monitors, api_payments, producer
):
    user = await f.member(db, sandbox)
    # A description longer than YooKassa takes (128): the request is refused, nothing is made.
    tariff_id = await db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days)"
        " VALUES ('bad', ?, 1000, 30) RETURNING id",
        ("Очень длинное название " * 8,),
    )
    if producer == "api":
        payment, _ = await api_payments.create(
            PaymentCreate(telegram_id=user["telegram_id"], tariff_code="bad"), "refused-1"
        )
        payment_id = payment.id
    else:
        tariff = await db.fetchone("SELECT * FROM tariffs WHERE id = ?", (tariff_id,))
        link = await request_payment_link(
            db,
            api_payments.yookassa,
            user_id=user["id"],
            telegram_id=user["telegram_id"],
            tariff=tariff,
            return_url="https://t.me/domos_bot",
            now=utcnow(),
        )
        assert link.rejected
        payment_id = link.payment_id
    await db.execute(
        "UPDATE payments SET created_at = ? WHERE id = ?",
        (utcnow() - timedelta(hours=1), payment_id),
    )
    row = await payment_row(db, payment_id)
    assert (row["status"], row["provider_payment_id"]) == ("canceled", None)
    # Nothing exists at the provider and nothing is to be applied: no monitor owns it any more.
    assert row["processed_at"] is not None
    monitor = await monitors(PaymentMonitor)
    assert await monitor.tick() == 0
    assert await outbox(db, user, "payment_canceled") == []
