"""payment_monitor, stage 1: provider events (YooKassa webhooks botapi stored).

The body is not trusted: the payment is fetched by id and its real status applied. Each event
is claimed and finished with an outcome (applied, ignored, failed), or retried on `EVENT_RETRY`.
A payment whose provider id was never recorded is found by the fetched payment's metadata
(`payment_row`), checked against the row, and its id recorded; a charge's events are left to
recurrent_payments. Refund events go to refunds.py (the refund fetched, recorded once).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from monitors import metrics
from monitors.pause import pause_point
from monitors.payment_stages.apply import apply_final
from monitors.payment_stages.refunds import process_refund
from monitors.payment_stages.work import PaymentWork
from payments.decisions import (
    ChargeOutcome,
    classify_payment_object,
    classify_response,
    payment_reference,
    reference_mismatch,
)
from payments.schedules import PAYMENT_POLL
from runtime.errors import IntegrityError, TransientError
from runtime.retry import RetrySchedule

#: Provider events whose payment is unknown here or unreachable there: retried, then failed.
EVENT_RETRY = RetrySchedule(base_s=10.0, cap_s=600.0, max_attempts=8)


async def process_events(work: PaymentWork) -> int:
    now = work.ctx.clock.now()
    events = await work.claim(
        "provider_events", "processed_at IS NULL AND next_attempt_at <= ?", (now,)
    )
    for event in events:
        if work.ctx.stop_requested:
            await _release_event(work, event)
            continue
        await _process_event(work, event)
    return len(events)


async def _process_event(work: PaymentWork, event: dict[str, Any]) -> None:
    log = work.log.bind(event_id=event["id"], event_key=event["event_key"])
    if event["event_type"].startswith("refund."):
        verdict = await process_refund(work, event, log)
        if verdict.outcome == "retry":
            await _retry_event(work, event, verdict.note or "retry")
        else:
            await _finish_event(work, event, verdict.outcome, verdict.note)
        return
    if not event["event_type"].startswith("payment."):
        await _finish_event(work, event, "ignored", "not a payment event")
        return
    status, body = await work.yookassa.get_payment(event["object_id"])
    # Crash tests stop here: the event is leased to us and its payment fetched, nothing applied.
    await pause_point("event_fetched")
    if status == 404:
        await _finish_event(work, event, "ignored", "the provider does not know this payment")
        log.warning("provider_event_unknown_payment")
        return
    result = classify_response(status, body)
    if result.outcome in (ChargeOutcome.UNKNOWN, ChargeOutcome.REJECTED):
        await _retry_event(work, event, f"GET payment: HTTP {status}")
        return
    fetched = body or {}
    payment = await work.db.fetchone(
        "SELECT * FROM payments WHERE provider = 'yookassa' AND provider_payment_id = ?",
        (event["object_id"],),
    )
    if payment is None:
        payment = await _match_unrecorded(work, event, fetched, log)
        if payment is None:
            return  # the event was finished or retried there
    if await _is_charge(work, payment["id"]):
        await _finish_event(
            work, event, "ignored", "renewal charges are reconciled by recurrent_payments"
        )
        return
    if (
        result.outcome is ChargeOutcome.SUCCEEDED
        and payment["status"] == "canceled"
        and payment["processed_at"] is not None
    ):
        # Only a payment we canceled uncalled (its key expired, its repeat was refused)
        # can be paid after all: the member paid for nothing. Money is never moved here.
        note = (
            f"paid at the provider, but payment {payment['id']} was canceled here"
            f" ({payment['cancellation_reason']}): refund it or apply it by hand"
        )
        await _finish_event(work, event, "failed", note)
        metrics.UNSENT_PAYMENTS.labels(outcome="paid_after_cancel").inc()
        log.error("payment_paid_after_cancel", payment_id=payment["id"])
        return
    if result.outcome is ChargeOutcome.PENDING:
        await _finish_event(work, event, "ignored", f"payment still {fetched.get('status')}")
        return
    try:
        applied = await apply_final(work, payment, result, fetched, source="webhook")
    except (TransientError, IntegrityError) as exc:
        await _retry_event(work, event, f"apply: {exc}")
        return
    if applied:
        await _finish_event(work, event, "applied", None)
    else:
        await _finish_event(work, event, "ignored", "outcome applied before")


async def _is_charge(work: PaymentWork, payment_id: int) -> bool:
    found = await work.db.fetchval(
        "SELECT id FROM charge_attempts WHERE payment_id = ?", (payment_id,)
    )
    return found is not None


async def _match_unrecorded(
    work: PaymentWork, event: dict[str, Any], fetched: dict[str, Any], log: Any
) -> dict[str, Any] | None:
    """The row of a provider payment whose id was never recorded, found by the metadata of
    the fetched payment (what our request sent), with the id now recorded on it. None when
    the event was finished or retried instead."""
    object_id = event["object_id"]
    reference = payment_reference(fetched)
    if reference is None:
        await _retry_event(work, event, "no local payment with this provider id or metadata")
        return None
    if reference.charge_key is not None:
        charge = await work.db.fetchval(
            "SELECT p.id FROM payments p JOIN charge_attempts ca ON ca.payment_id = p.id"
            " WHERE p.idempotence_key = ?",
            (reference.charge_key,),
        )
        if charge is None:
            await _retry_event(work, event, "its metadata names a charge attempt not known here")
            return None
        # recurrent_payments repeats the attempt's key and gets this very payment back.
        await _finish_event(
            work, event, "ignored", "renewal charges are reconciled by recurrent_payments"
        )
        return None
    row = await work.db.fetchone("SELECT * FROM payments WHERE id = ?", (reference.payment_row,))
    if row is None:
        await _retry_event(
            work,
            event,
            f"its metadata names payment {reference.payment_row}, which does not exist here",
        )
        return None
    problem = reference_mismatch(row, fetched)
    if problem is None and row["provider_payment_id"] is not None:
        # Two provider payments for one row: an earlier repeat past the key window.
        problem = f"the row already has provider payment {row['provider_payment_id']}"
    if problem is not None:
        await _finish_event(
            work, event, "failed", f"its metadata names payment {row['id']}, but {problem}"
        )
        log.error("provider_event_mismatch", payment_id=row["id"], problem=problem)
        return None
    try:
        recorded = await _record_matched(work, row, object_id, fetched)
    except IntegrityError as exc:
        # Recorded on another row meanwhile: the next attempt finds it by its id.
        await _retry_event(work, event, f"record provider id: {exc}")
        return None
    if recorded is None or recorded["provider_payment_id"] != object_id:
        await _retry_event(work, event, "the row changed while its provider id was recorded")
        return None
    metrics.UNSENT_PAYMENTS.labels(outcome="matched").inc()
    log.info("provider_event_matched", payment_id=row["id"], provider_payment_id=object_id)
    return recorded


async def _record_matched(
    work: PaymentWork, row: dict[str, Any], object_id: str, fetched: dict[str, Any]
) -> dict[str, Any] | None:
    now = work.ctx.clock.now()
    charge = classify_payment_object(fetched)
    # An open status is recorded as it is; a final one is left to apply_final (paid_at).
    status = fetched.get("status") if charge.outcome is ChargeOutcome.PENDING else None
    url = (fetched.get("confirmation") or {}).get("confirmation_url")
    followed = await work.db.execute(
        "UPDATE payments SET provider_payment_id = ?, status = coalesce(?, status),"
        " confirmation_url = coalesce(confirmation_url, ?), check_attempts = 0,"
        " next_check_at = ?, last_error = NULL, updated_at = ?"
        " WHERE id = ? AND provider_payment_id IS NULL AND status = 'created'"
        " AND processed_at IS NULL",
        (
            object_id,
            status,
            url,
            now + timedelta(seconds=PAYMENT_POLL.delay_s(1)),
            now,
            row["id"],
        ),
    )
    if not followed:
        # Already final here (canceled uncalled, or refused): the id is kept for the record.
        await work.db.execute(
            "UPDATE payments SET provider_payment_id = ?, updated_at = ?"
            " WHERE id = ? AND provider_payment_id IS NULL",
            (object_id, now, row["id"]),
        )
    found = await work.db.fetchone("SELECT * FROM payments WHERE id = ?", (row["id"],))
    return dict(found) if found is not None else None


async def _finish_event(
    work: PaymentWork, event: dict[str, Any], outcome: str, note: str | None
) -> None:
    now = work.ctx.clock.now()
    await work.db.execute(
        "UPDATE provider_events SET processed_at = ?, outcome = ?, last_error = ?,"
        " attempts = attempts + 1, lease_owner = NULL, lease_expires_at = NULL"
        " WHERE id = ? AND lease_owner = ?",
        (now, outcome, note, event["id"], work.ctx.owner),
    )
    metrics.PROVIDER_EVENTS.labels(outcome=outcome).inc()


async def _retry_event(work: PaymentWork, event: dict[str, Any], error: str) -> None:
    attempts = event["attempts"] + 1
    retry_at = EVENT_RETRY.next_attempt_at(work.ctx.clock.now(), attempts)
    if retry_at is None:
        await _finish_event(work, event, "failed", error)
        work.log.error("provider_event_failed", event_id=event["id"], error=error)
        return
    await work.db.execute(
        "UPDATE provider_events SET attempts = ?, next_attempt_at = ?, last_error = ?,"
        " lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
        (attempts, retry_at, error[:500], event["id"], work.ctx.owner),
    )
    metrics.PROVIDER_EVENTS.labels(outcome="retried").inc()


async def _release_event(work: PaymentWork, event: dict[str, Any]) -> None:
    await work.db.execute(
        "UPDATE provider_events SET lease_owner = NULL, lease_expires_at = NULL"
        " WHERE id = ? AND lease_owner = ?",
        (event["id"], work.ctx.owner),
    )
