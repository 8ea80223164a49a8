"""payment_monitor, stage 2: payments the webhook may never report.

Open payments older than PAYMENT_POLL_AFTER_MIN are fetched on `PAYMENT_POLL`, then hourly,
until final; a payment final in the provider's first answer but not applied is fetched again
and applied (never from what was stored).
"""

from __future__ import annotations

from typing import Any

from monitors import metrics
from monitors.pause import pause_point
from monitors.payment_stages.apply import apply_final
from monitors.payment_stages.work import NOT_A_CHARGE, OPEN_STATUSES, PaymentWork
from payments.decisions import (
    ChargeOutcome,
    classify_response,
    next_poll_at,
    poll_overdue,
)
from runtime.errors import IntegrityError, TransientError


async def poll_open(work: PaymentWork) -> int:
    now = work.ctx.clock.now()
    open_payments = await work.claim(
        "payments",
        f"status IN {OPEN_STATUSES} AND provider_payment_id IS NOT NULL AND {NOT_A_CHARGE}"
        " AND created_at <= ? AND (next_check_at IS NULL AND check_attempts = 0"
        " OR next_check_at <= ?)",
        (now - work.config.poll_after, now),
    )
    # Final in the provider's first answer (the API records the status it was given) and
    # not applied yet: fetched again, never applied from what was stored.
    unapplied = await work.claim(
        "payments",
        "processed_at IS NULL AND status IN ('succeeded', 'canceled')"
        f" AND provider_payment_id IS NOT NULL AND {NOT_A_CHARGE}"
        " AND (next_check_at IS NULL OR next_check_at <= ?)",
        (now,),
    )
    payments = [*open_payments, *unapplied]
    for payment in payments:
        if work.ctx.stop_requested:
            await work.release_payment(payment)
            continue
        await _poll_one(work, payment)
    return len(payments)


async def _poll_one(work: PaymentWork, payment: dict[str, Any]) -> None:
    status, body = await work.yookassa.get_payment(payment["provider_payment_id"])
    # Crash tests stop here: the payment is fetched and leased to us, nothing applied yet.
    await pause_point("payment_fetched")
    result = classify_response(status, body)
    if result.outcome in (ChargeOutcome.SUCCEEDED, ChargeOutcome.CANCELED):
        metrics.PAYMENT_POLLS.labels(result="final").inc()
        try:
            await apply_final(work, payment, result, body or {}, source="poll")
            return
        except (TransientError, IntegrityError) as exc:
            error = f"apply: {exc}"
    elif result.outcome is ChargeOutcome.PENDING:
        metrics.PAYMENT_POLLS.labels(result="pending").inc()
        error = None
    else:
        metrics.PAYMENT_POLLS.labels(result="unknown").inc()
        error = f"GET payment: HTTP {status}"
    now = work.ctx.clock.now()
    attempts = payment["check_attempts"] + 1
    # Never given up: an open payment is looked at (hourly, past the schedule) until final.
    next_check = next_poll_at(now, attempts)
    if poll_overdue(attempts):
        error = error or f"still open after {attempts} polls; fetched hourly until final"
        work.log.warning("payment_poll_overdue", payment_id=payment["id"], polls=attempts)
    new_status = body.get("status") if result.outcome is ChargeOutcome.PENDING and body else None
    await work.db.execute(
        "UPDATE payments SET check_attempts = ?, next_check_at = ?, last_error = ?,"
        " status = coalesce(?, status), updated_at = ?, lease_owner = NULL,"
        " lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
        (attempts, next_check, error, new_status, now, payment["id"], work.ctx.owner),
    )
