"""The payment rows' writes that every producer and consumer shares, each written once.

- `commit_payment`: the row as `created`, with its exact request (metadata `provider_request`),
  committed before the provider is called;
- `record_answer`: the provider's answer to the create call;
- `cancel_refused` / `cancel_expired`: a payment the provider has no trace of, closed at once;
- `extend_subscription`: a paid period moved onto the subscription, exactly once;
- `stopped_by_member` / `charge_due_at`: whether the member's own "stop auto-renewal" is in
  force, and when a saved card is charged for a period (one home for both).

A member's own stop (/cancel_autorenew: `auto_renew_stopped_reason` 'user') sticks until the
member turns auto-renewal on again (the bot's /autorenew_on): no payment, by the bot or the
API, switches it back on, whatever card it saved. Other stops (a hard decline, a refund) end
with a payment that saves a card with the member's consent.

The cancellation party follows YooKassa's `cancellation_details.party`: who decided. A create
request the provider refuses was refused by YooKassa (`yoo_money`); a key left unsent past the
key window is given up by us (`merchant`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from payments.decisions import EXPIRED_KEY_REASON, PROVIDER_REQUEST
from payments.requests import checkout_request
from runtime.db import AsyncDatabase, AsyncTransaction

#: cancellation_reason of a create request the provider refused (the code is in last_error).
REFUSED_REASON = "request_rejected"
REFUSED_PARTY = "yoo_money"
#: subscriptions.auto_renew_stopped_reason when the member stopped auto-renewal themselves.
STOPPED_BY_MEMBER = "user"
EXPIRED_PARTY = "merchant"
#: cancellation_reason of a renewal charge never sent: auto-renewal was stopped, the
#: subscription ended or was paid by hand after the charge was planned.
NOT_WANTED_REASON = "charge_no_longer_wanted"


class Period(Protocol):
    """A subscription period (monitors.decisions.periods.Period)."""

    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime: ...


@dataclass(frozen=True)
class NewPayment:
    """A member's checkout payment, before it is committed."""

    idempotence_key: str
    user_id: int
    tariff_id: int
    #: The live subscription a renewal paid by hand extends; None for a first payment.
    subscription_id: int | None
    amount_minor: int
    currency: str
    #: The days the payment buys (the tariff's period_days now, as offered): applied as they
    #: are, whatever the tariff says when the payment succeeds.
    period_days: int
    description: str
    save_payment_method: bool
    #: The producer's own fields (source, telegram_id, tariff_id), sent on in the request.
    metadata: dict[str, Any]

    @property
    def kind(self) -> str:
        return "first" if self.subscription_id is None else "renewal"


async def commit_payment(
    tx: AsyncTransaction, new: NewPayment, return_url: str, *, now: datetime | None = None
) -> int | None:
    """Insert the row with the request it will send; None when its key is already taken.

    `now` also makes the row due for payment_monitor's checks at once (the bot's); without it
    the database clock stamps the row.
    """
    columns = [
        "idempotence_key",
        "user_id",
        "tariff_id",
        "subscription_id",
        "kind",
        "amount_minor",
        "currency",
        "period_days",
        "description",
        "save_payment_method",
        "metadata",
    ]
    values: list[Any] = [
        new.idempotence_key,
        new.user_id,
        new.tariff_id,
        new.subscription_id,
        new.kind,
        new.amount_minor,
        new.currency,
        new.period_days,
        new.description,
        new.save_payment_method,
        new.metadata,
    ]
    if now is not None:
        columns += ["next_check_at", "created_at", "updated_at"]
        values += [now, now, now]
    payment_id = await tx.fetchval(
        f"INSERT INTO payments ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        " ON CONFLICT (idempotence_key) DO NOTHING RETURNING id",
        tuple(values),
    )
    if payment_id is None:
        return None
    row = await tx.fetchone("SELECT * FROM payments WHERE id = ?", (payment_id,))
    assert row is not None
    metadata = {**row["metadata"], PROVIDER_REQUEST: checkout_request(row, return_url)}
    await tx.execute("UPDATE payments SET metadata = ? WHERE id = ?", (metadata, payment_id))
    return int(payment_id)


async def record_answer(
    db: AsyncDatabase, payment_id: int, answer: dict[str, Any], now: datetime
) -> bool:
    """Record the provider's payment (id, status, checkout page) on a row still `created`.

    The status is the provider's as given: a final one is fetched again and applied by
    payment_monitor at its next tick, never applied from this answer.
    """
    status = answer.get("status")
    confirmation = answer.get("confirmation") or {}
    details = answer.get("cancellation_details") or {}
    recorded = await db.execute(
        "UPDATE payments SET provider_payment_id = ?, status = ?, confirmation_url = ?,"
        " cancellation_party = ?, cancellation_reason = ?, paid_at = ?, last_error = NULL,"
        " updated_at = ? WHERE id = ? AND status = 'created'",
        (
            answer["id"],
            status,
            confirmation.get("confirmation_url"),
            details.get("party"),
            details.get("reason"),
            now if status == "succeeded" else None,
            now,
            payment_id,
        ),
    )
    return bool(recorded)


