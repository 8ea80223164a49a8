from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from monitors.recurrent_payments import RecurrentPayments
from payments.amounts import amount_value
from runtime.errors import MonitorError
from tests.integration.monitors.conftest import metric, utcnow

_telegram_ids = itertools.count(800_000_001)


async def due_subscription(
    db: Any, sandbox: Any, *, ends_in: timedelta = timedelta(hours=2)
) -> dict[str, Any]:
    """A member whose monthly subscription ends soon, with a saved card at the sandbox."""
    method = await sandbox.control("POST", "/yookassa/payment_methods", {})
    telegram_id = next(_telegram_ids)
    user_id = await db.fetchval(
        "INSERT INTO users (telegram_id, first_name) VALUES (?, ?) RETURNING id",
        (telegram_id, "Олег"),
    )
    tariff_id = await db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (code) DO UPDATE SET title = excluded.title RETURNING id",
        ("month", "Месяц", 99000, 30),
    )
    pm_id = await db.fetchval(
        "INSERT INTO payment_methods (provider_method_id, user_id, method_type, is_saved)"
        " VALUES (?, ?, 'bank_card', ?) RETURNING id",
        (method["id"], user_id, True),
    )
    end = utcnow() + ends_in
    sub_id = await db.fetchval(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end, payment_method_id) VALUES (?, ?, 'active', ?, ?, ?) RETURNING id",
        (user_id, tariff_id, end - timedelta(days=30), end, pm_id),
    )
    return {"id": sub_id, "end": end, "method": method["id"], "telegram_id": telegram_id}


async def provider_payments(sandbox: Any, method_id: str) -> list[dict[str, Any]]:
    payments = await sandbox.control("GET", "/yookassa/payments")
    return [p for p in payments if (p.get("payment_method") or {}).get("id") == method_id]


async def subscription(db: Any, sub_id: int) -> dict[str, Any]:
    return dict(await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub_id,)))


def test_amount_is_a_decimal_string():
    assert amount_value(99000) == "990.00"
    assert amount_value(5) == "0.05"


async def test_renews_once_and_notifies(db, sandbox, monitors):
    sub = await due_subscription(db, sandbox)
    before = metric("domos_recurrent_charges_total", outcome="succeeded")
    monitor = await monitors(RecurrentPayments)
    assert await monitor.tick() == 2  # planned, then charged
    assert await monitor.tick() == 0  # nothing is due any more

    charged = await provider_payments(sandbox, sub["method"])
    assert [p["status"] for p in charged] == ["succeeded"]
    assert charged[0]["amount"] == {"value": "990.00", "currency": "RUB"}
    row = await subscription(db, sub["id"])
    assert row["current_period_start"] == sub["end"]
    assert row["current_period_end"] == sub["end"] + timedelta(days=30)
    assert row["status"] == "active"
    receipts = await db.fetchall(
        "SELECT * FROM outbox WHERE kind = 'renewal_receipt' AND chat_id = ?", (sub["telegram_id"],)
    )
    assert len(receipts) == 1
    # The renewal receipt is the charge's confirmation: payment_monitor never confirms it again.
    payment = await db.fetchone(
        "SELECT processed_at, confirmed_at FROM payments WHERE subscription_id = ?", (sub["id"],)
    )
    assert payment["confirmed_at"] is not None
    assert payment["confirmed_at"] == payment["processed_at"]
    assert metric("domos_recurrent_charges_total", outcome="succeeded") - before == 1


async def test_crash_between_commit_and_call_charges_once(db, sandbox, monitors):
    sub = await due_subscription(db, sandbox)
    crashed = await monitors(RecurrentPayments)
    assert await crashed.plan_due() == 1  # committed; the process dies before calling
    attempt = await db.fetchone(
        "SELECT * FROM charge_attempts WHERE subscription_id = ?", (sub["id"],)
    )
    assert attempt["status"] == "created"
    assert await provider_payments(sandbox, sub["method"]) == []

    restarted = await monitors(RecurrentPayments)
    await restarted.tick()
    await restarted.tick()
    assert [p["status"] for p in await provider_payments(sandbox, sub["method"])] == ["succeeded"]
    assert (await subscription(db, sub["id"]))["current_period_end"] == sub["end"] + timedelta(
        days=30
    )


