from __future__ import annotations

from datetime import timedelta
from typing import Any

from monitors.payment_monitor import PaymentMonitor
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import metric, utcnow


async def setup_purchase(db: Any, sandbox: Any, **kwargs: Any) -> dict[str, Any]:
    user = await f.member(db, sandbox)
    tariff_id = await f.tariff(db)
    chat = await f.managed_chat(db, sandbox)
    provider = await f.provider_payment(sandbox)
    payment_id = await f.local_payment(db, user, tariff_id, provider, **kwargs)
    return {"user": user, "tariff": tariff_id, "chat": chat, "provider": provider, "id": payment_id}


async def payment_row(db: Any, payment_id: int) -> dict[str, Any]:
    return dict(await db.fetchone("SELECT * FROM payments WHERE id = ?", (payment_id,)))


async def live_subscriptions(db: Any, user: dict[str, Any]) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT * FROM subscriptions WHERE user_id = ? AND status IN ('active', 'grace')",
        (user["id"],),
    )
    return [dict(row) for row in rows]


async def receipts(db: Any, user: dict[str, Any]) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT * FROM outbox WHERE kind = 'receipt' AND user_id = ?", (user["id"],)
    )
    return [dict(row) for row in rows]


async def test_a_lost_webhook_is_finalized_by_polling_with_backoff(db, sandbox, monitors):
    buy = await setup_purchase(db, sandbox)
    before = metric("domos_payments_finalized_total", status="succeeded", source="poll")
    monitor = await monitors(PaymentMonitor)

    assert await monitor.tick() == 1  # polled: still pending at the provider
    row = await payment_row(db, buy["id"])
    assert (row["status"], row["check_attempts"], row["processed_at"]) == ("pending", 1, None)
    assert row["next_check_at"] > utcnow() + timedelta(seconds=50)
    assert await monitor.tick() == 0  # the next check is not due yet

    await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/succeed", {})
    await db.execute("UPDATE payments SET next_check_at = ? WHERE id = ?", (utcnow(), buy["id"]))
    await monitor.tick()

    row = await payment_row(db, buy["id"])
    assert row["status"] == "succeeded"
    assert row["processed_at"]
    assert row["confirmed_at"]
    [sub] = await live_subscriptions(db, buy["user"])
    assert sub["id"] == row["subscription_id"]
    assert sub["current_period_end"] - sub["current_period_start"] == timedelta(days=30)
    assert row["applied_period_end"] == sub["current_period_end"]
    # The card was saved with the payment: auto-renewal is on, charged a day before the end.
    assert sub["auto_renew"] is True
    assert sub["payment_method_id"] is not None
    assert sub["next_charge_at"] == sub["current_period_end"] - timedelta(hours=24)

    links = await sandbox.control(
        "GET", f"/telegram/invite_links?chat_id={buy['chat']['telegram_chat_id']}"
    )
    # A join request, which the bot decides: a limit of one member admits whoever comes first.
    assert [(link["creates_join_request"], "member_limit" in link) for link in links] == [
        (True, False)
    ]
    [receipt] = await receipts(db, buy["user"])
    assert links[0]["invite_link"] in receipt["text"]
    assert "отправьте заявку на вступление" in receipt["text"]  # what the link does
    assert receipt["chat_id"] == buy["user"]["telegram_id"]
    assert metric("domos_payments_finalized_total", status="succeeded", source="poll") - before == 1

    # Following the link asks to join (the bot's to decide: tests/acceptance/e2e).
    followed = await sandbox.control(
        "POST",
        "/telegram/invite_links/join",
        {"user_id": buy["user"]["telegram_id"], "invite_link": links[0]["invite_link"]},
    )
    assert followed["join_request"]["from"]["id"] == buy["user"]["telegram_id"]
    assert await monitor.tick() == 0


async def test_each_event_is_processed_once_and_applied_once(db, sandbox, monitors):
    buy = await setup_purchase(db, sandbox, age=timedelta(seconds=5))
    paid = await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/succeed", {})
    first = await f.provider_event(db, paid)
    second = await f.provider_event(db, paid, "payment.waiting_for_capture")
    before = metric("domos_provider_events_total", outcome="applied")
    one = await monitors(PaymentMonitor)
    two = await monitors(PaymentMonitor)

    await one.tick()
    await two.tick()
    await one.tick()

    events = {
        row["id"]: row for row in await db.fetchall("SELECT * FROM provider_events ORDER BY id")
    }
    assert events[first]["outcome"] == "applied"
    assert events[second]["outcome"] == "ignored"
    assert events[first]["attempts"] == 1
    assert events[second]["attempts"] == 1
    assert len(await live_subscriptions(db, buy["user"])) == 1
    assert len(await receipts(db, buy["user"])) == 1
    assert metric("domos_provider_events_total", outcome="applied") - before == 1


