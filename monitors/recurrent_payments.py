"""recurrent_payments: charge auto-renewing subscriptions with their saved payment method.

Never charges a period twice:
1. plan (one transaction): for each due subscription a charge_attempts row and its payments row
   are committed with an Idempotence-Key derived from (subscription, period, attempt number). The
   partial unique index `charge_attempts_one_live_per_period_idx` makes a second live attempt for
   the same period impossible, whichever replica plans it. The payment row keeps the period's
   days (`payments.period_days`): a success applies the period planned, not the tariff as an
   admin may have edited it since.
2. execute (work-claiming): open attempts are claimed; 'created' ones are POSTed with their
   committed key (a repeat after a crash gets the provider's original payment back), 'pending'
   ones are fetched. The answer is applied in one transaction that extends the subscription only
   if its period end is still the one being charged. A 'created' attempt older than the key
   window (PAYMENT_KEY_WINDOW_H) is never POSTed again: the provider may have forgotten the key
   and a repeat would be a second charge. It is reconciled by listing the provider's payments
   instead (payments.reconcile): found, it is applied once; not found, it is closed as not sent
   and a new attempt with a new key follows; a failed listing fails the tick. Nor is one POSTed
   again once its subscription no longer wants it (`charge_wanted`: auto-renewal stopped, a
   refund ended it, a payment by hand moved it on): it is listed the same way, and closed.

Soft declines are retried on `SOFT_DECLINE` with a new attempt (and so a new key, as YooKassa
requires), never past the grace end; hard declines stop auto-renewal and notify the member.
Settings (`config`: payments.settings.PaymentSettings, built by the runner): RENEW_CHARGE_AHEAD_H
(24), RENEW_GRACE_DAYS (3), RENEW_BATCH_SIZE (50), RENEW_LEASE_S (120: how long a claimed attempt
stays with a process that may have died).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitors import metrics, texts
from monitors.decisions.periods import Period, charge_idempotence_key, period_after
from monitors.outbox import enqueue
from monitors.pause import pause_point
from payments.client import YooKassaClient
from payments.decisions import (
    EXPIRED_KEY_REASON,
    ChargeOutcome,
    ChargeResult,
    DeclineAction,
    classify_payment_object,
    classify_response,
    credentials_refused,
    decide_after_decline,
    expired_key_note,
    key_expired,
)
from payments.entitlement import entitling
from payments.reconcile import charge_matcher, find_payment
from payments.renewals import lock_subscription, open_manual_renewal
from payments.requests import charge_request
from payments.settings import PaymentSettings
from payments.store import (
    NOT_WANTED_REASON,
    cancel_expired,
    cancel_unwanted,
    charge_due_at,
    extend_subscription,
)
from runtime.db import AsyncDatabase, AsyncTransaction
from runtime.errors import MonitorError
from runtime.metrics import start_at_zero
from runtime.monitor import Monitor

#: A grace that ran out is over even before tsmonitor marks it expired (payments.entitlement):
#: the member is out, and a charge would pay for a period that began days ago.
_DUE = f"""
SELECT s.id, s.user_id, s.tariff_id, s.current_period_end, s.grace_until, s.payment_method_id,
       pm.provider_method_id, t.price_minor, t.currency, t.period_days
FROM subscriptions s
JOIN tariffs t ON t.id = s.tariff_id
JOIN payment_methods pm ON pm.id = s.payment_method_id
WHERE s.auto_renew AND {entitling("s")} AND s.current_period_end <= ?
  AND pm.revoked_at IS NULL
  AND NOT EXISTS (
    SELECT 1 FROM charge_attempts ca
    WHERE ca.subscription_id = s.id AND ca.period_end = s.current_period_end
      AND (ca.status IN ('created', 'pending', 'succeeded')
           OR (ca.status = 'declined' AND (ca.next_retry_at IS NULL OR ca.next_retry_at > ?))))
