"""Refunds: a full refund of the period a member has ends it as an expiry does (the member is
told and removed from the paid chats by ban_monitor); a partial refund is recorded and counted;
a refund the provider does not know changes nothing.

The refunds are made at the sandbox (control API, as from YooKassa's dashboard); the events
are what botapi records for the `refund.succeeded` notification.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from monitors.ban_monitor import BanMonitor
from monitors.payment_monitor import PaymentMonitor
from monitors.payment_stages.refund_sweep import RETRY_AFTER, SWEEP_EVERY
from monitors.recurrent_payments import RecurrentPayments
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import metric, utcnow
from tests.integration.monitors.test_payment_monitor import setup_purchase
from tests.integration.monitors.test_recurrent_payments import due_subscription, provider_payments

MOSCOW = ZoneInfo("Europe/Moscow")


async def paid_member(db: Any, sandbox: Any, monitor: Any) -> dict[str, Any]:
    """A member who paid (webhook applied) and is in the paid chat."""
    buy = await setup_purchase(db, sandbox, age=timedelta(seconds=5))
    await f.join(db, sandbox, buy["user"], buy["chat"])
    paid = await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/succeed", {})
    await f.provider_event(db, paid)
    await monitor.tick()
    buy["subscription"] = await live_subscription(db, buy["user"])
    assert buy["subscription"] is not None
    return buy


async def live_subscription(db: Any, user: dict[str, Any]) -> dict[str, Any] | None:
    row = await db.fetchone(
        "SELECT * FROM subscriptions WHERE user_id = ? AND status IN ('active', 'grace')",
        (user["id"],),
    )
    return dict(row) if row is not None else None


async def refund(sandbox: Any, db: Any, buy: dict[str, Any], amount: str | None = None) -> Any:
    body = {} if amount is None else {"amount": amount}
    made = await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/refund", body)
    await f.provider_event(db, made, "refund.succeeded")
    return made


async def refunds_of(db: Any, payment_id: int) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT * FROM refunds WHERE payment_id = ? ORDER BY id", (payment_id,)
    )
    return [dict(row) for row in rows]


def refunds(kind: str) -> float:
    return metric("domos_refunds_total", kind=kind)


async def test_a_full_refund_ends_the_period_tells_the_member_and_removes_them(
    db, sandbox, monitors
):
    monitor = await monitors(PaymentMonitor)
    buy = await paid_member(db, sandbox, monitor)
    full_before = refunds("full")
    made = await refund(sandbox, db, buy)

    await monitor.tick()

    [row] = await refunds_of(db, buy["id"])
    assert (row["provider_refund_id"], row["amount_minor"]) == (made["id"], 99000)
    assert (row["kind"], row["effect"]) == ("full", "access_ended")
    assert row["subscription_id"] == buy["subscription"]["id"]
    assert await live_subscription(db, buy["user"]) is None
    sub = await db.fetchone(
        "SELECT * FROM subscriptions WHERE id = ?", (buy["subscription"]["id"],)
    )
    assert (sub["status"], sub["auto_renew"]) == ("expired", False)
    assert sub["auto_renew_stopped_reason"] == "refunded"
    assert sub["expired_at"] is not None
    [notice] = await db.fetchall(
        "SELECT * FROM outbox WHERE kind = 'refund' AND user_id = ?", (buy["user"]["id"],)
    )
    assert notice["chat_id"] == buy["user"]["telegram_id"]
    assert "990 ₽" in notice["text"]
    assert "возвращена" in notice["text"]
    event = await db.fetchone("SELECT * FROM provider_events WHERE event_type = 'refund.succeeded'")
    assert event["outcome"] == "applied"
    assert refunds("full") - full_before == 1

    # Access ends by the path of any expiry: ban_monitor removes the member from the paid chat.
    assert await f.chat_status(sandbox, buy["chat"], buy["user"]) == "member"
    bans = await monitors(BanMonitor)
    await bans.tick()
    assert await f.chat_status(sandbox, buy["chat"], buy["user"]) == "kicked"

    # Told once, recorded once: the event again changes nothing.
    await db.execute("UPDATE provider_events SET processed_at = NULL, outcome = NULL")
    await monitor.tick()
    assert len(await refunds_of(db, buy["id"])) == 1
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE kind = 'refund'") == 1
    assert refunds("full") - full_before == 1


async def test_a_partial_refund_is_recorded_and_counted_and_access_stays(db, sandbox, monitors):
    monitor = await monitors(PaymentMonitor)
    buy = await paid_member(db, sandbox, monitor)
    partial_before = refunds("partial")
    await refund(sandbox, db, buy, "100.00")

    await monitor.tick()

    [row] = await refunds_of(db, buy["id"])
    assert (row["amount_minor"], row["kind"], row["effect"]) == (10000, "partial", "none")
    assert row["subscription_id"] is None
    assert refunds("partial") - partial_before == 1
    assert await live_subscription(db, buy["user"]) == buy["subscription"]
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE kind = 'refund'") == 0
    await (await monitors(BanMonitor)).tick()
    assert await f.chat_status(sandbox, buy["chat"], buy["user"]) == "member"

    # The rest refunded later: the two together are the whole payment, and the period ends.
    await refund(sandbox, db, buy)
    await monitor.tick()
    assert [(r["kind"], r["effect"]) for r in await refunds_of(db, buy["id"])] == [
        ("partial", "none"),
        ("full", "access_ended"),
    ]
    assert await live_subscription(db, buy["user"]) is None


async def paid_twice(
    db: Any, sandbox: Any, monitor: Any, *, second_days: int = 30
) -> tuple[dict[str, Any], ...]:
    """A paid member who paid again at once, by hand (for `second_days`): the second period
    follows the first."""
    first = await paid_member(db, sandbox, monitor)
    provider = await f.provider_payment(sandbox)
    tariff = first["tariff"] if second_days == 30 else await f.tariff(db, days=second_days)
    payment_id = await f.local_payment(
        db, first["user"], tariff, provider, age=timedelta(seconds=5)
    )
    second = {**first, "provider": provider, "id": payment_id}
    paid = await sandbox.control("POST", f"/yookassa/payments/{provider['id']}/succeed", {})
    await f.provider_event(db, paid)
    await monitor.tick()
    sub = await live_subscription(db, first["user"])
    assert sub is not None
    assert sub["current_period_end"] == first["subscription"]["current_period_end"] + timedelta(
        days=second_days
    )
    return first, second, sub


async def test_a_refunded_payment_a_later_one_extended_gives_its_days_back(db, sandbox, monitors):
    """Both payments refunded, no access left: the first refund takes its 30 days off the end
    (the second period moves back), the second then ends the subscription."""
    monitor = await monitors(PaymentMonitor)
    first, second, sub = await paid_twice(db, sandbox, monitor)
    first_end = first["subscription"]["current_period_end"]

    await refund(sandbox, db, first)
    await monitor.tick()

    [row] = await refunds_of(db, first["id"])
    assert (row["kind"], row["effect"], row["subscription_id"]) == (
        "full",
        "access_ended",
        sub["id"],
    )
    after = await live_subscription(db, first["user"])
    assert after is not None
    assert (after["current_period_start"], after["current_period_end"]) == (
        first["subscription"]["current_period_start"],
        first_end,
    )
    assert (after["auto_renew"], after["auto_renew_stopped_reason"]) == (False, "refunded")
    moved = await db.fetchone("SELECT * FROM payments WHERE id = ?", (second["id"],))
    assert moved["applied_period_end"] == first_end
    [notice] = await db.fetchall("SELECT * FROM outbox WHERE kind = 'refund'")
    assert "оплаченный ею срок снят" in notice["text"]
    assert first_end.astimezone(MOSCOW).strftime("%d.%m.%Y") in notice["text"]
    await (await monitors(BanMonitor)).tick()
    assert await f.chat_status(sandbox, first["chat"], first["user"]) == "member"

    await refund(sandbox, db, second)
    await monitor.tick()

    assert [(r["kind"], r["effect"]) for r in await refunds_of(db, second["id"])] == [
        ("full", "access_ended")
    ]
    assert await live_subscription(db, first["user"]) is None
    await (await monitors(BanMonitor)).tick()
    assert await f.chat_status(sandbox, first["chat"], first["user"]) == "kicked"


async def test_days_taken_back_past_the_days_left_end_the_subscription(db, sandbox, monitors):
    """30 days paid, then 7 more; 29 days on, the 30 are refunded: the 7 paid are used up, so
    the subscription ends at once."""
    monitor = await monitors(PaymentMonitor)
    first, _, sub = await paid_twice(db, sandbox, monitor, second_days=7)
    passed = timedelta(days=29)  # as if 29 days had passed: every instant moved back
    await db.execute(
        "UPDATE subscriptions SET current_period_start = ?, current_period_end = ? WHERE id = ?",
        (sub["current_period_start"] - passed, sub["current_period_end"] - passed, sub["id"]),
    )
    for row in await db.fetchall(
        "SELECT id, applied_period_end, prior_period_start FROM payments WHERE subscription_id = ?",
        (sub["id"],),
    ):
        prior = row["prior_period_start"]
        await db.execute(
            "UPDATE payments SET applied_period_end = ?, prior_period_start = ? WHERE id = ?",
            (row["applied_period_end"] - passed, prior and prior - passed, row["id"]),
        )

    await refund(sandbox, db, first)
    await monitor.tick()

    ended = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert (ended["status"], ended["auto_renew"]) == ("expired", False)
    assert ended["expired_at"] is not None
    [notice] = await db.fetchall("SELECT * FROM outbox WHERE kind = 'refund'")
    assert "доступ к чатам сообщества закрыт" in notice["text"]


async def test_a_refunded_period_that_is_over_leaves_the_later_one(db, sandbox, monitors):
    """The member had the refunded payment's period: the period paid later stands."""
    monitor = await monitors(PaymentMonitor)
    first, _, sub = await paid_twice(db, sandbox, monitor)
    # As if the first period had run out and the second begun.
    await db.execute(
        "UPDATE payments SET applied_period_end = ? WHERE id = ?",
        (utcnow() - timedelta(minutes=1), first["id"]),
    )

    await refund(sandbox, db, first)
    await monitor.tick()

    [row] = await refunds_of(db, first["id"])
    assert (row["kind"], row["effect"]) == ("full", "none")
    assert await live_subscription(db, first["user"]) == sub
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE kind = 'refund'") == 0