async def test_a_payment_extends_the_live_subscription_from_its_end(db, sandbox, monitors):
    buy = await setup_purchase(db, sandbox)
    current = await f.subscription(db, buy["user"], buy["tariff"], ends_in=timedelta(days=5))
    paid = await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/succeed", {})
    await f.provider_event(db, paid)
    monitor = await monitors(PaymentMonitor)
    await monitor.tick()

    [sub] = await live_subscriptions(db, buy["user"])
    assert sub["id"] == current["id"]
    assert sub["current_period_start"] == current["current_period_end"]
    assert sub["current_period_end"] == current["current_period_end"] + timedelta(days=30)


async def test_an_event_body_is_not_trusted(db, sandbox, monitors):
    buy = await setup_purchase(db, sandbox, age=timedelta(seconds=1))
    forged = {**buy["provider"], "status": "succeeded", "paid": True}
    event_id = await f.provider_event(db, forged)
    monitor = await monitors(PaymentMonitor)
    await monitor.tick()

    event = await db.fetchone("SELECT * FROM provider_events WHERE id = ?", (event_id,))
    assert event["outcome"] == "ignored"
    assert (await payment_row(db, buy["id"]))["status"] == "pending"
    assert await live_subscriptions(db, buy["user"]) == []


async def test_a_canceled_payment_tells_the_member_and_activates_nothing(db, sandbox, monitors):
    buy = await setup_purchase(db, sandbox)
    await sandbox.control(
        "POST", f"/yookassa/payments/{buy['provider']['id']}/cancel", {"reason": "card_expired"}
    )
    before = metric("domos_payments_finalized_total", status="canceled", source="poll")
    monitor = await monitors(PaymentMonitor)
    await monitor.tick()

    row = await payment_row(db, buy["id"])
    assert (row["status"], row["cancellation_reason"]) == ("canceled", "card_expired")
    assert row["processed_at"] is not None
    assert await live_subscriptions(db, buy["user"]) == []
    notices = await db.fetchall(
        "SELECT * FROM outbox WHERE kind = 'payment_canceled' AND user_id = ?",
        (buy["user"]["id"],),
    )
    assert len(notices) == 1
    assert metric("domos_payments_finalized_total", status="canceled", source="poll") - before == 1


async def test_a_banned_member_is_unbanned_before_the_invite(db, sandbox, monitors):
    buy = await setup_purchase(db, sandbox)
    await sandbox.control(
        "POST",
        f"/telegram/chats/{buy['chat']['telegram_chat_id']}/members",
        {"user_id": buy["user"]["telegram_id"], "status": "kicked"},
    )
    await db.execute(
        "INSERT INTO memberships (user_id, chat_id, status, banned_at) VALUES (?, ?, 'banned', ?)",
        (buy["user"]["id"], buy["chat"]["id"], utcnow() - timedelta(days=3)),
    )
    await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/succeed", {})
    monitor = await monitors(PaymentMonitor)
    await monitor.tick()

    [action] = await db.fetchall("SELECT * FROM moderation_actions")
    assert (action["action"], action["status"]) == ("unban", "done")
    assert await f.chat_status(sandbox, buy["chat"], buy["user"]) == "left"
    membership = await db.fetchone(
        "SELECT * FROM memberships WHERE user_id = ?", (buy["user"]["id"],)
    )
    assert membership["status"] == "left"
    assert membership["unbanned_at"] is not None
    [link] = await sandbox.control(
        "GET", f"/telegram/invite_links?chat_id={buy['chat']['telegram_chat_id']}"
    )
    # Unbanned: the link's join request reaches the bot (a banned user's would be refused).
    followed = await sandbox.control(
        "POST",
        "/telegram/invite_links/join",
        {"user_id": buy["user"]["telegram_id"], "invite_link": link["invite_link"]},
    )
    assert followed["join_request"]["from"]["id"] == buy["user"]["telegram_id"]