"""
#: Parameters: now, charge horizon, now, batch size.
DUE_SUBSCRIPTIONS = _DUE + "ORDER BY s.current_period_end, s.id LIMIT ?"
#: The same test for one subscription, repeated under its row lock. Parameters: now, horizon,
#: now, id.
STILL_DUE = _DUE + "AND s.id = ?"


def charge_wanted(attempt: dict[str, Any], subscription: dict[str, Any]) -> bool:
    """Whether the subscription still wants the period `attempt` charges: auto-renewing, live,
    and still ending where the attempt was planned (a payment by hand has not moved it on)."""
    return (
        bool(subscription["auto_renew"])
        and subscription["subscription_status"] in ("active", "grace")
        and subscription["current_period_end"] == attempt["period_end"]
    )


class LeaseLost(MonitorError):
    """A claimed attempt was taken over (its lease ran out) or finished by another process."""


class RecurrentPayments(Monitor):
    name = "recurrent_payments"
    interval_s = 60.0
    mode = "claiming"

    config_type = PaymentSettings
    config: PaymentSettings

    async def setup(self) -> None:
        # Rare outcomes: their series start at 0 so that the first one shows as an increase.
        start_at_zero(metrics.CHARGE_RECONCILIATIONS, "outcome", ("found", "not_sent", "failed"))
        self.yookassa = YooKassaClient(self.ctx.settings)
        await self.yookassa.open()

    async def teardown(self) -> None:
        await self.yookassa.close()

    async def tick(self) -> int:
        planned = await self.plan_due()
        executed = await self.execute_open()
        return planned + executed

    # --- 1. plan: commit the attempt and its key before any call -------------------------------

    async def plan_due(self) -> int:
        now = self.ctx.clock.now()
        rows = await self.db.fetchall(
            DUE_SUBSCRIPTIONS,
            (now, now + self.config.charge_ahead, now, self.config.renew_batch_size),
        )
        planned = 0
        for row in rows:
            if await self._plan_one(row, now):
                planned += 1
        return planned

    async def _plan_one(self, listed: dict[str, Any], now: datetime) -> bool:
        tz = self.ctx.settings.timezone
        async with self.db.transaction() as tx:
            manual = await open_manual_renewal(tx, listed["id"])
            # The batch was read before this lock: another replica may have charged or declined
            # the period since; planning from the stale row would charge ahead of its retry time.
            horizon = now + self.config.charge_ahead
            sub = await tx.fetchone(STILL_DUE, (now, horizon, now, listed["id"]))
            if sub is None:
                return False
            period = period_after(sub["current_period_end"], days=sub["period_days"], tz=tz)
            if manual is not None:
                # The member is paying by hand: charging the card too could take two periods.
                self.log.info("charge_postponed", subscription_id=sub["id"], payment_id=manual)
                return False
            attempt_no = 1 + int(
                await tx.fetchval(
                    "SELECT coalesce(max(attempt_no), 0) FROM charge_attempts"
                    " WHERE subscription_id = ? AND period_end = ?",
                    (sub["id"], sub["current_period_end"]),
                )
            )
            key = charge_idempotence_key(sub["id"], period, attempt_no)
            attempt_id = await tx.fetchval(
                "INSERT INTO charge_attempts (subscription_id, period_end, attempt_no,"
                " idempotence_key, payment_method_id, amount_minor, currency, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING RETURNING id",
                (
                    sub["id"],
                    sub["current_period_end"],
                    attempt_no,
                    key,
                    sub["payment_method_id"],
                    sub["price_minor"],
                    sub["currency"],
                    # The key's age is measured on the monitor's clock (key_expired).
                    now,
                    now,
                ),
            )
            if attempt_id is None:
                return False  # another replica planned this period a moment ago
            payment_id = await tx.fetchval(
                "INSERT INTO payments (idempotence_key, user_id, tariff_id, subscription_id,"
                " payment_method_id, kind, amount_minor, currency, period_days, description,"
                " metadata, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'renewal', ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    key,
                    sub["user_id"],
                    sub["tariff_id"],
                    sub["id"],
                    sub["payment_method_id"],
                    sub["price_minor"],
                    sub["currency"],
                    # the period planned (and keyed) now is the one a success applies
                    sub["period_days"],
                    texts.renewal_description(period.end, tz),
                    {"subscription_id": sub["id"], "period": period.key, "attempt": attempt_no},
                    now,
                    now,
                ),
            )
            await tx.execute(
                "UPDATE charge_attempts SET payment_id = ? WHERE id = ?", (payment_id, attempt_id)
            )
        self.log.info(
            "charge_planned", subscription_id=sub["id"], attempt_no=attempt_no, period=period.key
        )
        return True

    # --- 2. execute: call the provider with the committed key ----------------------------------

    async def execute_open(self) -> int:
        now = self.ctx.clock.now()
        attempts = await self.db.claim(
            "charge_attempts",
            where="status IN ('created', 'pending')",
            order_by="id",
            limit=self.config.renew_batch_size,
            owner=self.ctx.owner,
            lease_s=self.config.renew_lease_s,
            now=now,
        )
        done = 0
        for attempt in attempts:
            if self.ctx.stop_requested:
                break
            try:
                if await self._execute_one(attempt):
                    done += 1
            except LeaseLost as lost:
                # The other process's write stands; ours (and its transaction) is dropped.
                metrics.LEASES_LOST.labels(monitor=self.name).inc()
                self.log.warning("charge_lease_lost", attempt_id=attempt["id"], error=str(lost))
        return done

    async def _finish(
        self,
        conn: AsyncTransaction | AsyncDatabase,
        attempt: dict[str, Any],
        assignments: str,
        params: tuple[Any, ...],
    ) -> None:
        """Write the attempt's outcome and release it, only while this process still holds it
        in the status it was claimed in; LeaseLost otherwise (a transaction then rolls back)."""
        written = await conn.execute(
            f"UPDATE charge_attempts SET {assignments}, lease_owner = NULL,"
            " lease_expires_at = NULL WHERE id = ? AND lease_owner = ? AND status = ?",
            (*params, attempt["id"], self.ctx.owner, attempt["status"]),
        )
        if not written:
            raise LeaseLost(
                f"charge attempt {attempt['id']} is no longer held by {self.ctx.owner}"
                f" as {attempt['status']!r}"
            )

    async def _execute_one(self, attempt: dict[str, Any]) -> bool:
        context = await self.db.fetchone(
            "SELECT p.id AS payment_row, p.provider_payment_id, p.description, p.metadata,"
            " pm.provider_method_id, s.user_id, s.current_period_end, s.grace_until,"
            " s.auto_renew, s.status AS subscription_status,"
            # the days planned with the charge; a charge planned before main/0010: the tariff's
            " coalesce(p.period_days, t.period_days) AS period_days, u.telegram_id"
            " FROM payments p JOIN subscriptions s ON s.id = ?"
            " JOIN tariffs t ON t.id = s.tariff_id JOIN users u ON u.id = s.user_id"
            " LEFT JOIN payment_methods pm ON pm.id = ?"
            " WHERE p.id = ?",
            (attempt["subscription_id"], attempt["payment_method_id"], attempt["payment_id"]),
        )
        assert context is not None, "a charge attempt always has its payment row"
        if context["provider_payment_id"]:
            status, body = await self.yookassa.get_payment(context["provider_payment_id"])
        elif not charge_wanted(attempt, context):
            # The member stopped auto-renewal, a refund ended the subscription, or a payment by
            # hand moved it on, after this charge was planned: repeating the create (an earlier
            # call's outcome unknown) would make the charge now. What it made is looked up.
            return await self._reconcile_unsent(attempt, context, wanted=False)
        elif key_expired(attempt["created_at"], self.ctx.clock.now(), self.config.key_window):
            # Never repeated past its window (a repeat could be a second charge): what the
            # earlier calls made is looked up by listing instead.
            return await self._reconcile_unsent(attempt, context, wanted=True)
        elif context["provider_method_id"] is None:
            result = ChargeResult(ChargeOutcome.CANCELED, None, "permission_revoked")
            return await self._apply(attempt, context, result)
        else:
            # Crash tests stop here: the attempt and its key are committed, the call not made.
            await pause_point("charge_committed")
            request = charge_request(
                context,
                attempt["amount_minor"],
                attempt["currency"],
                context["provider_method_id"],
            )
            status, body = await self.yookassa.create_payment(request, attempt["idempotence_key"])
        # Crash tests stop here: the provider answered, nothing of it is committed yet.
        await pause_point("charge_answered")
        if credentials_refused(status):
            # Not the member's decline: the attempt keeps its key for when the shop is fixed.
            await self._finish(
                self.db,
                attempt,
                "last_error = ?, updated_at = ?",
                ("HTTP 401", self.ctx.clock.now()),
            )
            raise MonitorError("YooKassa refuses the shop's credentials (HTTP 401)")
        return await self._apply(attempt, context, classify_response(status, body))

    async def _reconcile_unsent(
        self, attempt: dict[str, Any], context: dict[str, Any], *, wanted: bool
    ) -> bool:
        """An attempt still `created` that is not sent again (payments.reconcile): past its key
        window, or no longer `wanted` by its subscription. The payment found by listing is
        applied as if the create had answered (the member was charged: they get the period);
        none found closes the attempt as not sent (while `wanted`, a new attempt with a new key
        may follow); a failed listing fails the tick and changes nothing."""
        listing = await find_payment(
            self.yookassa,
            attempt["created_at"],
            self.config.key_window,
            charge_matcher(
                attempt["idempotence_key"], attempt["amount_minor"], attempt["currency"]
            ),
        )
        now = self.ctx.clock.now()
        log = self.log.bind(subscription_id=attempt["subscription_id"], attempt_id=attempt["id"])
        if not listing.complete:
            await self._finish(
                self.db, attempt, "last_error = ?, updated_at = ?", (listing.error, now)
            )
            metrics.CHARGE_RECONCILIATIONS.labels(outcome="failed").inc()
            raise MonitorError(
                f"charge attempt {attempt['id']}: it is not sent again and the listing"
                f" failed ({listing.error}); nothing was sent, it is looked up again next tick"
            )
        if listing.found is not None:
            metrics.CHARGE_RECONCILIATIONS.labels(outcome="found").inc()
            log.info("charge_reconciled", payment_id=listing.found.get("id"), pages=listing.pages)
            return await self._apply(attempt, context, classify_payment_object(listing.found))
        if wanted:
            reason = EXPIRED_KEY_REASON
            note = expired_key_note(attempt["created_at"], now, self.config.key_window)
        else:
            reason = NOT_WANTED_REASON
            note = "not sent: auto-renewal stopped or the period changed after it was planned"
        note += "; no payment of it at the provider (listed)"
        async with self.db.transaction() as tx:
            await lock_subscription(tx, attempt["subscription_id"])
            # next_retry_at now: a period whose auto-renewal is switched back on is charged
            # again with a new attempt and key (the subscription's own state decides that).
            await self._finish(
                tx,
                attempt,
                "status = 'declined', decline_kind = 'unknown', decline_reason = ?,"
                " next_retry_at = ?, finished_at = ?, updated_at = ?, last_error = ?",
                (reason, now, now, now, note[:500]),
            )
            if wanted:
                await cancel_expired(tx, context["payment_row"], note, now)
                await tx.execute(
                    "UPDATE subscriptions SET next_charge_at = ?, updated_at = ? WHERE id = ?",
                    (now, now, attempt["subscription_id"]),
                )
            else:
                await cancel_unwanted(tx, context["payment_row"], note, now)
        metrics.CHARGE_RECONCILIATIONS.labels(outcome="not_sent").inc()
        log.warning("charge_not_sent", reason=reason, pages=listing.pages)
        return True

    async def _apply(
        self, attempt: dict[str, Any], context: dict[str, Any], result: ChargeResult
    ) -> bool:
        now = self.ctx.clock.now()
        log = self.log.bind(
            subscription_id=attempt["subscription_id"],
            attempt_no=attempt["attempt_no"],
            outcome=result.outcome.value,
        )
        if result.outcome in (ChargeOutcome.UNKNOWN, ChargeOutcome.PENDING):
            # Same key next time (or a GET): the provider's answer is still to be learned.
            await self._finish(
                self.db,
                attempt,
                "status = ?, last_error = ?, updated_at = ?",
                (
                    "pending" if result.payment_id else attempt["status"],
                    None if result.outcome is ChargeOutcome.PENDING else "outcome unknown",
                    now,
                ),
            )
            if result.payment_id:
                await self.db.execute(
                    "UPDATE payments SET provider_payment_id = ?, status = 'pending',"
                    " updated_at = ? WHERE id = ? AND provider_payment_id IS NULL",
                    (result.payment_id, now, context["payment_row"]),
                )
            metrics.CHARGES.labels(outcome=result.outcome.value).inc()
            log.info("charge_outcome_pending")
            return False
        if result.outcome is ChargeOutcome.SUCCEEDED:
            await self._succeeded(attempt, context, result, now)
            metrics.CHARGES.labels(outcome="succeeded").inc()
            log.info("charge_succeeded", payment_id=result.payment_id)
            return True
        await self._declined(attempt, context, result, now, log)
        return True

    async def _succeeded(
        self,
        attempt: dict[str, Any],
        context: dict[str, Any],
        result: ChargeResult,
        now: datetime,
    ) -> None:
        tz = self.ctx.settings.timezone
        period: Period = period_after(attempt["period_end"], days=context["period_days"], tz=tz)
        async with self.db.transaction() as tx:
            await lock_subscription(tx, attempt["subscription_id"])
            await self._finish(
                tx,
                attempt,
                "status = 'succeeded', finished_at = ?, updated_at = ?, last_error = NULL",
                (now, now),
            )
            # confirmed_at: the renewal receipt below is this charge's confirmation, so
            # payment_monitor's confirmation stage (which skips charges anyway) never meets it.
            await tx.execute(
                "UPDATE payments SET provider_payment_id = coalesce(provider_payment_id, ?),"
                " status = 'succeeded', paid_at = coalesce(paid_at, ?), processed_at = ?,"
                " confirmed_at = ?, applied_period_end = ?, updated_at = ?,"
                # the period this charge moves the subscription on from (a live one only)
                " prior_period_start = (SELECT current_period_start FROM subscriptions"
                " WHERE id = ? AND current_period_end = ? AND status IN ('active', 'grace'))"
                " WHERE id = ? AND processed_at IS NULL",
                (
                    result.payment_id,
                    now,
                    now,
                    now,
                    period.end,
                    now,
                    attempt["subscription_id"],
                    attempt["period_end"],
                    context["payment_row"],
                ),
            )
            # Paid for this very period: renews the subscription even if it lapsed meanwhile.
            extended = await extend_subscription(
                tx,
                attempt["subscription_id"],
                from_end=attempt["period_end"],
                period=period,
                next_charge_at=charge_due_at(period.end, self.config.charge_ahead),
                now=now,
                lapsed_too=True,
            )
            if extended:
                await enqueue(
                    tx,
                    dedupe_key=f"renewal:{attempt['subscription_id']}:{period.key}",
                    chat_id=context["telegram_id"],
                    user_id=context["user_id"],
                    kind="renewal_receipt",
                    text=texts.renewed(period.end, tz),
                    priority=10,
                )

    async def _declined(
        self,
        attempt: dict[str, Any],
        context: dict[str, Any],
        result: ChargeResult,
        now: datetime,
        log: Any,
    ) -> None:
        reason = result.cancellation_reason or result.error_code
        retry_until = context["grace_until"] or attempt["period_end"] + self.config.renew_grace
        decision = decide_after_decline(
            reason if result.outcome is ChargeOutcome.CANCELED else None,
            failed_attempts=attempt["attempt_no"],
            now=now,
            retry_until=retry_until,
        )
        stop = decision.action is DeclineAction.STOP_AUTO_RENEWAL
        async with self.db.transaction() as tx:
            await lock_subscription(tx, attempt["subscription_id"])
            await self._finish(
                tx,
                attempt,
                "status = 'declined', decline_reason = ?, decline_kind = ?, next_retry_at = ?,"
                " finished_at = ?, updated_at = ?",
                (reason, decision.kind.value, decision.retry_at, now, now),
            )
            await tx.execute(
                "UPDATE payments SET provider_payment_id = coalesce(provider_payment_id, ?),"
                " status = 'canceled', cancellation_reason = ?, processed_at = ?, updated_at = ?"
                " WHERE id = ? AND processed_at IS NULL",
                (result.payment_id, reason, now, now, context["payment_row"]),
            )
            if stop:
                await tx.execute(
                    "UPDATE subscriptions SET auto_renew = ?, auto_renew_stopped_reason = ?,"
                    " next_charge_at = NULL, updated_at = ? WHERE id = ?",
                    (False, reason or "declined", now, attempt["subscription_id"]),
                )
                await enqueue(
                    tx,
                    dedupe_key=(
                        f"auto_renew_stopped:{attempt['subscription_id']}:{attempt['period_end']}"
                    ),
                    chat_id=context["telegram_id"],
                    user_id=context["user_id"],
                    kind="auto_renew_stopped",
                    text=texts.AUTO_RENEW_FAILED,
                    priority=20,
                )
            else:
                await tx.execute(
                    "UPDATE subscriptions SET next_charge_at = ?, updated_at = ? WHERE id = ?",
                    (decision.retry_at, now, attempt["subscription_id"]),
                )
        outcome = f"declined_{decision.kind.value}"
        if result.outcome is ChargeOutcome.REJECTED:
            outcome = "rejected"
        metrics.CHARGES.labels(outcome=outcome).inc()
        log.warning(
            "charge_declined",
            reason=reason,
            kind=decision.kind.value,
            action=decision.action.value,
            retry_at=decision.retry_at.isoformat() if decision.retry_at else None,
        )


MONITOR = RecurrentPayments