async def test_a_refund_the_provider_does_not_know_changes_nothing(db, sandbox, monitors):
    monitor = await monitors(PaymentMonitor)
    buy = await paid_member(db, sandbox, monitor)
    # A forged notification recorded as if it were real (botapi would refuse it): its body
    # names our payment and the whole amount, but the provider has no such refund.
    forged = {
        "id": "00000099-0015-5000-9000-000000000099",
        "payment_id": buy["provider"]["id"],
        "status": "succeeded",
        "amount": {"value": "990.00", "currency": "RUB"},
    }
    event_id = await f.provider_event(db, forged, "refund.succeeded")

    await monitor.tick()

    event = await db.fetchone("SELECT * FROM provider_events WHERE id = ?", (event_id,))
    assert (event["outcome"], event["last_error"]) == (
        "ignored",
        "the provider does not know this refund",
    )
    assert await refunds_of(db, buy["id"]) == []
    assert await live_subscription(db, buy["user"]) == buy["subscription"]
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE kind = 'refund'") == 0


async def refund_the_renewal(db: Any, sandbox: Any, monitors: Any, sub: dict[str, Any]) -> None:
    """Charge the due subscription's card, then refund that charge whole at the provider."""
    await (await monitors(RecurrentPayments)).tick()
    [charged] = await provider_payments(sandbox, sub["method"])
    renewed = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert renewed["current_period_end"] == sub["end"] + timedelta(days=30)
    made = await sandbox.control("POST", f"/yookassa/payments/{charged['id']}/refund", {})
    await f.provider_event(db, made, "refund.succeeded")
    await (await monitors(PaymentMonitor)).tick()
    [row] = await db.fetchall("SELECT * FROM refunds")
    assert (row["kind"], row["effect"], row["subscription_id"]) == (
        "full",
        "access_ended",
        sub["id"],
    )