class ProcessDied(Exception):
    pass


async def test_crash_after_the_provider_answered_reuses_the_key(db, sandbox, monitors):
    sub = await due_subscription(db, sandbox)
    crashed = await monitors(RecurrentPayments)

    async def die(*args: Any) -> bool:
        raise ProcessDied  # the answer arrived; the process dies before committing it

    crashed._apply = die
    with pytest.raises(ProcessDied):
        await crashed.tick()
    answered = await provider_payments(sandbox, sub["method"])
    assert [p["status"] for p in answered] == ["succeeded"]
    assert (await subscription(db, sub["id"]))["current_period_end"] == sub["end"]
    # The lease of the dead process runs out; a new process reconciles with the same key.
    await db.execute("UPDATE charge_attempts SET lease_expires_at = ?", (utcnow(),))

    restarted = await monitors(RecurrentPayments)
    await restarted.tick()
    charged = await provider_payments(sandbox, sub["method"])
    assert [p["id"] for p in charged] == [answered[0]["id"]]
    row = await subscription(db, sub["id"])
    assert row["current_period_end"] == sub["end"] + timedelta(days=30)
    payment = await db.fetchone("SELECT * FROM payments WHERE subscription_id = ?", (sub["id"],))
    assert (payment["provider_payment_id"], payment["status"]) == (answered[0]["id"], "succeeded")


async def test_provider_error_keeps_the_key_and_succeeds_later(db, sandbox, monitors):
    sub = await due_subscription(db, sandbox)
    await sandbox.control("POST", "/faults", {"api": "yookassa", "mode": "500", "count": 1})
    monitor = await monitors(RecurrentPayments)
    await monitor.tick()
    attempt = await db.fetchone(
        "SELECT * FROM charge_attempts WHERE subscription_id = ?", (sub["id"],)
    )
    assert (attempt["status"], attempt["last_error"]) == ("created", "outcome unknown")
    await monitor.tick()
    attempts = await db.fetchall(
        "SELECT * FROM charge_attempts WHERE subscription_id = ?", (sub["id"],)
    )
    assert [(a["attempt_no"], a["status"]) for a in attempts] == [(1, "succeeded")]
    assert len(await provider_payments(sandbox, sub["method"])) == 1


class RefusedCredentials:
    """YooKassa answering every call 401, as it does after the shop's secret key changed."""

    async def create_payment(self, body: dict[str, Any], key: str) -> Any:
        return 401, {"type": "error", "code": "invalid_credentials"}

    async def get_payment(self, payment_id: str) -> Any:
        return 401, {"type": "error", "code": "invalid_credentials"}


async def test_refused_credentials_are_no_decline_of_the_member(db, sandbox, monitors):
    # Drift: a 401 was classified as a rejected charge, so our own configuration fault counted
    # as the member's decline (a new key each time; the second one stopped auto-renewal and
    # told the member to pay by hand). payment_monitor already stops on it (classify_create);
    # now the charge does too, keeping its key.
    sub = await due_subscription(db, sandbox)
    monitor = await monitors(RecurrentPayments)
    real = monitor.yookassa
    monitor.yookassa = RefusedCredentials()
    try:
        with pytest.raises(MonitorError, match="401"):
            await monitor.tick()
        with pytest.raises(MonitorError, match="401"):
            await monitor.tick()
    finally:
        monitor.yookassa = real
    attempts = await db.fetchall(
        "SELECT * FROM charge_attempts WHERE subscription_id = ?", (sub["id"],)
    )
    assert [(a["attempt_no"], a["status"], a["last_error"]) for a in attempts] == [
        (1, "created", "HTTP 401")
    ]
    assert (await subscription(db, sub["id"]))["auto_renew"]
    # Fixed: the same key goes through, once.
    await monitor.tick()
    attempts = await db.fetchall(
        "SELECT * FROM charge_attempts WHERE subscription_id = ?", (sub["id"],)
    )
    assert [(a["attempt_no"], a["status"]) for a in attempts] == [(1, "succeeded")]
    assert len(await provider_payments(sandbox, sub["method"])) == 1


