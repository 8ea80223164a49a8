"""Refunds: what a refund the provider confirms does here.

Only a refund fetched with the shop's credentials (GET /v3/refunds/{id}) counts; a notification
body never does. Each provider refund is recorded once (`refunds`, unique per provider id).

- full (with it, the payment's whole amount is back with the member) of the payment that paid
  the subscription's current period (`applied_period_end` is that period's end): the period it
  paid for is taken back, and auto-renewal stops (reason `refunded`), since the card would
  otherwise be charged for a period nobody wants.
  - The period has begun: the subscription ends at once as an expiry does (status `expired`),
    so ban_monitor removes the member from the paid chats by the same path as any expiry. No
    grace: grace is time to pay, and this member was paid back.
  - It has not begun (a renewal charged ahead of the period's end): the subscription returns
    to the period before it (`prior_period_start`), which the member paid for earlier, and
    ends at its end as any subscription without auto-renewal does.
  The caller tells the member. The refund's effect is `access_ended` either way: the access
  this payment bought is gone.
- full, of a payment whose period has not ended but that a later payment already extended
  (the member paid twice ahead): the days it bought are taken back. The payments of a
  subscription pay for back-to-back periods (each extension starts at the end before it), so
  the periods after it move back by its length, the subscription's with them; a subscription
  whose end then lies in the past ends at once; auto-renewal stops, as above. Effect
  `access_ended`: otherwise one payment would keep two periods, and refunding the later one
  afterwards would hand back the earlier, refunded period.
- partial, or a payment whose period is over (the member had it): recorded only; a partial
  refund alerts (operators decide).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from payments.amounts import amount_minor
from payments.renewals import lock_subscription
from runtime.db import AsyncTransaction
from runtime.errors import TransientError

#: subscriptions.auto_renew_stopped_reason of a subscription a refund ended.
REFUNDED_REASON = "refunded"


@dataclass(frozen=True)
class ProviderRefund:
    """A succeeded refund as the provider's API describes it."""

    refund_id: str
    payment_id: str
    amount_minor: int
    currency: str
    description: str | None
    created_at: datetime | None


def provider_refund(fetched: Mapping[str, Any]) -> ProviderRefund | str:
    """The refund fetched from the provider, or why it is nothing to act on (yet)."""
    refund_id = fetched.get("id")
    payment_id = fetched.get("payment_id")
    if not isinstance(refund_id, str) or not isinstance(payment_id, str):
        return "the refund names no id or payment"
    if fetched.get("status") != "succeeded":
        return f"refund {fetched.get('status')}, not succeeded"
    amount = fetched.get("amount")
    minor = amount_minor(amount)
    currency = amount.get("currency") if isinstance(amount, Mapping) else None
    if minor is None or minor <= 0 or not isinstance(currency, str):
        return f"refund amount {amount!r} is not a positive amount"
    description = fetched.get("description")
    created = fetched.get("created_at")
    try:
        created_at = datetime.fromisoformat(created) if isinstance(created, str) else None
    except ValueError:
        created_at = None
    return ProviderRefund(
        refund_id,
        payment_id,
        minor,
        currency,
        description if isinstance(description, str) else None,
        created_at,
    )


@dataclass(frozen=True)
class RecordedRefund:
    refund_row: int
    kind: str
    #: The subscription whose period the refund took back; None when access was left as it was.
    ended_subscription: int | None
    #: Where that subscription now ends: None when it ended at once, else the end of the earlier
    #: period it returned to, or of the later periods moved back.
    access_until: datetime | None = None
    #: The days of a period a later payment had extended were taken back.
    took_back_days: bool = False


def refund_kind(refunded_before: int, refund: int, paid: int) -> str:
    """'full' when this refund brings the payment's refunds to its whole amount."""
    return "full" if refunded_before + refund >= paid else "partial"


async def record_refund(
    tx: AsyncTransaction, payment: Mapping[str, Any], refund: ProviderRefund, now: datetime
) -> RecordedRefund | None:
    """Record the refund of `payment` (its row) and end the access it paid for, when it is a
    full refund of the live period; None when it was recorded before."""
    subscription_id = payment["subscription_id"]
    if subscription_id is not None:
        # The subscription's row lock first, as every writer of a subscription takes it.
        await lock_subscription(tx, subscription_id)
    known = await tx.fetchval(
        "SELECT id FROM refunds WHERE provider = ? AND provider_refund_id = ?",
        (payment["provider"], refund.refund_id),
    )
    if known is not None:
        return None
    refunded_before = await tx.fetchval(
        "SELECT coalesce(sum(amount_minor), 0) FROM refunds WHERE payment_id = ?",
        (payment["id"],),
    )
    kind = refund_kind(int(refunded_before), refund.amount_minor, payment["amount_minor"])
    ended, access_until, took_back = None, None, False
    # Only the refund that makes it whole takes access back: never twice for one payment.
    completes = kind == "full" and int(refunded_before) < payment["amount_minor"]
    if completes and subscription_id is not None and payment["applied_period_end"]:
        access_until = await _return_to_prior_period(tx, subscription_id, payment, now)
        if access_until is not None:
            ended = subscription_id
        else:
            ended = await _end_live_period(tx, subscription_id, payment["applied_period_end"], now)
        if ended is None:
            ended, access_until = await _take_back_earlier_period(tx, subscription_id, payment, now)
            took_back = ended is not None
    refund_row = await tx.fetchval(
        "INSERT INTO refunds (provider, provider_refund_id, payment_id, amount_minor, currency,"
        " kind, effect, subscription_id, description, refunded_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (provider, provider_refund_id) DO NOTHING RETURNING id",
        (
            payment["provider"],
            refund.refund_id,
            payment["id"],
            refund.amount_minor,
            refund.currency,
            kind,
            "none" if ended is None else "access_ended",
            ended,
            refund.description,
            refund.created_at,
            now,
        ),
    )
    if refund_row is None:
        # Recorded by another process since the check: undo the subscription change with it.
        raise TransientError(f"refund {refund.refund_id} was recorded meanwhile")
    return RecordedRefund(int(refund_row), kind, ended, access_until, took_back)