async def test_a_renewal_refunded_before_its_period_begins_leaves_the_period_paid_before(
    db, sandbox, monitors
):
    # The card is charged ahead of the period's end: two hours of the paid period are left.
    sub = await due_subscription(db, sandbox, ends_in=timedelta(hours=2))
    await refund_the_renewal(db, sandbox, monitors, sub)

    after = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert after["status"] == "active"
    assert (after["current_period_start"], after["current_period_end"]) == (
        sub["end"] - timedelta(days=30),
        sub["end"],
    )
    assert (after["auto_renew"], after["auto_renew_stopped_reason"], after["next_charge_at"]) == (
        False,
        "refunded",
        None,
    )
    [notice] = await db.fetchall("SELECT * FROM outbox WHERE kind = 'refund'")
    assert "продление отменено" in notice["text"]
    assert sub["end"].astimezone(MOSCOW).strftime("%d.%m.%Y") in notice["text"]
    # Not charged again for the period it gave back: auto-renewal is off.
    await (await monitors(RecurrentPayments)).tick()
    assert len(await provider_payments(sandbox, sub["method"])) == 1


async def test_a_renewal_refunded_once_its_period_began_ends_the_subscription(
    db, sandbox, monitors
):
    # Charged an hour after the period ended (still active: tsmonitor has not moved it yet).
    sub = await due_subscription(db, sandbox, ends_in=-timedelta(hours=1))
    await refund_the_renewal(db, sandbox, monitors, sub)

    ended = await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub["id"],))
    assert (ended["status"], ended["auto_renew"]) == ("expired", False)
    [notice] = await db.fetchall("SELECT * FROM outbox WHERE kind = 'refund'")
    assert "доступ к чатам сообщества закрыт" in notice["text"]


