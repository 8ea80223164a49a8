"""payment_monitor, stage 0: payments committed as `created` whose create call never returned.

After PAYMENT_RESEND_AFTER_S the committed request is sent again with the SAME Idempotence-Key,
so the provider makes one payment either way; its id is recorded and a final answer applied at
once. A key past PAYMENT_KEY_WINDOW_H is never repeated: the provider's payments are listed
(payments.reconcile) and one an earlier call made is recorded and followed; none found, the
payment is canceled (payments.store: party 'merchant' for an expired key, 'yoo_money' for a
refusal) without a notice to the member; a failed listing fails the tick, changing nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any

from monitors import metrics
from monitors.pause import pause_point
from monitors.payment_stages.apply import apply_final
from monitors.payment_stages.work import NOT_A_CHARGE, PaymentWork
from payments.decisions import (
    ChargeOutcome,
    CreateResult,
    CreateVerdict,
    UnsentAction,
    classify_create,
    classify_payment_object,
    decide_unsent_payment,
    expired_key_note,
    next_poll_at,
    next_resend_at,
    stored_request,
)
from payments.reconcile import checkout_matcher, find_payment
from payments.schedules import PAYMENT_POLL
from payments.store import cancel_expired, cancel_refused
from runtime.errors import IntegrityError, MonitorError, TransientError


async def resend_unsent(work: PaymentWork) -> int:
    now = work.ctx.clock.now()
    payments = await work.claim(
        "payments",
        "status = 'created' AND provider_payment_id IS NULL"
        f" AND processed_at IS NULL AND {NOT_A_CHARGE} AND created_at <= ?"
        " AND (next_check_at IS NULL OR next_check_at <= ?)",
        (now - work.config.resend_after, now),
    )
    handled = 0
    for payment in payments:
        if work.ctx.stop_requested:
            await work.release_payment(payment)
            continue
        if await _resend_one(work, payment):
            handled += 1
    return handled


async def _resend_one(work: PaymentWork, payment: dict[str, Any]) -> bool:
    """Settle one payment without a provider id; False when it only waits."""
    now = work.ctx.clock.now()
    config = work.config
    request = stored_request(payment)
    decision = decide_unsent_payment(
        payment["created_at"],
        now,
        grace=config.resend_after,
        key_window=config.key_window,
        has_request=request is not None,
    )
    log = work.log.bind(payment_id=payment["id"])
    if decision.action is UnsentAction.WAIT:
        await _unsent_later(work, payment, payment["check_attempts"], decision.not_before, None)
        metrics.UNSENT_PAYMENTS.labels(outcome="waiting").inc()
        log.info("unsent_payment_waits", until=str(decision.not_before))
        return False
    if decision.action is UnsentAction.EXPIRE:
        listing = await find_payment(
            work.yookassa, payment["created_at"], config.key_window, checkout_matcher(payment)
        )
        if not listing.complete:
            await work.release_payment(payment)
            metrics.UNSENT_PAYMENTS.labels(outcome="listing_failed").inc()
            raise MonitorError(
                f"payment {payment['id']}: its key is past the window and the listing failed"
                f" ({listing.error}); nothing was sent or canceled"
            )
        if listing.found is not None:
            # An earlier call did make it: followed like an answer to the create.
            found = listing.found
            metrics.UNSENT_PAYMENTS.labels(outcome="reconciled").inc()
            log.info("unsent_payment_reconciled", provider_payment_id=found.get("id"))
            reconciled = CreateResult(CreateVerdict.RECORD, classify_payment_object(found))
            try:
                return await _record_resent(work, payment, reconciled, found)
            except IntegrityError as exc:
                # Another row holds this provider id: a fault to look at, never to overwrite.
                log.error("unsent_payment_conflict", error=str(exc))
                attempts = payment["check_attempts"] + 1
                note = f"provider id {found.get('id')}: {exc}"
                await _unsent_later(work, payment, attempts, next_poll_at(now, attempts), note)
                return True
        await _cancel_unsent(
            work,
            payment,
            cancel_expired(
                work.db,
                payment["id"],
                expired_key_note(payment["created_at"], now, config.key_window),
                now,
            ),
        )
        metrics.UNSENT_PAYMENTS.labels(outcome="expired").inc()
        age_h = (now - payment["created_at"]).total_seconds() / 3600
        log.warning("unsent_payment_expired", age_h=round(age_h, 1))
        return True
    assert request is not None, "RESEND is decided only with the stored request"
    status, body = await work.yookassa.create_payment(request, payment["idempotence_key"])
    # Crash tests stop here: the provider answered the repeat, nothing of it is recorded yet.
    await pause_point("checkout_resent")
    result = classify_create(status, body)
    if result.verdict is CreateVerdict.BAD_CREDENTIALS:
        await work.release_payment(payment)
        raise MonitorError("YooKassa refuses the shop's credentials (HTTP 401)")
    if result.verdict is CreateVerdict.REFUSED:
        await _cancel_unsent(
            work,
            payment,
            cancel_refused(
                work.db,
                payment["id"],
                f"the provider refused the repeated request: {result.reason}",
                now,
            ),
        )
        metrics.UNSENT_PAYMENTS.labels(outcome="refused").inc()
        log.warning("unsent_payment_refused", reason=result.reason)
        return True
    if result.verdict is CreateVerdict.RECORD:
        try:
            return await _record_resent(work, payment, result, body or {})
        except IntegrityError as exc:
            # Another row holds this provider id: a fault to look at, never to overwrite.
            log.error("unsent_payment_conflict", error=str(exc))
            error = f"provider id {result.charge.payment_id}: {exc}"
    else:
        error = f"repeat create: HTTP {status}" if status else "repeat create: no answer"
    attempts = payment["check_attempts"] + 1
    retry_at = next_resend_at(
        now,
        payment["created_at"],
        attempts,
        key_window=config.key_window,
        retry_after_s=result.charge.retry_after_s,
    )
    await _unsent_later(work, payment, attempts, retry_at, error)
    metrics.UNSENT_PAYMENTS.labels(outcome="retried").inc()
    log.info("unsent_payment_retry", attempts=attempts, retry_at=retry_at.isoformat())
    return True


async def _record_resent(
    work: PaymentWork, payment: dict[str, Any], result: CreateResult, body: dict[str, Any]
) -> bool:
    """Record the provider's payment under the key; apply it at once when final."""
    now = work.ctx.clock.now()
    charge = result.charge
    final = charge.outcome in (ChargeOutcome.SUCCEEDED, ChargeOutcome.CANCELED)
    # Final statuses are written by apply_final (with paid_at); open ones here.
    status = body.get("status") if charge.outcome is ChargeOutcome.PENDING else None
    url = (body.get("confirmation") or {}).get("confirmation_url")
    next_check = None if final else now + timedelta(seconds=PAYMENT_POLL.delay_s(1))
    recorded = await work.db.execute(
        "UPDATE payments SET provider_payment_id = ?, status = coalesce(?, status),"
        " confirmation_url = coalesce(?, confirmation_url), check_attempts = 0,"
        " next_check_at = ?, last_error = NULL, updated_at = ?, lease_owner = NULL,"
        " lease_expires_at = NULL WHERE id = ? AND provider_payment_id IS NULL"
        " AND status = 'created'",
        (charge.payment_id, status, url, next_check, now, payment["id"]),
    )
    log = work.log.bind(payment_id=payment["id"], provider_payment_id=charge.payment_id)
    if not recorded:
        # The producer's own retry recorded the answer meanwhile: nothing left to do here.
        await work.release_payment(payment)
        log.info("unsent_payment_recorded_elsewhere")
        return False
    metrics.UNSENT_PAYMENTS.labels(outcome="recorded").inc()
    log.info("unsent_payment_recorded", status=body.get("status"))
    if final:
        recorded_row = {**payment, "provider_payment_id": charge.payment_id}
        try:
            await apply_final(work, recorded_row, charge, body, source="resend")
        except (TransientError, IntegrityError) as exc:
            # Left open with its provider id: the polling stage applies it.
            log.warning("unsent_payment_apply_failed", error=str(exc))
    return True


async def _unsent_later(
    work: PaymentWork,
    payment: dict[str, Any],
    attempts: int,
    at: datetime | None,
    error: str | None,
) -> None:
    await work.db.execute(
        "UPDATE payments SET check_attempts = ?, next_check_at = ?,"
        " last_error = coalesce(?, last_error), updated_at = ?, lease_owner = NULL,"
        " lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
        (attempts, at, error, work.ctx.clock.now(), payment["id"], work.ctx.owner),
    )


async def _cancel_unsent(
    work: PaymentWork, payment: dict[str, Any], cancel: Awaitable[bool]
) -> None:
    """Count a payment the provider has no trace of as canceled, or let it go if it was not."""
    if await cancel:
        metrics.PAYMENTS_FINALIZED.labels(status="canceled", source="resend").inc()
    else:
        await work.release_payment(payment)