async def test_soft_decline_retries_with_a_new_key(db, sandbox, monitors):
    sub = await due_subscription(db, sandbox)
    await sandbox.control(
        "POST",
        f"/yookassa/payment_methods/{sub['method']}/declines",
        {"reason": "insufficient_funds"},
    )
    monitor = await monitors(RecurrentPayments)
    await monitor.tick()
    first = await db.fetchone(
        "SELECT * FROM charge_attempts WHERE subscription_id = ?", (sub["id"],)
    )
    assert (first["status"], first["decline_kind"]) == ("declined", "soft")
    assert first["next_retry_at"] > utcnow() + timedelta(hours=5)
    assert (await subscription(db, sub["id"]))["auto_renew"] is True
    assert await monitor.tick() == 0  # the retry is not due yet

    await db.execute(
        "UPDATE charge_attempts SET next_retry_at = ? WHERE id = ?", (utcnow(), first["id"])
    )
    await monitor.tick()
    attempts = await db.fetchall(
        "SELECT * FROM charge_attempts WHERE subscription_id = ? ORDER BY attempt_no", (sub["id"],)
    )
    assert [(a["attempt_no"], a["status"]) for a in attempts] == [(1, "declined"), (2, "succeeded")]
    assert attempts[0]["idempotence_key"] != attempts[1]["idempotence_key"]
    statuses = sorted(p["status"] for p in await provider_payments(sandbox, sub["method"]))
    assert statuses == ["canceled", "succeeded"]


async def test_hard_decline_stops_auto_renewal_and_tells_the_member(db, sandbox, monitors):
    sub = await due_subscription(db, sandbox)
    await sandbox.control(
        "POST", f"/yookassa/payment_methods/{sub['method']}/declines", {"reason": "card_expired"}
    )
    before = metric("domos_recurrent_charges_total", outcome="declined_hard")
    monitor = await monitors(RecurrentPayments)
    await monitor.tick()
    row = await subscription(db, sub["id"])
    assert (row["auto_renew"], row["auto_renew_stopped_reason"]) == (False, "card_expired")
    notices = await db.fetchall(
        "SELECT * FROM outbox WHERE kind = 'auto_renew_stopped' AND chat_id = ?",
        (sub["telegram_id"],),
    )
    assert len(notices) == 1
    assert await monitor.tick() == 0
    assert metric("domos_recurrent_charges_total", outcome="declined_hard") - before == 1


async def test_two_replicas_charge_each_period_once(db, sandbox, monitors):
    import asyncio

    subs = [await due_subscription(db, sandbox) for _ in range(6)]
    one = await monitors(RecurrentPayments)
    two = await monitors(RecurrentPayments)
    for _ in range(3):
        await asyncio.gather(one.tick(), two.tick())
    for sub in subs:
        assert [p["status"] for p in await provider_payments(sandbox, sub["method"])] == [
            "succeeded"
        ]
        assert (await subscription(db, sub["id"]))["current_period_end"] == sub["end"] + timedelta(
            days=30
        )


