"""A renewal charge planned, then no longer wanted before the provider answered.

A tester's finding: the first create answered 500 (outcome unknown), the member sent
/cancel_autorenew (or staff refunded the period, ending the subscription), and the next tick
sent the create again with its key: the card was charged, the refunded subscription came back
to life, and the member was told it was renewed. An attempt whose subscription no longer wants
it is now never sent again; the provider's payments are listed for what an earlier call made.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from monitors.recurrent_payments import RecurrentPayments
from payments.store import NOT_WANTED_REASON
from tests.integration.monitors.test_charge_key_window import attempts, posts_with, reconciled
from tests.integration.monitors.test_recurrent_payments import (
    ProcessDied,
    due_subscription,
    provider_payments,
    subscription,
)


async def unknown_outcome(db: Any, sandbox: Any, monitors: Any) -> dict[str, Any]:
    """A due subscription whose charge was sent once and answered 500 (nothing charged)."""
    sub = await due_subscription(db, sandbox)
    await sandbox.control("POST", "/faults", {"api": "yookassa", "mode": "500", "count": 1})
    await (await monitors(RecurrentPayments)).tick()
    [attempt] = await attempts(db, sub["id"])
    assert (attempt["status"], attempt["last_error"]) == ("created", "outcome unknown")
    assert await posts_with(sandbox, attempt["idempotence_key"]) == 1
    return {**sub, "attempt": attempt}


async def renewal_receipts(db: Any, telegram_id: int) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM outbox WHERE kind = 'renewal_receipt' AND chat_id = ?",
            (telegram_id,),
        )
    )


async def assert_closed_unsent(db: Any, sandbox: Any, sub: dict[str, Any]) -> None:
    attempt = sub["attempt"]
    [closed] = await attempts(db, sub["id"])
    assert (closed["status"], closed["decline_reason"]) == ("declined", NOT_WANTED_REASON)
    assert await posts_with(sandbox, attempt["idempotence_key"]) == 1, "not sent again"
    assert await provider_payments(sandbox, sub["method"]) == []
    payment = await db.fetchone("SELECT * FROM payments WHERE id = ?", (attempt["payment_id"],))
    assert (payment["status"], payment["cancellation_reason"]) == ("canceled", NOT_WANTED_REASON)
    assert await renewal_receipts(db, sub["telegram_id"]) == 0


async def test_autopay_stopped_while_the_outcome_is_unknown_is_not_charged(db, sandbox, monitors):
    sub = await unknown_outcome(db, sandbox, monitors)
    # What /cancel_autorenew does (services.bot.repository.stop_auto_renew).
    await db.execute(
        "UPDATE subscriptions SET auto_renew = FALSE, next_charge_at = NULL,"
        " auto_renew_stopped_reason = 'user' WHERE id = ?",
        (sub["id"],),
    )
    not_sent_before = reconciled("not_sent")
    monitor = await monitors(RecurrentPayments)
    await monitor.tick()
    await monitor.tick()

    await assert_closed_unsent(db, sandbox, sub)
    row = await subscription(db, sub["id"])
    assert (row["current_period_end"], row["auto_renew"]) == (sub["end"], False)
    assert reconciled("not_sent") - not_sent_before == 1


async def test_a_refund_that_ended_the_subscription_is_not_undone_by_the_charge(
    db, sandbox, monitors
):
    sub = await unknown_outcome(db, sandbox, monitors)
    # What a full refund of the current period records (payments.refunds): access ends.
    await db.execute(
        "UPDATE subscriptions SET status = 'expired', auto_renew = FALSE,"
        " auto_renew_stopped_reason = 'refunded', next_charge_at = NULL WHERE id = ?",
        (sub["id"],),
    )
    monitor = await monitors(RecurrentPayments)
    await monitor.tick()
    await monitor.tick()

    await assert_closed_unsent(db, sandbox, sub)
    row = await subscription(db, sub["id"])
    assert (row["status"], row["current_period_end"]) == ("expired", sub["end"])


async def test_a_period_paid_by_hand_meanwhile_is_not_charged_again(db, sandbox, monitors):
    sub = await unknown_outcome(db, sandbox, monitors)
    moved_on = sub["end"] + timedelta(days=30)  # a payment by hand applied in the meantime
    await db.execute(
        "UPDATE subscriptions SET current_period_start = ?, current_period_end = ? WHERE id = ?",
        (sub["end"], moved_on, sub["id"]),
    )
    await (await monitors(RecurrentPayments)).tick()

    await assert_closed_unsent(db, sandbox, sub)
    assert (await subscription(db, sub["id"]))["current_period_end"] == moved_on


async def test_a_charge_the_provider_made_before_the_stop_gives_its_period(db, sandbox, monitors):
    """The card was charged before the member stopped autopay (the answer was lost): the
    money is taken, so the period is given, found by listing, not by sending again."""
    sub = await due_subscription(db, sandbox)
    crashed = await monitors(RecurrentPayments)

    async def die(*args: Any) -> bool:
        raise ProcessDied

    crashed._apply = die
    with pytest.raises(ProcessDied):
        await crashed.tick()
    [attempt] = await attempts(db, sub["id"])
    [charged] = await provider_payments(sandbox, sub["method"])
    await db.execute(
        "UPDATE charge_attempts SET lease_expires_at = ? WHERE id = ?",
        (attempt["created_at"], attempt["id"]),
    )
    await db.execute(
        "UPDATE subscriptions SET auto_renew = FALSE, next_charge_at = NULL,"
        " auto_renew_stopped_reason = 'user' WHERE id = ?",
        (sub["id"],),
    )
    monitor = await monitors(RecurrentPayments)
    await monitor.tick()
    await monitor.tick()

    assert await posts_with(sandbox, attempt["idempotence_key"]) == 1
    assert [p["id"] for p in await provider_payments(sandbox, sub["method"])] == [charged["id"]]
    [done] = await attempts(db, sub["id"])
    assert done["status"] == "succeeded"
    row = await subscription(db, sub["id"])
    assert row["current_period_end"] == sub["end"] + timedelta(days=30)
    assert not row["auto_renew"], "the member's stop stays"
    assert await renewal_receipts(db, sub["telegram_id"]) == 1