async def _return_to_prior_period(
    tx: AsyncTransaction, subscription_id: int, payment: Mapping[str, Any], now: datetime
) -> datetime | None:
    """Take back a period that has not begun; the end of the period it returned to, or None
    when the payment's period is not the current one, has begun, or had no earlier one."""
    prior_start = payment["prior_period_start"]
    if prior_start is None:
        return None
    # Read under the row lock record_refund took: nothing changes it until the commit.
    current = await tx.fetchone(
        "SELECT status, current_period_start, current_period_end FROM subscriptions WHERE id = ?",
        (subscription_id,),
    )
    if (
        current is None
        or current["status"] != "active"
        or current["current_period_end"] != payment["applied_period_end"]
        or current["current_period_start"] <= now
    ):
        return None
    prior_end: datetime = current["current_period_start"]
    await tx.execute(
        "UPDATE subscriptions SET current_period_start = ?, current_period_end = ?,"
        " auto_renew = ?, auto_renew_stopped_reason = ?, next_charge_at = NULL, updated_at = ?"
        " WHERE id = ?",
        (prior_start, prior_end, False, REFUNDED_REASON, now, subscription_id),
    )
    return prior_end


async def _end_live_period(
    tx: AsyncTransaction, subscription_id: int, paid_period_end: datetime, now: datetime
) -> int | None:
    """End the subscription if its live period is the one refunded; its id when it ended."""
    ended = await tx.execute(
        "UPDATE subscriptions SET status = 'expired', expired_at = ?, grace_until = NULL,"
        " auto_renew = ?, auto_renew_stopped_reason = ?, next_charge_at = NULL, updated_at = ?"
        " WHERE id = ? AND status IN ('active', 'grace') AND current_period_end = ?",
        (now, False, REFUNDED_REASON, now, subscription_id, paid_period_end),
    )
    return subscription_id if ended else None


async def _take_back_earlier_period(
    tx: AsyncTransaction, subscription_id: int, payment: Mapping[str, Any], now: datetime
) -> tuple[int | None, datetime | None]:
    """Take back the days of a payment a later payment extended, while they last:
    (the subscription's id, where it now ends, or None when that was in the past and it ended
    at once); (None, None) when the payment's period is over or nothing extended it."""
    paid_end: datetime = payment["applied_period_end"]
    if paid_end <= now:
        return None, None
    # The payment applied right after it started where it ended: its prior_period_start is
    # where the refunded period began. A refunded payment's end stays as it was (its history),
    # so an earlier refund's row never counts as the next one.
    after = await tx.fetchall(
        "SELECT p.id, p.applied_period_end, p.prior_period_start FROM payments p"
        " WHERE p.subscription_id = ? AND p.id <> ? AND p.applied_period_end > ?"
        " AND p.status = 'succeeded' AND NOT EXISTS (SELECT 1 FROM refunds r"
        "  WHERE r.payment_id = p.id AND r.effect = 'access_ended')"
        " ORDER BY p.applied_period_end",
        (subscription_id, payment["id"], paid_end),
    )
    current = await tx.fetchone(
        "SELECT status, current_period_start, current_period_end FROM subscriptions WHERE id = ?",
        (subscription_id,),
    )
    if (
        not after
        or after[0]["prior_period_start"] is None
        or current is None
        or current["status"] not in ("active", "grace")
    ):
        return None, None
    length = paid_end - after[0]["prior_period_start"]
    # The next period now follows the one before the refunded payment's.
    await tx.execute(
        "UPDATE payments SET prior_period_start = ? WHERE id = ?",
        (payment["prior_period_start"], after[0]["id"]),
    )
    for later in after:
        await tx.execute(
            "UPDATE payments SET applied_period_end = ? WHERE id = ?",
            (later["applied_period_end"] - length, later["id"]),
        )
    for later in after[1:]:
        if later["prior_period_start"] is not None:
            await tx.execute(
                "UPDATE payments SET prior_period_start = ? WHERE id = ?",
                (later["prior_period_start"] - length, later["id"]),
            )
    end = current["current_period_end"] - length
    over = end <= now  # the days left were the refunded ones: it ends now, as an expiry does
    await tx.execute(
        "UPDATE subscriptions SET current_period_start = ?, current_period_end = ?,"
        " auto_renew = ?, auto_renew_stopped_reason = ?, next_charge_at = NULL, updated_at = ?,"
        " status = CASE WHEN ? THEN 'expired' ELSE status END,"
        " expired_at = CASE WHEN ? THEN ? ELSE expired_at END,"
        " grace_until = CASE WHEN ? THEN NULL ELSE grace_until END"
        " WHERE id = ?",
        (
            current["current_period_start"] - length,
            end,
            False,
            REFUNDED_REASON,
            now,
            over,
            over,
            now,
            over,
            subscription_id,
        ),
    )
    return subscription_id, None if over else end