async def test_a_provider_failure_retries_the_event_later(db, sandbox, monitors):
    buy = await setup_purchase(db, sandbox, age=timedelta(seconds=1))
    paid = await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/succeed", {})
    event_id = await f.provider_event(db, paid)
    await sandbox.control("POST", "/faults", {"api": "yookassa", "mode": "500", "count": 1})
    before = metric("domos_provider_events_total", outcome="retried")
    monitor = await monitors(PaymentMonitor)
    await monitor.tick()

    event = await db.fetchone("SELECT * FROM provider_events WHERE id = ?", (event_id,))
    assert event["processed_at"] is None
    assert event["attempts"] == 1
    assert event["next_attempt_at"] > utcnow()
    assert metric("domos_provider_events_total", outcome="retried") - before == 1

    await db.execute("UPDATE provider_events SET next_attempt_at = ?", (utcnow(),))
    await monitor.tick()
    event = await db.fetchone("SELECT * FROM provider_events WHERE id = ?", (event_id,))
    assert event["outcome"] == "applied"
    assert len(await live_subscriptions(db, buy["user"])) == 1


async def _pay_and_apply(db: Any, sandbox: Any, buy: dict[str, Any], monitor: Any) -> None:
    await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/succeed", {})
    await db.execute("UPDATE payments SET next_check_at = ? WHERE id = ?", (utcnow(), buy["id"]))
    await monitor.tick()


async def test_a_chat_whose_invite_cannot_be_made_does_not_hold_the_receipt(db, sandbox, monitors):
    buy = await setup_purchase(db, sandbox)
    # A paid chat Telegram no longer knows (deleted, or the bot removed): 400 chat not found.
    await db.execute(
        "INSERT INTO chats (telegram_chat_id, title, kind, is_managed)"
        " VALUES (?, 'Архив', 'supergroup', ?)",
        (-1_009_999_000_001, True),
    )
    skipped = metric("domos_invite_links_created_total", outcome="skipped")
    monitor = await monitors(PaymentMonitor)
    await _pay_and_apply(db, sandbox, buy, monitor)

    row = await payment_row(db, buy["id"])
    assert row["confirmed_at"] is not None
    [receipt] = await receipts(db, buy["user"])
    [link] = await sandbox.control(
        "GET", f"/telegram/invite_links?chat_id={buy['chat']['telegram_chat_id']}"
    )
    assert link["invite_link"] in receipt["text"]
    assert "Ссылку в «Архив» сейчас создать не удалось" in receipt["text"]
    assert metric("domos_invite_links_created_total", outcome="skipped") - skipped == 1


async def test_transient_invite_failures_hold_the_receipt_only_for_a_while(db, sandbox, monitors):
    buy = await setup_purchase(db, sandbox)
    monitor = await monitors(PaymentMonitor)
    # Every Bot API call fails (5xx); this tick's only one is createChatInviteLink.
    await sandbox.control("POST", "/faults", {"api": "telegram", "mode": "500", "count": 100})
    await _pay_and_apply(db, sandbox, buy, monitor)
    row = await payment_row(db, buy["id"])
    assert (row["status"], row["confirmed_at"]) == ("succeeded", None)
    assert await receipts(db, buy["user"]) == []

    # Past RECEIPT_WAIT since the payment was applied: the receipt goes without the link.
    await db.execute(
        "UPDATE payments SET processed_at = ? WHERE id = ?",
        (utcnow() - timedelta(hours=2), buy["id"]),
    )
    await monitor.tick()
    [receipt] = await receipts(db, buy["user"])
    assert "сейчас создать не удалось" in receipt["text"]
    assert (await payment_row(db, buy["id"]))["confirmed_at"] is not None


async def test_a_payment_after_the_grace_ran_out_starts_now(db, sandbox, monitors):
    """Soak finding: the grace had run out but tsmonitor had not yet marked it expired (its
    next tick was hours away). The member was out of the chat from grace_until on, so the days
    since the old end are not theirs: the paid period starts at the payment, not back then."""
    buy = await setup_purchase(db, sandbox)
    lapsed = await f.subscription(
        db,
        buy["user"],
        buy["tariff"],
        status="grace",
        ends_in=-timedelta(days=3, hours=5),
        grace_until=utcnow() - timedelta(hours=5),
    )
    paid = await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/succeed", {})
    await f.provider_event(db, paid)
    monitor = await monitors(PaymentMonitor)
    before = utcnow()
    await monitor.tick()

    row = await payment_row(db, buy["id"])
    assert row["status"] == "succeeded"
    sub = dict(
        await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (row["subscription_id"],))
    )
    assert sub["status"] == "active"
    assert sub["current_period_start"] >= before
    assert sub["current_period_end"] - sub["current_period_start"] == timedelta(days=30)
    assert sub["current_period_end"] > lapsed["current_period_end"] + timedelta(days=33)