async def test_a_replica_planning_from_a_stale_list_waits_for_the_charge_being_applied(
    db, sandbox, monitors, monkeypatch
):
    """Replica two read the due list before replica one charged the period. It plans while
    one's success is being written: on PostgreSQL the two deadlocked (two held the
    subscription's row and waited on one's new index entry in charge_attempts; one then waited
    for the subscription's row). Now both take the subscription's row first, and two, under it,
    finds the period no longer due."""
    import asyncio

    from monitors import recurrent_payments

    sub = await due_subscription(db, sandbox)
    one = await monitors(RecurrentPayments)
    two = await monitors(RecurrentPayments)
    now = utcnow()
    stale = await db.fetchall(
        recurrent_payments.DUE_SUBSCRIPTIONS, (now, now + timedelta(hours=24), now, 50)
    )
    assert [row["id"] for row in stale] == [sub["id"]]
    real_extend = recurrent_payments.extend_subscription
    planned: list[asyncio.Task[bool]] = []

    async def extend_while_two_plans(tx: Any, *args: Any, **kwargs: Any) -> bool:
        planned.append(asyncio.create_task(two._plan_one(dict(stale[0]), now)))
        await asyncio.sleep(0.5)  # two runs as far as it can (deadlock_timeout is 1 s)
        return await real_extend(tx, *args, **kwargs)

    monkeypatch.setattr(recurrent_payments, "extend_subscription", extend_while_two_plans)
    assert await one.tick() == 2
    assert await planned[0] is False
    assert [p["status"] for p in await provider_payments(sandbox, sub["method"])] == ["succeeded"]
    attempts = await db.fetchall(
        "SELECT status FROM charge_attempts WHERE subscription_id = ?", (sub["id"],)
    )
    assert [a["status"] for a in attempts] == ["succeeded"]
    assert (await subscription(db, sub["id"]))["current_period_end"] == sub["end"] + timedelta(
        days=30
    )


async def test_a_worker_whose_lease_ran_out_does_not_overwrite_the_new_holder(
    db, sandbox, monitors
):
    """One claims an attempt and stalls past its lease; two claims it and charges it. One's
    late answer (a 500: outcome unknown) used to be written over two's success with
    `WHERE id = ?`, turning a succeeded attempt back into `created`."""
    from tests.integration.monitors.conftest import FixedClock

    sub = await due_subscription(db, sandbox)
    clock = FixedClock(utcnow())
    one = await monitors(RecurrentPayments, clock, RENEW_LEASE_S="60")
    two = await monitors(RecurrentPayments, clock, RENEW_LEASE_S="60")
    assert await one.plan_due() == 1

    async def stall_then_fail(request: Any, key: str) -> tuple[int, dict[str, Any]]:
        clock.at += timedelta(seconds=61)
        assert await two.execute_open() == 1  # the lease ran out: two takes and charges it
        return 500, {"type": "error", "code": "internal_server_error"}

    one.yookassa.create_payment = stall_then_fail
    lost_before = metric("domos_leases_lost_total", monitor="recurrent_payments")
    assert await one.execute_open() == 0

    [attempt] = await db.fetchall(
        "SELECT status, lease_owner FROM charge_attempts WHERE subscription_id = ?", (sub["id"],)
    )
    assert (attempt["status"], attempt["lease_owner"]) == ("succeeded", None)
    assert metric("domos_leases_lost_total", monitor="recurrent_payments") == lost_before + 1
    assert [p["status"] for p in await provider_payments(sandbox, sub["method"])] == ["succeeded"]
    assert (await subscription(db, sub["id"]))["current_period_end"] == sub["end"] + timedelta(
        days=30
    )


async def test_a_grace_that_ran_out_is_not_charged(db, sandbox, monitors):
    """Soak finding: auto-renewal switched back on (/autorenew_on) just after the grace ran
    out, before tsmonitor's tick marked it expired: the card was charged for the period that
    had begun at the old end, 3 days before, while the member was already out of the chat. A
    grace that ran out is over (payments.entitlement): no charge; a grace still running is."""
    ran_out = await due_subscription(db, sandbox, ends_in=-timedelta(days=3, hours=1))
    running = await due_subscription(db, sandbox, ends_in=-timedelta(days=2))
    for sub, grace_left in ((ran_out, -timedelta(hours=1)), (running, timedelta(days=1))):
        await db.execute(
            "UPDATE subscriptions SET status = 'grace', grace_until = ?, auto_renew = ?"
            " WHERE id = ?",
            (utcnow() + grace_left, True, sub["id"]),
        )
    monitor = await monitors(RecurrentPayments)
    await monitor.tick()

    assert await provider_payments(sandbox, ran_out["method"]) == []
    assert (
        await db.fetchval(
            "SELECT count(*) FROM charge_attempts WHERE subscription_id = ?", (ran_out["id"],)
        )
        == 0
    )
    assert [p["status"] for p in await provider_payments(sandbox, running["method"])] == [
        "succeeded"
    ]
