"""YooKassa notifications for payments whose provider id was never recorded (the create answer was
lost): payment_monitor finds the row by the fetched payment's metadata, records the id and
processes the event as usual. Both backends, against the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from monitors.payment_monitor import PaymentMonitor
from payments.client import YooKassaClient
from runtime.config import Settings
from services.bot.payments import request_payment_link
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import metric, utcnow


@pytest.fixture
async def slow_yookassa(monitor_environ: dict[str, str]) -> AsyncIterator[YooKassaClient]:
    client = YooKassaClient(Settings.from_env(monitor_environ), timeout_s=0.3)
    await client.open()
    yield client
    await client.close()


async def bot_lost_create(db: Any, sandbox: Any, yookassa: YooKassaClient) -> dict[str, Any]:
    """/subscribe whose YooKassa answer came too late: the payment exists there, not here."""
    user = await f.member(db, sandbox)
    tariff = await db.fetchone("SELECT * FROM tariffs WHERE id = ?", (await f.tariff(db),))
    await sandbox.control(
        "POST", "/faults", {"api": "yookassa", "mode": "timeout", "delay_s": 1.0, "count": 1}
    )
    link = await request_payment_link(
        db,
        yookassa,
        user_id=user["id"],
        telegram_id=user["telegram_id"],
        tariff=tariff,
        return_url="https://t.me/domos_bot",
        now=utcnow(),
    )
    assert link.confirmation_url is None
    return {"user": user, "id": link.payment_id}


async def payment_row(db: Any, payment_id: int) -> dict[str, Any]:
    return dict(await db.fetchone("SELECT * FROM payments WHERE id = ?", (payment_id,)))


async def event_row(db: Any, event_id: int) -> dict[str, Any]:
    return dict(await db.fetchone("SELECT * FROM provider_events WHERE id = ?", (event_id,)))


def unsent(outcome: str) -> float:
    return metric("domos_unsent_payments_total", outcome=outcome)


@pytest.mark.parametrize("producer", ["api", "bot"])
async def test_a_paid_payment_without_its_id_is_matched_recorded_and_applied(
    db, sandbox, monitors, api_payments, slow_yookassa, producer
):
    if producer == "api":
        lost = await f.lost_create(
            db, sandbox, api_payments, reached_provider=True, age=timedelta(seconds=30)
        )
    else:
        lost = await bot_lost_create(db, sandbox, slow_yookassa)
    assert (await payment_row(db, lost["id"]))["provider_payment_id"] is None
    [made] = await f.at_provider(sandbox, lost["id"])
    paid = await sandbox.control("POST", f"/yookassa/payments/{made['id']}/succeed", {})
    event_id = await f.provider_event(db, paid)
    matched, applied = unsent("matched"), metric("domos_provider_events_total", outcome="applied")
    finalized = metric("domos_payments_finalized_total", status="succeeded", source="webhook")
    monitor = await monitors(PaymentMonitor)

    assert await monitor.process_events() == 1

    event = await event_row(db, event_id)
    assert (event["outcome"], event["attempts"]) == ("applied", 1)
    row = await payment_row(db, lost["id"])
    assert (row["provider_payment_id"], row["status"]) == (made["id"], "succeeded")
    assert row["processed_at"] is not None
    subscription = await db.fetchone(
        "SELECT * FROM subscriptions WHERE user_id = ? AND status = 'active'", (lost["user"]["id"],)
    )
    assert subscription["id"] == row["subscription_id"]
    assert unsent("matched") - matched == 1
    assert metric("domos_provider_events_total", outcome="applied") - applied == 1
    assert (
        metric("domos_payments_finalized_total", status="succeeded", source="webhook") - finalized
        == 1
    )
    # Nothing is left to send again, and the provider holds the one payment.
    await db.execute(
        "UPDATE payments SET created_at = ? WHERE id = ?",
        (utcnow() - timedelta(minutes=10), lost["id"]),
    )
    assert await monitor.resend_unsent() == 0
    assert [p["id"] for p in await f.at_provider(sandbox, lost["id"])] == [made["id"]]


async def test_an_open_payment_matched_by_metadata_is_followed_by_polling(
    db, sandbox, monitors, api_payments
):
    lost = await f.lost_create(
        db, sandbox, api_payments, reached_provider=True, age=timedelta(seconds=30)
    )
    [made] = await f.at_provider(sandbox, lost["id"])
    # An event whose status the provider no longer confirms: the fetched payment is pending.
    event_id = await f.provider_event(db, {**made, "status": "succeeded"})
    monitor = await monitors(PaymentMonitor)

    await monitor.process_events()

    assert (await event_row(db, event_id))["outcome"] == "ignored"
    row = await payment_row(db, lost["id"])
    assert (row["provider_payment_id"], row["status"], row["processed_at"]) == (
        made["id"],
        "pending",
        None,
    )
    assert row["confirmation_url"] == made["confirmation"]["confirmation_url"]
    assert utcnow() < row["next_check_at"] <= utcnow() + timedelta(minutes=1)


async def test_metadata_naming_another_payment_is_not_trusted(db, sandbox, monitors, api_payments):
    lost = await f.lost_create(
        db, sandbox, api_payments, reached_provider=True, age=timedelta(seconds=30)
    )
    [made] = await f.at_provider(sandbox, lost["id"])
    paid = await sandbox.control("POST", f"/yookassa/payments/{made['id']}/succeed", {})
    # Row N here is not the row N the request was made for (another database sharing the shop).
    await db.execute("UPDATE payments SET amount_minor = 50000 WHERE id = ?", (lost["id"],))
    event_id = await f.provider_event(db, paid)
    failed = metric("domos_provider_events_total", outcome="failed")
    monitor = await monitors(PaymentMonitor)

    await monitor.process_events()

    event = await event_row(db, event_id)
    assert event["outcome"] == "failed"
    assert f"names payment {lost['id']}, but amount" in event["last_error"]
    row = await payment_row(db, lost["id"])
    assert (row["provider_payment_id"], row["status"]) == (None, "created")
    assert metric("domos_provider_events_total", outcome="failed") - failed == 1


async def test_a_payment_paid_after_it_was_canceled_uncalled_is_flagged_not_applied(
    db, sandbox, monitors, api_payments
):
    lost = await f.lost_create(
        db, sandbox, api_payments, reached_provider=True, age=timedelta(hours=25)
    )
    monitor = await monitors(PaymentMonitor)
    assert await monitor.resend_unsent() == 1  # its key is past the window: canceled uncalled
    [made] = await f.at_provider(sandbox, lost["id"])
    paid = await sandbox.control("POST", f"/yookassa/payments/{made['id']}/succeed", {})
    event_id = await f.provider_event(db, paid)
    flagged = unsent("paid_after_cancel")

    await monitor.process_events()

    event = await event_row(db, event_id)
    assert event["outcome"] == "failed"
    assert "canceled here (idempotence_key_expired): refund it" in event["last_error"]
    row = await payment_row(db, lost["id"])
    # The provider's id is kept for the record; the cancellation stands, nothing is activated.
    assert (row["provider_payment_id"], row["status"]) == (made["id"], "canceled")
    subscriptions = await db.fetchval(
        "SELECT count(*) FROM subscriptions WHERE user_id = ?", (lost["user"]["id"],)
    )
    assert subscriptions == 0
    assert unsent("paid_after_cancel") - flagged == 1


async def test_an_event_whose_payment_names_nothing_here_is_retried(db, sandbox, monitors):
    # Made by someone else with the shop's credentials: no payment_row in its metadata.
    stranger = await f.provider_payment(sandbox)
    paid = await sandbox.control("POST", f"/yookassa/payments/{stranger['id']}/succeed", {})
    event_id = await f.provider_event(db, paid)
    retried = metric("domos_provider_events_total", outcome="retried")
    monitor = await monitors(PaymentMonitor)

    await monitor.process_events()

    event = await event_row(db, event_id)
    assert (event["processed_at"], event["attempts"]) == (None, 1)
    assert "no local payment" in event["last_error"]
    assert metric("domos_provider_events_total", outcome="retried") - retried == 1
