"""Payment links for /subscribe, with the idempotence key committed before YooKassa is called.

1. An open payment of the same member and tariff, younger than `reuse_s`, is offered again: a
   member who taps /subscribe twice gets one payment, not two. Looking for it and committing a
   new row are one transaction holding the member's row lock, so two /subscribe handled at the
   same moment cannot both find nothing and both commit a payment.
2. Otherwise a `payments` row with a fresh idempotence key is committed first (status `created`).
3. Then YooKassa is called with that key. If the answer is lost (network, 5xx), the row stays
   `created`: the next /subscribe, or payment_monitor, repeats the call with the same key, so the
   provider never creates a second payment for it. The request is committed with the row
   (metadata `provider_request`): a repeat sends the very same body, which YooKassa requires of
   a repeated key.

Whether the card is saved for auto-renewal is the member's to decide, knowingly: a member who
stopped auto-renewal (/cancel_autorenew) pays once, without saving the card, until they send
/autorenew_on; anyone else is told in the payment message that the card is saved and charged
every period, how much, and how to stop it (`PaymentLink.saves_card`, texts.payment_link). An
open payment is offered again only if it saves the card the same way, and still charges the
tariff's price for the tariff's period (the row keeps both: an admin's edit of the tariff since
makes a new payment on the new terms, and the old one still buys what it said).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from monitors import texts
from payments.client import Answer
from payments.decisions import CreateVerdict, classify_create, stored_request
from payments.renewals import refuse_while_auto_charging
from payments.requests import checkout_request
from payments.store import (
    NewPayment,
    cancel_refused,
    commit_payment,
    record_answer,
    reusable_payment,
    stopped_by_member,
)
from runtime.db import AsyncDatabase, AsyncTransaction, Row


class PaymentProvider(Protocol):
    async def create_payment(self, body: dict[str, Any], idempotence_key: str) -> Answer: ...


@dataclass(frozen=True)
class PaymentLink:
    payment_id: int
    #: The page where the member pays; None when the provider could not be reached.
    confirmation_url: str | None
    reused: bool
    #: The provider refused the request (4xx): a new /subscribe starts over.
    rejected: bool = False
    #: The card is saved and charged every period (auto-renewal); False: a one-time payment.
    saves_card: bool = True


async def request_payment_link(
    db: AsyncDatabase,
    provider: PaymentProvider,
    *,
    user_id: int,
    telegram_id: int,
    tariff: Row,
    return_url: str,
    now: datetime,
    reuse_s: int = 3600,
) -> PaymentLink:
    payment, reused = await _open_or_new_payment(
        db, user_id, telegram_id, tariff, now, return_url, since=now - timedelta(seconds=reuse_s)
    )
    saves_card = bool(payment["save_payment_method"])
    if reused and payment["confirmation_url"]:
        return PaymentLink(
            payment["id"], payment["confirmation_url"], reused=True, saves_card=saves_card
        )
    # The request committed with the row; rows from before requests were stored: rebuilt.
    request = stored_request(payment) or checkout_request(payment, return_url)
    status, body = await provider.create_payment(request, payment["idempotence_key"])
    link = await _record_answer(db, payment, status, body, now, reused=reused)
    return replace(link, saves_card=saves_card)


async def _open_or_new_payment(
    db: AsyncDatabase,
    user_id: int,
    telegram_id: int,
    tariff: Row,
    now: datetime,
    return_url: str,
    *,
    since: datetime,
) -> tuple[Row, bool]:
    """The member's open payment for the tariff (True), or a new one committed (False)."""
    async with db.transaction() as tx:
        # The member's row lock serialises concurrent /subscribe of one member on PostgreSQL
        # (READ COMMITTED: the second sees the first's row once it commits); on SQLite
        # BEGIN IMMEDIATE already does, and the statement is harmless.
        await tx.execute("UPDATE users SET updated_at = updated_at WHERE id = ?", (user_id,))
        save_card = not await stopped_by_member(tx, user_id)
        payment = await _open_payment(tx, user_id, tariff, since, save_card)
        if payment is not None:
            return payment, True
        row = await _create_payment_row(
            tx, user_id, telegram_id, tariff, now, return_url, save_card
        )
        return row, False


async def _open_payment(
    tx: AsyncTransaction, user_id: int, tariff: Row, since: datetime, save_card: bool
) -> Row | None:
    # The link is offered with the tariff's terms (texts.payment_link): the payment handed out
    # again must be what it charges and buys.
    where, params = reusable_payment(
        "payments",
        user_id=user_id,
        tariff_id=tariff["id"],
        price_minor=tariff["price_minor"],
        currency=tariff["currency"],
        period_days=tariff["period_days"],
        since=since,
        save_card=save_card,
    )
    return await tx.fetchone(
        f"SELECT * FROM payments WHERE {where} ORDER BY id DESC LIMIT 1", params
    )


async def _create_payment_row(
    tx: AsyncTransaction,
    user_id: int,
    telegram_id: int,
    tariff: Row,
    now: datetime,
    return_url: str,
    save_card: bool,
) -> Row:
    # Paying while a subscription is live extends it (a renewal of that subscription).
    live_id = await tx.fetchval(
        "SELECT id FROM subscriptions WHERE user_id = ? AND status IN ('active', 'grace')",
        (user_id,),
    )
    if live_id is not None:
        await refuse_while_auto_charging(tx, live_id)  # AutoRenewalInProgress
    new = NewPayment(
        idempotence_key=f"bot:{uuid.uuid4()}",
        user_id=user_id,
        tariff_id=tariff["id"],
        subscription_id=live_id,
        amount_minor=tariff["price_minor"],
        currency=tariff["currency"],
        period_days=tariff["period_days"],
        description=texts.payment_description(tariff["title"], tariff["period_days"]),
        save_payment_method=save_card,
        metadata={"source": "bot", "telegram_id": telegram_id, "tariff_id": tariff["id"]},
    )
    payment_id = await commit_payment(tx, new, return_url, now=now)
    assert payment_id is not None, "a fresh key"
    row = await tx.fetchone("SELECT * FROM payments WHERE id = ?", (payment_id,))
    assert row is not None
    return row


async def _record_answer(
    db: AsyncDatabase,
    payment: Row,
    status: int | None,
    body: dict[str, Any] | None,
    now: datetime,
    *,
    reused: bool,
) -> PaymentLink:
    result = classify_create(status, body)
    if result.verdict is CreateVerdict.REFUSED:
        assert result.reason is not None
        # The request itself was refused: this key is spent, nothing exists at the provider,
        # nothing is to be applied (processed at once, so no monitor looks at it again).
        await cancel_refused(db, payment["id"], result.reason, now)
        return PaymentLink(payment["id"], None, reused=reused, rejected=True)
    if result.verdict is CreateVerdict.RECORD and body:
        await record_answer(db, payment["id"], body, now)
        url = (body.get("confirmation") or {}).get("confirmation_url")
        return PaymentLink(payment["id"], url, reused=reused)
    # Unknown (network, 5xx, 429) or our credentials refused (401): the key is not spent, the
    # next /subscribe or payment_monitor repeats it.
    await db.execute(
        "UPDATE payments SET last_error = ?, updated_at = ? WHERE id = ?",
        ("provider unavailable" if status is None else f"HTTP {status}", now, payment["id"]),
    )
    return PaymentLink(payment["id"], None, reused=reused)