async def test_a_refund_waits_for_its_payment_to_be_applied(db, sandbox, monitors):
    buy = await setup_purchase(db, sandbox, age=timedelta(seconds=5))
    await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/succeed", {})
    # Refunded before payment_monitor applied the success (its notification not in yet).
    await refund(sandbox, db, buy)
    monitor = await monitors(PaymentMonitor)

    await monitor.process_events()

    event = await db.fetchone("SELECT * FROM provider_events")
    assert (event["processed_at"], event["last_error"]) == (
        None,
        f"payment {buy['id']} is not applied yet",
    )
    assert await refunds_of(db, buy["id"]) == []


async def test_a_refund_whose_notification_never_came_is_found_by_the_sweep(db, sandbox, monitors):
    """YooKassa repeats a notification for 24 hours; a refund whose notification never arrived
    (botapi down for a day) is found by the sweep of the provider's refunds and recorded once,
    and the notification arriving after all changes nothing."""
    monitor = await monitors(PaymentMonitor)
    buy = await paid_member(db, sandbox, monitor)  # its tick swept once
    full_before = refunds("full")
    made = await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/refund", {})

    await monitor.tick()  # the last sweep is too recent
    assert await refunds_of(db, buy["id"]) == []
    monitor.refund_sweep.swept_at -= SWEEP_EVERY  # half an hour later
    await monitor.tick()

    [row] = await refunds_of(db, buy["id"])
    assert (row["provider_refund_id"], row["kind"], row["effect"]) == (
        made["id"],
        "full",
        "access_ended",
    )
    assert await live_subscription(db, buy["user"]) is None
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE kind = 'refund'") == 1
    assert refunds("full") - full_before == 1

    await f.provider_event(db, made, "refund.succeeded")
    monitor.refund_sweep.swept_at -= SWEEP_EVERY
    await monitor.tick()
    assert len(await refunds_of(db, buy["id"])) == 1
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE kind = 'refund'") == 1
    assert refunds("full") - full_before == 1


async def test_a_sweep_whose_listing_fails_tries_again_minutes_later(db, sandbox, monitors):
    """A 500 from GET /v3/refunds leaves the refund for the next try, RETRY_AFTER later rather
    than on every tick; that try records it."""
    monitor = await monitors(PaymentMonitor)
    buy = await paid_member(db, sandbox, monitor)
    made = await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/refund", {})
    monitor.refund_sweep.swept_at = None  # as after a restart
    await sandbox.control("POST", "/faults", {"api": "yookassa", "mode": "500", "count": 1})
    assert await monitor.sweep_refunds() == 0
    assert await monitor.sweep_refunds() == 0  # not listed again at once
    assert await refunds_of(db, buy["id"]) == []
    monitor.refund_sweep.swept_at -= RETRY_AFTER
    assert await monitor.sweep_refunds() == 1
    [row] = await refunds_of(db, buy["id"])
    assert row["provider_refund_id"] == made["id"]
