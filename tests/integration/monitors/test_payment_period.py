"""A payment buys the period it was offered with, whatever the tariff says when it is applied.

The reproduction: a 30-day tariff, a payment made for it (YooKassa's description «на 30 дн.»),
then an admin edits the tariff (`UPDATE tariffs SET period_days = 365`, or down to 7), then the
payment succeeds and payment_monitor applies it. Before main/0010 the subscription ran for the
tariff's new period (a year for the price of a month, or a week for it); now for the 30 days
stored on the payment when it was created. The same for the API's checkout, the bot's
/subscribe and recurrent_payments' renewal charges. A payment made before main/0010
(`period_days` NULL) still buys its tariff's period as read when it is applied. Both backends,
against the sandbox.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from monitors.payment_monitor import PaymentMonitor
from monitors.recurrent_payments import RecurrentPayments
from services.api.models import PaymentCreate
from services.bot.payments import request_payment_link
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import utcnow

#: An admin's edit after the payment was offered: longer (the member would get a year for a
#: month's price) and shorter (the member would lose most of what they paid for).
EDITS = pytest.mark.parametrize("edited_days", [365, 7], ids=["lengthened", "shortened"])


async def edit_tariff(db: Any, tariff_id: int, days: int) -> None:
    await db.execute("UPDATE tariffs SET period_days = ? WHERE id = ?", (days, tariff_id))


async def payment_row(db: Any, payment_id: int) -> dict[str, Any]:
    return dict(await db.fetchone("SELECT * FROM payments WHERE id = ?", (payment_id,)))


async def subscription_of(db: Any, user: dict[str, Any]) -> dict[str, Any]:
    [row] = await db.fetchall("SELECT * FROM subscriptions WHERE user_id = ?", (user["id"],))
    return dict(row)


async def succeed_and_apply(db: Any, sandbox: Any, monitors: Any, payment_id: int) -> None:
    """YooKassa says the payment succeeded (its notification stored, as botapi does), and
    payment_monitor applies it."""
    row = await payment_row(db, payment_id)
    paid = await sandbox.control(
        "POST", f"/yookassa/payments/{row['provider_payment_id']}/succeed", {}
    )
    await f.provider_event(db, paid)
    monitor = await monitors(PaymentMonitor)
    await monitor.tick()
    assert (await payment_row(db, payment_id))["processed_at"] is not None


async def offered_description(sandbox: Any, payment_id: int) -> str:
    [provider] = await f.at_provider(sandbox, payment_id)
    return str(provider["description"])


async def bot_link(db: Any, api_payments: Any, user: dict[str, Any], tariff_id: int) -> Any:
    """The bot's /subscribe for `user`: its payment link of the tariff as it is now."""
    tariff = await db.fetchone("SELECT * FROM tariffs WHERE id = ?", (tariff_id,))
    return await request_payment_link(
        db,
        api_payments.yookassa,
        user_id=user["id"],
        telegram_id=user["telegram_id"],
        tariff=tariff,
        return_url="https://t.me/domos_bot",
        now=utcnow(),
    )


def period_days(sub: dict[str, Any]) -> timedelta:
    return sub["current_period_end"] - sub["current_period_start"]


@EDITS
async def test_an_api_payment_buys_the_days_it_was_offered_for(
    db, sandbox, monitors, api_payments, edited_days
):
    user = await f.member(db, sandbox)
    tariff_id = await f.tariff(db, days=30)
    payment, created = await api_payments.create(
        PaymentCreate(telegram_id=user["telegram_id"], tariff_code="days30"), "period-api"
    )
    assert created
    assert "на 30 дн." in await offered_description(sandbox, payment.id)
    assert (await payment_row(db, payment.id))["period_days"] == 30

    await edit_tariff(db, tariff_id, edited_days)
    await succeed_and_apply(db, sandbox, monitors, payment.id)

    sub = await subscription_of(db, user)
    assert sub["status"] == "active"
    assert period_days(sub) == timedelta(days=30)
    assert (await payment_row(db, payment.id))["applied_period_end"] == sub["current_period_end"]


@EDITS
async def test_a_bot_payment_buys_the_days_it_was_offered_for(
    db, sandbox, monitors, api_payments, edited_days
):
    user = await f.member(db, sandbox)
    tariff_id = await f.tariff(db, days=30)
    link = await bot_link(db, api_payments, user, tariff_id)
    assert link.confirmation_url
    assert "на 30 дн." in await offered_description(sandbox, link.payment_id)

    await edit_tariff(db, tariff_id, edited_days)
    await succeed_and_apply(db, sandbox, monitors, link.payment_id)

    sub = await subscription_of(db, user)
    assert period_days(sub) == timedelta(days=30)


@EDITS
async def test_a_renewal_paid_by_hand_extends_by_the_days_offered(
    db, sandbox, monitors, api_payments, edited_days
):
    """A live member pays by hand (the API): the period continues from the live end, by 30."""
    user = await f.member(db, sandbox)
    tariff_id = await f.tariff(db, days=30)
    old = await f.subscription(db, user, tariff_id, ends_in=timedelta(days=5))
    payment, _ = await api_payments.create(
        PaymentCreate(telegram_id=user["telegram_id"], tariff_code="days30"), "period-renew"
    )
    assert payment.kind == "renewal"

    await edit_tariff(db, tariff_id, edited_days)
    await succeed_and_apply(db, sandbox, monitors, payment.id)

    sub = await subscription_of(db, user)
    assert sub["current_period_start"] == old["current_period_end"]
    assert sub["current_period_end"] == old["current_period_end"] + timedelta(days=30)


