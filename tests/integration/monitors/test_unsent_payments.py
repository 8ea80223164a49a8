"""payment_monitor and first payments the API committed whose YooKassa create call never returned.

The rows come from the API's own PaymentService (committed with its key and the exact request
before the call) against the sandbox, which keeps Idempotence-Keys like YooKassa: a repeated key
with the same body answers with the payment created for it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from monitors.payment_monitor import PaymentMonitor
from runtime.errors import MonitorError
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import FixedClock, metric, utcnow
from tests.integration.monitors.factories import at_provider, lost_create


async def payment_row(db: Any, payment_id: int) -> dict[str, Any]:
    return dict(await db.fetchone("SELECT * FROM payments WHERE id = ?", (payment_id,)))


def unsent(outcome: str) -> float:
    return metric("domos_unsent_payments_total", outcome=outcome)


async def test_a_payment_the_provider_made_is_recorded_not_made_again(
    db, sandbox, monitors, api_payments
):
    lost = await lost_create(
        db, sandbox, api_payments, reached_provider=True, age=timedelta(minutes=5)
    )
    [made] = await at_provider(sandbox, lost["id"])
    recorded_before = unsent("recorded")
    monitor = await monitors(PaymentMonitor)

    assert await monitor.resend_unsent() == 1

    row = await payment_row(db, lost["id"])
    assert row["provider_payment_id"] == made["id"]
    assert (row["status"], row["processed_at"]) == ("pending", None)
    assert row["confirmation_url"] == made["confirmation"]["confirmation_url"]
    # Polled on the normal schedule from here, first in a minute.
    assert (row["check_attempts"], row["lease_owner"]) == (0, None)
    assert utcnow() + timedelta(seconds=50) < row["next_check_at"]
    assert await at_provider(sandbox, lost["id"]) == [made]  # one payment, the first one
    assert unsent("recorded") - recorded_before == 1
    assert await monitor.resend_unsent() == 0


async def test_a_payment_the_provider_never_saw_is_created_once_and_followed_to_success(
    db, sandbox, monitors, api_payments
):
    lost = await lost_create(
        db, sandbox, api_payments, reached_provider=False, age=timedelta(minutes=15)
    )
    assert await at_provider(sandbox, lost["id"]) == []
    chat = await f.managed_chat(db, sandbox)
    recorded_before = unsent("recorded")
    finalized_before = metric("domos_payments_finalized_total", status="succeeded", source="poll")
    one = await monitors(PaymentMonitor)
    two = await monitors(PaymentMonitor)

    # Two replicas at once: the row is claimed by one, so the request goes out once.
    await asyncio.gather(one.tick(), two.tick())

    [made] = await at_provider(sandbox, lost["id"])
    row = await payment_row(db, lost["id"])
    assert (row["provider_payment_id"], row["status"]) == (made["id"], "pending")
    assert unsent("recorded") - recorded_before == 1

    # The member pays; the webhook is lost; polling finds the success and applies it.
    await sandbox.control("POST", f"/yookassa/payments/{made['id']}/succeed", {})
    await db.execute("UPDATE payments SET next_check_at = ? WHERE id = ?", (utcnow(), lost["id"]))
    await one.tick()

    row = await payment_row(db, lost["id"])
    assert row["status"] == "succeeded"
    assert row["processed_at"] is not None
    assert row["confirmed_at"] is not None
    subscription = await db.fetchone(
        "SELECT * FROM subscriptions WHERE user_id = ? AND status = 'active'",
        (lost["user"]["id"],),
    )
    assert subscription["id"] == row["subscription_id"]
    receipt = await db.fetchone(
        "SELECT text FROM outbox WHERE kind = 'receipt' AND user_id = ?", (lost["user"]["id"],)
    )
    [link] = await sandbox.control(
        "GET", f"/telegram/invite_links?chat_id={chat['telegram_chat_id']}"
    )
    assert link["invite_link"] in receipt["text"]
    assert [p["id"] for p in await at_provider(sandbox, lost["id"])] == [made["id"]]
    finalized = metric("domos_payments_finalized_total", status="succeeded", source="poll")
    assert finalized - finalized_before == 1


async def posts_with(sandbox: Any, key: str) -> int:
    posts = await sandbox.control("GET", "/yookassa/requests?method=POST&path=/v3/payments")
    return sum(1 for r in posts if r["idempotence_key"] == key)


async def listings(sandbox: Any) -> int:
    return len(await sandbox.control("GET", "/yookassa/requests?method=GET&path=/v3/payments"))


async def test_a_key_past_its_window_is_not_sent_and_canceled_when_nothing_is_listed(
    db, sandbox, monitors, api_payments
):
    lost = await lost_create(
        db, sandbox, api_payments, reached_provider=False, age=timedelta(hours=25)
    )
    expired_before = unsent("expired")
    canceled_before = metric("domos_payments_finalized_total", status="canceled", source="resend")
    posts_before = await posts_with(sandbox, lost["key"])  # the API's own call, refused
    monitor = await monitors(PaymentMonitor)

    assert await monitor.resend_unsent() == 1

    row = await payment_row(db, lost["id"])
    assert (row["status"], row["provider_payment_id"]) == ("canceled", None)
    assert (row["cancellation_party"], row["cancellation_reason"]) == (
        "merchant",
        "idempotence_key_expired",
    )
    assert "a repeat could create a second payment" in row["last_error"]
    assert row["processed_at"] is not None
    assert row["lease_owner"] is None
    # Never sent again; the provider's payments were listed instead, and none was ours.
    assert await posts_with(sandbox, lost["key"]) == posts_before
    assert await listings(sandbox) == 1
    assert await at_provider(sandbox, lost["id"]) == []
    # Nothing was ever shown to the member: no notice either.
    notices = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE user_id = ?", (lost["user"]["id"],)
    )
    assert notices == 0
    assert unsent("expired") - expired_before == 1
    canceled = metric("domos_payments_finalized_total", status="canceled", source="resend")
    assert canceled - canceled_before == 1
    assert await monitor.resend_unsent() == 0


async def test_no_answer_again_retries_later_with_the_same_key(db, sandbox, monitors, api_payments):
    lost = await lost_create(
        db, sandbox, api_payments, reached_provider=False, age=timedelta(minutes=5)
    )
    retried_before = unsent("retried")
    await sandbox.control("POST", "/faults", {"api": "yookassa", "mode": "500", "count": 1})
    monitor = await monitors(PaymentMonitor)

    assert await monitor.resend_unsent() == 1
    row = await payment_row(db, lost["id"])
    assert (row["status"], row["provider_payment_id"], row["check_attempts"]) == (
        "created",
        None,
        1,
    )
    assert "HTTP 500" in row["last_error"]
    assert utcnow() + timedelta(seconds=50) < row["next_check_at"]
    assert unsent("retried") - retried_before == 1
    assert await monitor.resend_unsent() == 0  # not due yet

    await db.execute("UPDATE payments SET next_check_at = ? WHERE id = ?", (utcnow(), lost["id"]))
    assert await monitor.resend_unsent() == 1
    [made] = await at_provider(sandbox, lost["id"])
    assert (await payment_row(db, lost["id"]))["provider_payment_id"] == made["id"]


async def test_a_refused_repeat_cancels_with_the_providers_reason(
    db, sandbox, monitors, api_payments
):
    lost = await lost_create(
        db, sandbox, api_payments, reached_provider=False, age=timedelta(minutes=5)
    )
    # A request the provider refuses outright (no amount): no payment can exist under the key.
    row = await payment_row(db, lost["id"])
    request = {k: v for k, v in row["metadata"]["provider_request"].items() if k != "amount"}
    metadata = {**row["metadata"], "provider_request": request}
    await db.execute("UPDATE payments SET metadata = ? WHERE id = ?", (metadata, lost["id"]))
    refused_before = unsent("refused")
    monitor = await monitors(PaymentMonitor)

    assert await monitor.resend_unsent() == 1

    row = await payment_row(db, lost["id"])
    assert (row["status"], row["cancellation_reason"]) == ("canceled", "request_rejected")
    # YooKassa refused it: its party, as the API and the bot record it (payments.store).
    assert row["cancellation_party"] == "yoo_money"
    assert "invalid_request" in row["last_error"]
    assert row["processed_at"] is not None
    assert await at_provider(sandbox, lost["id"]) == []
    assert unsent("refused") - refused_before == 1


async def test_within_the_grace_the_producers_own_call_is_left_alone(
    db, sandbox, monitors, api_payments
):
    lost = await lost_create(
        db, sandbox, api_payments, reached_provider=False, age=timedelta(seconds=10)
    )
    monitor = await monitors(PaymentMonitor)
    assert await monitor.resend_unsent() == 0
    row = await payment_row(db, lost["id"])
    assert (row["status"], row["check_attempts"], row["lease_owner"]) == ("created", 0, None)
    assert await at_provider(sandbox, lost["id"]) == []


async def test_a_row_without_its_request_waits_out_the_key_then_is_canceled(
    db, sandbox, monitors, api_payments
):
    lost = await lost_create(
        db, sandbox, api_payments, reached_provider=False, age=timedelta(minutes=5)
    )
    # Committed before requests were stored: the same body cannot be rebuilt with certainty.
    await db.execute(
        "UPDATE payments SET metadata = ? WHERE id = ?", ({"source": "api"}, lost["id"])
    )
    waiting_before = unsent("waiting")
    await sandbox.control("POST", "/faults", {"api": "yookassa", "mode": "500", "count": 1})
    monitor = await monitors(PaymentMonitor)

    assert await monitor.resend_unsent() == 0
    row = await payment_row(db, lost["id"])
    assert row["status"] == "created"
    assert row["next_check_at"] == row["created_at"] + timedelta(hours=23)
    assert unsent("waiting") - waiting_before == 1
    assert await monitor.resend_unsent() == 0  # not looked at again before then

    await db.execute("UPDATE payments SET next_check_at = ? WHERE id = ?", (utcnow(), lost["id"]))
    await db.execute(
        "UPDATE payments SET created_at = ? WHERE id = ?",
        (utcnow() - timedelta(hours=23), lost["id"]),
    )
    await sandbox.control("POST", "/faults", {"api": "yookassa", "mode": "500", "count": 0})
    assert await monitor.resend_unsent() == 1
    row = await payment_row(db, lost["id"])
    assert (row["status"], row["cancellation_reason"]) == ("canceled", "idempotence_key_expired")
    assert await posts_with(sandbox, lost["key"]) == 1  # the API's own, never repeated


async def test_a_key_past_its_window_whose_payment_was_made_is_found_by_listing(
    db, sandbox, monitors, api_payments
):
    # The API's call reached YooKassa, its answer was lost; a day later the key is forgotten.
    lost = await lost_create(db, sandbox, api_payments, reached_provider=True, age=timedelta(0))
    [made] = await at_provider(sandbox, lost["id"])
    # The member paid on the page (its notification lost too).
    await sandbox.control("POST", f"/yookassa/payments/{made['id']}/succeed", {})
    await sandbox.control("POST", "/clock", {"advance_s": 25 * 3600})
    reconciled_before = unsent("reconciled")
    monitor = await monitors(PaymentMonitor, clock=FixedClock(utcnow() + timedelta(hours=25)))

    assert await monitor.resend_unsent() == 1
    assert await monitor.resend_unsent() == 0

    # Recorded and applied once, not canceled and not charged again.
    row = await payment_row(db, lost["id"])
    assert (row["provider_payment_id"], row["status"]) == (made["id"], "succeeded")
    assert row["processed_at"] is not None
    subscriptions = await db.fetchall(
        "SELECT * FROM subscriptions WHERE user_id = ?", (lost["user"]["id"],)
    )
    assert [(s["id"], s["status"]) for s in subscriptions] == [(row["subscription_id"], "active")]
    assert await posts_with(sandbox, lost["key"]) == 1  # the API's own, never repeated
    assert [p["id"] for p in await at_provider(sandbox, lost["id"])] == [made["id"]]
    assert unsent("reconciled") - reconciled_before == 1


async def test_a_failed_listing_fails_the_stage_and_changes_nothing(
    db, sandbox, monitors, api_payments
):
    lost = await lost_create(
        db, sandbox, api_payments, reached_provider=False, age=timedelta(hours=25)
    )
    await sandbox.control("POST", "/faults", {"api": "yookassa", "mode": "500", "count": 1})
    monitor = await monitors(PaymentMonitor)

    with pytest.raises(MonitorError, match="listing failed"):
        await monitor.resend_unsent()

    row = await payment_row(db, lost["id"])
    assert (row["status"], row["processed_at"], row["lease_owner"]) == ("created", None, None)
    assert await posts_with(sandbox, lost["key"]) == 1  # the API's own


async def test_a_pending_payment_found_by_listing_is_followed_by_polling(
    db, sandbox, monitors, api_payments
):
    lost = await lost_create(db, sandbox, api_payments, reached_provider=True, age=timedelta(0))
    [made] = await at_provider(sandbox, lost["id"])
    later = utcnow() + timedelta(hours=25)
    monitor = await monitors(PaymentMonitor, clock=FixedClock(later))

    assert await monitor.resend_unsent() == 1

    row = await payment_row(db, lost["id"])
    assert (row["provider_payment_id"], row["status"]) == (made["id"], "pending")
    assert row["processed_at"] is None
    # The member pays; the next poll (GET /v3/payments/{id}) finds it and applies it.
    await sandbox.control("POST", f"/yookassa/payments/{made['id']}/succeed", {})
    await db.execute("UPDATE payments SET next_check_at = ? WHERE id = ?", (later, lost["id"]))
    await monitor.poll_open()
    row = await payment_row(db, lost["id"])
    assert (row["status"], row["processed_at"] is not None) == ("succeeded", True)
    assert await posts_with(sandbox, lost["key"]) == 1  # the API's own, never repeated
