"""payment_monitor: applying a payment's final outcome, once.

One transaction guarded by `processed_at IS NULL`, where the webhook, polling and resend paths
meet: a success activates or extends the subscription (a renewal paid by hand from the live
period's end) by the days the payment was offered for (`payments.period_days`, not the tariff's
as edited since), records the saved card and an unban for every managed chat the member was
banned from; a cancellation tells the member.

A saved card switches auto-renewal on only when the payment asked to save it (the member was
told in the payment message that the card is charged every period) and the member's own stop
(/cancel_autorenew) is not in force: that stop sticks until the member sends /autorenew_on,
whatever a payment saved (payments.store.stopped_by_member). The card is kept on the
subscription either way, so /autorenew_on can use it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitors import metrics, texts
from monitors.decisions.periods import extension_start, period_after
from monitors.outbox import enqueue
from monitors.payment_stages.work import PaymentWork
from payments.decisions import ChargeOutcome, ChargeResult
from payments.entitlement import entitling
from payments.store import (
    STOPPED_BY_MEMBER,
    charge_due_at,
    extend_subscription,
    stopped_by_member,
)
from runtime.db import AsyncTransaction
from runtime.errors import TransientError


async def apply_final(
    work: PaymentWork,
    payment: dict[str, Any],
    result: ChargeResult,
    body: dict[str, Any],
    *,
    source: str,
) -> bool:
    """Apply a final outcome in one transaction; False when it had been applied before."""
    now = work.ctx.clock.now()
    succeeded = result.outcome is ChargeOutcome.SUCCEEDED
    details = body.get("cancellation_details") or {}
    async with work.db.transaction() as tx:
        won = await tx.execute(
            "UPDATE payments SET status = ?, paid_at = CASE WHEN ? THEN coalesce(paid_at, ?)"
            " ELSE paid_at END, processed_at = ?, cancellation_party = ?,"
            " cancellation_reason = ?, next_check_at = NULL, last_error = NULL,"
            " updated_at = ?, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ? AND processed_at IS NULL",
            (
                "succeeded" if succeeded else "canceled",
                succeeded,
                now,
                now,
                details.get("party"),
                details.get("reason"),
                now,
                payment["id"],
            ),
        )
        if not won:
            return False
        user = await tx.fetchone(
            "SELECT id, telegram_id FROM users WHERE id = ?", (payment["user_id"],)
        )
        assert user is not None, "payments references its user"
        if succeeded:
            await _activate(work, tx, payment, body, now)
        else:
            await enqueue(
                tx,
                dedupe_key=f"payment_canceled:{payment['id']}",
                chat_id=user["telegram_id"],
                user_id=user["id"],
                kind="payment_canceled",
                text=texts.PAYMENT_FAILED,
                priority=10,
            )
    status = "succeeded" if succeeded else "canceled"
    metrics.PAYMENTS_FINALIZED.labels(status=status, source=source).inc()
    work.log.info("payment_finalized", payment_id=payment["id"], status=status, source=source)
    return True


async def _activate(
    work: PaymentWork,
    tx: AsyncTransaction,
    payment: dict[str, Any],
    body: dict[str, Any],
    now: datetime,
) -> None:
    tz = work.ctx.settings.timezone
    # The days the payment was offered with and paid for; a payment created before they were
    # stored (main/0010) buys its tariff's period as it is now, as it did then.
    days = await tx.fetchval(
        "SELECT coalesce(p.period_days, t.period_days) FROM payments p"
        " JOIN tariffs t ON t.id = p.tariff_id WHERE p.id = ?",
        (payment["id"],),
    )
    assert days is not None, "payments references its tariff"
    method_id = await _saved_method(work, tx, payment["user_id"], body)
    # The live row (one per member) is the one extended; whether the paid days continue its
    # period is the entitlement rule's: a grace that ran out before tsmonitor's tick marked it
    # expired left the member out since grace_until, so their period starts now.
    live = await tx.fetchone(
        "SELECT id, current_period_start, current_period_end, auto_renew, payment_method_id,"
        f" CASE WHEN {entitling('s')} THEN 1 ELSE 0 END AS entitled"
        " FROM subscriptions s WHERE user_id = ? AND status IN ('active', 'grace')",
        (now, payment["user_id"]),
    )
    current_end = live["current_period_end"] if live else None
    entitled = live is not None and bool(live["entitled"])
    start = extension_start(current_end, now, still_entitled=entitled)
    period = period_after(start, days=int(days), tz=tz)
    # Read before the period moves: the member's own stop, if any, stays in force.
    stopped = await stopped_by_member(tx, payment["user_id"])
    consented = method_id is not None and bool(payment["save_payment_method"]) and not stopped
    auto_renew = consented or bool(live and live["auto_renew"])
    has_method = method_id is not None or bool(live and live["payment_method_id"])
    next_charge = (
        charge_due_at(period.end, work.config.charge_ahead) if auto_renew and has_method else None
    )
    if live is not None:
        extended = await extend_subscription(
            tx,
            live["id"],
            from_end=live["current_period_end"],
            period=period,
            next_charge_at=next_charge,
            now=now,
            tariff_id=payment["tariff_id"],
            method_id=method_id,
            auto_renew=auto_renew,
        )
        if not extended:
            raise TransientError("the subscription changed meanwhile; apply again")
        subscription_id = live["id"]
    else:
        subscription_id = await tx.fetchval(
            "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
            " current_period_end, auto_renew, payment_method_id, next_charge_at,"
            " auto_renew_stopped_reason) VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                payment["user_id"],
                payment["tariff_id"],
                period.start,
                period.end,
                auto_renew,
                method_id,
                next_charge,
                # A member who stopped auto-renewal and comes back still wants it off.
                STOPPED_BY_MEMBER if stopped and not auto_renew else None,
            ),
        )
    await tx.execute(
        "UPDATE payments SET subscription_id = ?, applied_period_end = ?, prior_period_start = ?,"
        " payment_method_id = coalesce(?, payment_method_id) WHERE id = ?",
        (
            subscription_id,
            period.end,
            live["current_period_start"] if live is not None and entitled else None,
            method_id,
            payment["id"],
        ),
    )
    # Banned from a managed chat when the last subscription ran out: lift it, so the invite
    # link of the confirmation works.
    await tx.execute(
        "INSERT INTO moderation_actions (idempotence_key, user_id, chat_id, subscription_id,"
        " action, reason) SELECT 'unban:payment:' || CAST(? AS TEXT) || ':'"
        " || CAST(m.chat_id AS TEXT), m.user_id, m.chat_id, ?, 'unban', 'paid'"
        " FROM memberships m JOIN chats c ON c.id = m.chat_id"
        " WHERE m.user_id = ? AND m.status = 'banned' AND c.is_managed"
        " ON CONFLICT (idempotence_key) DO NOTHING",
        (payment["id"], subscription_id, payment["user_id"]),
    )


async def _saved_method(
    work: PaymentWork, tx: AsyncTransaction, user_id: int, body: dict[str, Any]
) -> int | None:
    method = body.get("payment_method") or {}
    if not method.get("saved") or not method.get("id"):
        return None
    card = method.get("card") or {}
    month = card.get("expiry_month")
    year = card.get("expiry_year")
    method_id: int = await tx.fetchval(
        "INSERT INTO payment_methods (provider_method_id, user_id, method_type, title,"
        " card_last4, card_type, card_expiry_month, card_expiry_year, is_saved)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider, provider_method_id)"
        " DO UPDATE SET is_saved = excluded.is_saved, updated_at = CURRENT_TIMESTAMP"
        " RETURNING id",
        (
            method["id"],
            user_id,
            method.get("type") or "bank_card",
            method.get("title"),
            card.get("last4"),
            card.get("card_type"),
            int(month) if month else None,
            int(year) if year else None,
            True,
        ),
    )
    return method_id