async def saved_card_subscription(db: Any, sandbox: Any, tariff_id: int) -> dict[str, Any]:
    """A live member whose period ends in two hours, auto-renewing with a saved card."""
    user = await f.member(db, sandbox)
    method = await sandbox.control("POST", "/yookassa/payment_methods", {})
    method_id = await db.fetchval(
        "INSERT INTO payment_methods (provider_method_id, user_id, method_type, is_saved)"
        " VALUES (?, ?, 'bank_card', ?) RETURNING id",
        (method["id"], user["id"], True),
    )
    sub = await f.subscription(db, user, tariff_id, ends_in=timedelta(hours=2), auto_renew=True)
    await db.execute(
        "UPDATE subscriptions SET payment_method_id = ? WHERE id = ?", (method_id, sub["id"])
    )
    return sub


@EDITS
async def test_a_renewal_charge_buys_the_period_it_was_planned_for(
    db, sandbox, monitors, edited_days
):
    tariff_id = await f.tariff(db, days=30)
    sub = await saved_card_subscription(db, sandbox, tariff_id)
    monitor = await monitors(RecurrentPayments)
    assert await monitor.plan_due() == 1  # the charge, its key and its period committed
    payment = await db.fetchone("SELECT * FROM payments WHERE subscription_id = ?", (sub["id"],))
    assert (payment["kind"], payment["period_days"]) == ("renewal", 30)

    await edit_tariff(db, tariff_id, edited_days)
    assert await monitor.execute_open() == 1

    row = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert row["current_period_start"] == sub["current_period_end"]
    assert row["current_period_end"] == sub["current_period_end"] + timedelta(days=30)
    charged = await payment_row(db, payment["id"])
    assert (charged["status"], charged["applied_period_end"]) == (
        "succeeded",
        row["current_period_end"],
    )
    # The next charge is due a day before the end of the period bought.
    assert row["next_charge_at"] == row["current_period_end"] - timedelta(hours=24)


async def test_a_renewal_charge_planned_after_the_edit_buys_the_new_period(db, sandbox, monitors):
    tariff_id = await f.tariff(db, days=30)
    sub = await saved_card_subscription(db, sandbox, tariff_id)
    await edit_tariff(db, tariff_id, 365)
    monitor = await monitors(RecurrentPayments)
    assert await monitor.tick() == 2  # planned, then charged

    row = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert row["current_period_end"] == sub["current_period_end"] + timedelta(days=365)


async def test_a_payment_from_before_the_migration_buys_the_tariffs_period(db, sandbox, monitors):
    """`period_days` NULL (committed by code before main/0010): the tariff's period as it is
    when the payment is applied, as before."""
    user = await f.member(db, sandbox)
    tariff_id = await f.tariff(db, days=30)
    provider = await f.provider_payment(sandbox)
    payment_id = await f.local_payment(db, user, tariff_id, provider)
    assert (await payment_row(db, payment_id))["period_days"] is None

    await edit_tariff(db, tariff_id, 60)
    await succeed_and_apply(db, sandbox, monitors, payment_id)

    assert period_days(await subscription_of(db, user)) == timedelta(days=60)


async def test_a_renewal_charge_from_before_the_migration_buys_the_tariffs_period(
    db, sandbox, monitors
):
    tariff_id = await f.tariff(db, days=30)
    sub = await saved_card_subscription(db, sandbox, tariff_id)
    monitor = await monitors(RecurrentPayments)
    assert await monitor.plan_due() == 1
    # As the code before main/0010 committed it.
    await db.execute(
        "UPDATE payments SET period_days = NULL WHERE subscription_id = ?", (sub["id"],)
    )

    await edit_tariff(db, tariff_id, 60)
    assert await monitor.execute_open() == 1

    row = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert row["current_period_end"] == sub["current_period_end"] + timedelta(days=60)


@pytest.mark.parametrize("path", ["api", "bot"])
async def test_an_open_payment_is_not_offered_again_on_the_tariffs_new_terms(
    db, sandbox, api_payments, path
):
    """After the edit the member asks again: a new payment for the new period, not the open
    one of 30 days presented as the tariff's new offer. The open one still buys its 30 days."""
    user = await f.member(db, sandbox)
    tariff_id = await f.tariff(db, days=30)

    async def pay(attempt: int) -> int:
        if path == "api":
            payment, _ = await api_payments.create(
                PaymentCreate(telegram_id=user["telegram_id"], tariff_code="days30"),
                f"tap-{attempt}",
            )
            return payment.id
        link = await bot_link(db, api_payments, user, tariff_id)
        return link.payment_id

    first = await pay(1)
    assert await pay(2) == first  # unchanged tariff: the open payment is offered again
    await edit_tariff(db, tariff_id, 365)
    second = await pay(3)
    assert second != first
    assert (await payment_row(db, first))["period_days"] == 30
    assert (await payment_row(db, second))["period_days"] == 365
    assert "на 365 дн." in await offered_description(sandbox, second)
