"""payment_monitor, stage 1 for `refund.*` events: a refund the provider confirms.

The refund is fetched by id (GET /v3/refunds/{id}); the event's body is never trusted, and a
refund the provider does not know changes nothing. Its payment is found by the provider id,
and payments.refunds records it once: a full refund of the live period ends the subscription as
an expiry does (ban_monitor then removes the member from the paid chats) and the member is told
through the outbox (a renewal refunded before its period began leaves the period paid before
standing: payments/refunds.py); a partial refund is recorded and counted (`domos_refunds_total{kind=
"partial"}`, alert DomosPartialRefund). events.py finishes or retries the event with the
verdict returned here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitors import metrics, texts
from monitors.outbox import enqueue
from monitors.payment_stages.work import PaymentWork
from payments.refunds import ProviderRefund, RecordedRefund, provider_refund, record_refund
from runtime.errors import IntegrityError, TransientError


@dataclass(frozen=True)
class Verdict:
    #: applied, ignored, failed (the event is finished), or retry.
    outcome: str
    note: str | None = None


async def process_refund(work: PaymentWork, event: dict[str, Any], log: Any) -> Verdict:
    status, fetched = await work.yookassa.get_refund(event["object_id"])
    if status == 404:
        log.warning("refund_event_unknown_refund")
        return Verdict("ignored", "the provider does not know this refund")
    if status != 200 or fetched is None:
        return Verdict("retry", f"GET refund: HTTP {status}")
    if fetched.get("id") != event["object_id"]:
        return Verdict("failed", f"the provider answered with refund {fetched.get('id')!r}")
    refund = provider_refund(fetched)
    if isinstance(refund, str):
        return Verdict("ignored", refund)
    payment = await work.db.fetchone(
        "SELECT * FROM payments WHERE provider = 'yookassa' AND provider_payment_id = ?",
        (refund.payment_id,),
    )
    if payment is None:
        return Verdict("retry", f"refund of payment {refund.payment_id}, not known here")
    if payment["processed_at"] is None:
        # Applied later, the payment would grant the period the refund took back: the refund
        # waits until the payment's outcome is applied (polling does it within minutes).
        return Verdict("retry", f"payment {payment['id']} is not applied yet")
    if refund.currency != payment["currency"]:
        note = f"refund in {refund.currency} of a payment in {payment['currency']}"
        return Verdict("failed", note)
    try:
        recorded = await _record(work, payment, refund)
    except (TransientError, IntegrityError) as exc:
        return Verdict("retry", f"record refund: {exc}")
    if recorded is None:
        return Verdict("ignored", "refund recorded before")
    metrics.REFUNDS.labels(kind=recorded.kind).inc()
    fields = {
        "payment_id": payment["id"],
        "refund_id": refund.refund_id,
        "amount_minor": refund.amount_minor,
        "kind": recorded.kind,
        "ended_subscription": recorded.ended_subscription,
    }
    if recorded.kind == "partial":
        # Money went back but access stays: an operator decides what it means.
        log.warning("refund_partial", **fields)
    else:
        log.info("refund_recorded", **fields)
    return Verdict("applied")


async def _record(
    work: PaymentWork, payment: dict[str, Any], refund: ProviderRefund
) -> RecordedRefund | None:
    now = work.ctx.clock.now()
    async with work.db.transaction() as tx:
        recorded = await record_refund(tx, payment, refund, now)
        if recorded is not None and recorded.ended_subscription is not None:
            user = await tx.fetchone(
                "SELECT id, telegram_id FROM users WHERE id = ?", (payment["user_id"],)
            )
            assert user is not None, "payments references its user"
            await enqueue(
                tx,
                dedupe_key=f"refund:{refund.refund_id}",
                chat_id=user["telegram_id"],
                user_id=user["id"],
                kind="refund",
                text=_notice(work, payment, recorded),
                priority=10,
            )
    return recorded


def _notice(work: PaymentWork, payment: dict[str, Any], recorded: RecordedRefund) -> str:
    minor, currency = payment["amount_minor"], payment["currency"]
    if recorded.access_until is None:
        return texts.refunded(minor, currency)
    tz = work.ctx.settings.timezone
    if recorded.took_back_days:
        return texts.refunded_days(minor, currency, recorded.access_until, tz)
    return texts.refunded_renewal(minor, currency, recorded.access_until, tz)
