"""recurrent_payments and a charge attempt still `created` past its key window.

The sandbox keeps Idempotence-Keys 24 h, as YooKassa does: a key POSTed again after that makes a
second payment. So an attempt older than the window (PAYMENT_KEY_WINDOW_H, 23 h) is never
POSTed again; the provider's payments are listed instead (GET /v3/payments, matched by the
metadata the charge sent), and the sandbox's request log shows which calls went out.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from monitors.recurrent_payments import RecurrentPayments
from runtime.errors import MonitorError
from tests.integration.monitors.conftest import FixedClock, metric, utcnow
from tests.integration.monitors.test_recurrent_payments import (
    ProcessDied,
    due_subscription,
    provider_payments,
    subscription,
)

#: Past the sandbox's 24 h key retention, and so past the monitors' 23 h window.
LATER = timedelta(hours=25)


async def attempts(db: Any, sub_id: int) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT * FROM charge_attempts WHERE subscription_id = ? ORDER BY attempt_no", (sub_id,)
    )
    return [dict(row) for row in rows]


async def posts_with(sandbox: Any, key: str) -> int:
    posts = await sandbox.control("GET", "/yookassa/requests?method=POST&path=/v3/payments")
    return sum(1 for r in posts if r["idempotence_key"] == key)


async def listings(sandbox: Any) -> int:
    return len(await sandbox.control("GET", "/yookassa/requests?method=GET&path=/v3/payments"))


async def later(sandbox: Any, monitors: Any) -> Any:
    """A day on: the sandbox has forgotten the keys, the monitor's clock is past the window."""
    await sandbox.control("POST", "/clock", {"advance_s": LATER.total_seconds()})
    return await monitors(RecurrentPayments, clock=FixedClock(utcnow() + LATER))


def reconciled(outcome: str) -> float:
    return metric("domos_charge_reconciliations_total", outcome=outcome)


async def test_a_charge_made_but_unanswered_is_found_by_listing_and_extends_once(
    db, sandbox, monitors
):
    sub = await due_subscription(db, sandbox)
    crashed = await monitors(RecurrentPayments)

    async def die(*args: Any) -> bool:
        raise ProcessDied  # the provider charged the card; the answer was never committed

    crashed._apply = die
    with pytest.raises(ProcessDied):
        await crashed.tick()
    [attempt] = await attempts(db, sub["id"])
    assert attempt["status"] == "created"
    [charged] = await provider_payments(sandbox, sub["method"])
    await db.execute("UPDATE charge_attempts SET lease_expires_at = ?", (utcnow(),))
    found_before = reconciled("found")

    restarted = await later(sandbox, monitors)
    await restarted.tick()
    await restarted.tick()

    # Not POSTed again (the sandbox would have made a second payment): listed and found.
    assert await posts_with(sandbox, attempt["idempotence_key"]) == 1
    assert await listings(sandbox) >= 1
    assert [p["id"] for p in await provider_payments(sandbox, sub["method"])] == [charged["id"]]
    assert [(a["attempt_no"], a["status"]) for a in await attempts(db, sub["id"])] == [
        (1, "succeeded")
    ]
    row = await subscription(db, sub["id"])
    assert row["current_period_end"] == sub["end"] + timedelta(days=30)
    payment = await db.fetchone("SELECT * FROM payments WHERE id = ?", (attempt["payment_id"],))
    assert (payment["provider_payment_id"], payment["status"]) == (charged["id"], "succeeded")
    receipts = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE kind = 'renewal_receipt' AND chat_id = ?",
        (sub["telegram_id"],),
    )
    assert receipts == 1
    assert reconciled("found") - found_before == 1


async def test_a_charge_never_made_is_closed_and_a_new_key_charges_once(db, sandbox, monitors):
    sub = await due_subscription(db, sandbox)
    crashed = await monitors(RecurrentPayments)
    assert await crashed.plan_due() == 1  # committed; the process dies before the call
    [first] = await attempts(db, sub["id"])
    not_sent_before = reconciled("not_sent")

    restarted = await later(sandbox, monitors)
    await restarted.tick()  # listed: nothing; closed as not sent
    [closed] = await attempts(db, sub["id"])
    assert (closed["status"], closed["decline_reason"]) == ("declined", "idempotence_key_expired")
    payment = await db.fetchone("SELECT * FROM payments WHERE id = ?", (first["payment_id"],))
    assert (payment["status"], payment["cancellation_party"]) == ("canceled", "merchant")
    assert payment["processed_at"] is not None
    await restarted.tick()  # a new attempt, a new key

    rows = await attempts(db, sub["id"])
    assert [(a["attempt_no"], a["status"]) for a in rows] == [(1, "declined"), (2, "succeeded")]
    assert rows[1]["idempotence_key"] != first["idempotence_key"]
    assert await posts_with(sandbox, first["idempotence_key"]) == 0
    assert await posts_with(sandbox, rows[1]["idempotence_key"]) == 1
    assert [p["status"] for p in await provider_payments(sandbox, sub["method"])] == ["succeeded"]
    row = await subscription(db, sub["id"])
    assert row["current_period_end"] == sub["end"] + timedelta(days=30)
    assert reconciled("not_sent") - not_sent_before == 1


async def test_a_failed_listing_fails_the_tick_and_makes_no_new_attempt(db, sandbox, monitors):
    sub = await due_subscription(db, sandbox)
    crashed = await monitors(RecurrentPayments)
    assert await crashed.plan_due() == 1
    [first] = await attempts(db, sub["id"])
    restarted = await later(sandbox, monitors)
    await sandbox.control("POST", "/faults", {"api": "yookassa", "mode": "500", "count": 1})

    with pytest.raises(MonitorError, match="listing failed"):
        await restarted.tick()

    [attempt] = await attempts(db, sub["id"])
    assert (attempt["id"], attempt["status"]) == (first["id"], "created")
    assert attempt["last_error"] == "GET /v3/payments: HTTP 500"
    assert attempt["lease_owner"] is None  # released: the next tick looks again
    assert await posts_with(sandbox, first["idempotence_key"]) == 0
    assert await provider_payments(sandbox, sub["method"]) == []
    assert (await subscription(db, sub["id"]))["current_period_end"] == sub["end"]