async def _cancel_unsent(
    db: AsyncDatabase | AsyncTransaction,
    payment_id: int,
    party: str,
    reason: str,
    detail: str,
    now: datetime,
) -> bool:
    """Cancel a row without a provider payment; processed at once: nothing is to be applied
    and nobody is told (its checkout page never reached anyone). False when it was not open."""
    canceled = await db.execute(
        "UPDATE payments SET status = 'canceled', cancellation_party = ?,"
        " cancellation_reason = ?, last_error = ?, processed_at = ?, next_check_at = NULL,"
        " updated_at = ?, lease_owner = NULL, lease_expires_at = NULL"
        " WHERE id = ? AND status = 'created' AND provider_payment_id IS NULL"
        " AND processed_at IS NULL",
        (party, reason, detail[:500], now, now, payment_id),
    )
    return bool(canceled)


async def cancel_refused(db: AsyncDatabase, payment_id: int, detail: str, now: datetime) -> bool:
    """The provider refused the create request (4xx): this key is spent."""
    return await _cancel_unsent(db, payment_id, REFUSED_PARTY, REFUSED_REASON, detail, now)


async def cancel_expired(
    db: AsyncDatabase | AsyncTransaction, payment_id: int, detail: str, now: datetime
) -> bool:
    """Never confirmed, and its key is too old to be repeated without risking a second payment."""
    return await _cancel_unsent(db, payment_id, EXPIRED_PARTY, EXPIRED_KEY_REASON, detail, now)


async def cancel_unwanted(
    db: AsyncDatabase | AsyncTransaction, payment_id: int, detail: str, now: datetime
) -> bool:
    """A renewal charge whose subscription no longer wants it, and which the provider never
    received (listed): closed without a call."""
    return await _cancel_unsent(db, payment_id, EXPIRED_PARTY, NOT_WANTED_REASON, detail, now)


async def extend_subscription(
    tx: AsyncTransaction,
    subscription_id: int,
    *,
    from_end: datetime,
    period: Period,
    next_charge_at: datetime | None,
    now: datetime,
    lapsed_too: bool = False,
    tariff_id: int | None = None,
    method_id: int | None = None,
    auto_renew: bool | None = None,
) -> bool:
    """Move the subscription onto `period` if its period still ends at `from_end`; False when it
    does not (extended already, or changed meanwhile), so a period is added exactly once.

    Only a live (active, grace) subscription is extended, unless `lapsed_too`: a saved-card
    charge paid for this very period renews even a subscription that lapsed while it ran.
    Auto-renewal switched on (`auto_renew` true) clears the reason it had been stopped; a
    new saved card (`method_id`) alone does not (a member's own stop stays).
    """
    live_only = "" if lapsed_too else " AND status IN ('active', 'grace')"
    extended = await tx.execute(
        "UPDATE subscriptions SET current_period_start = ?, current_period_end = ?,"
        " status = 'active', grace_until = NULL, tariff_id = coalesce(?, tariff_id),"
        " payment_method_id = coalesce(?, payment_method_id),"
        " auto_renew = coalesce(?, auto_renew),"
        " auto_renew_stopped_reason = CASE WHEN ? THEN NULL"
        " ELSE auto_renew_stopped_reason END, next_charge_at = ?, updated_at = ?"
        " WHERE id = ? AND current_period_end = ?" + live_only,
        (
            period.start,
            period.end,
            tariff_id,
            method_id,
            auto_renew,
            bool(auto_renew),
            next_charge_at,
            now,
            subscription_id,
            from_end,
        ),
    )
    return bool(extended)


async def stopped_by_member(db: AsyncDatabase | AsyncTransaction, user_id: int) -> bool:
    """Whether the member's own "stop auto-renewal" is in force: their live subscription, else
    their latest one, was stopped by them and not switched on since."""
    reason = await db.fetchval(
        "SELECT auto_renew_stopped_reason FROM subscriptions WHERE user_id = ?"
        " ORDER BY CASE WHEN status IN ('active', 'grace') THEN 0 ELSE 1 END,"
        " current_period_end DESC, id DESC LIMIT 1",
        (user_id,),
    )
    return bool(reason == STOPPED_BY_MEMBER)


def reusable_payment(
    alias: str,
    *,
    user_id: int,
    tariff_id: int,
    price_minor: int,
    currency: str,
    period_days: int,
    since: datetime,
    save_card: bool,
) -> tuple[str, tuple[Any, ...]]:
    """SQL condition (on payments as `alias`) and its parameters: the member's open payment of
    the tariff that the bot's /subscribe and the API's checkout hand out again instead of a
    second checkout page the member could pay too. Not yet sent or paid, made since `since`,
    saving the card the same way, and still at the tariff's price and period: a payment offered
    before an admin edited the tariff keeps its own terms and is not offered as the new ones."""
    a = alias
    where = (
        f"{a}.user_id = ? AND {a}.tariff_id = ? AND {a}.created_at >= ?"
        f" AND {a}.status IN ('created', 'pending') AND {a}.payment_method_id IS NULL"
        f" AND {a}.save_payment_method = ? AND {a}.amount_minor = ? AND {a}.currency = ?"
        f" AND coalesce({a}.period_days, ?) = ?"
    )
    params = (user_id, tariff_id, since, save_card, price_minor, currency, period_days, period_days)
    return where, params


def charge_due_at(period_end: datetime, charge_ahead: timedelta) -> datetime:
    """When the saved card is charged for the period after the one ending at `period_end`
    (subscriptions.next_charge_at): `charge_ahead` (RENEW_CHARGE_AHEAD_H) before that end."""
    return period_end - charge_ahead
