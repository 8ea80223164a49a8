"""payment_monitor: every payment reaches its outcome, and the outcome is applied once.

Which payments are its own: every row without a `charge_attempts` row, until `processed_at` is
set. These are the payments members make through the API or the bot: `first` ones and `renewal`
ones (a member with a live subscription paying by hand). A row that has a charge attempt is
recurrent_payments' auto-charge: that monitor repeats its own key and reconciles it, so it is
never sent, polled, applied or confirmed here, and its events are ignored. Each of our rows that
can be left open is taken to a final status by exactly one stage:
  - `created` without a provider id: stage 0 (sent again with its key, or canceled);
  - open (`created`/`pending`/`waiting_for_capture`) with a provider id: stage 2 (polled);
  - final at the provider's first answer but not applied: stage 2 too (fetched and applied).

Work-claiming, four stages per tick:
0. unsent: a payment committed as `created` whose create call never returned (crash, timeout)
   has no provider id. After a grace period (PAYMENT_RESEND_AFTER_S) the request that was
   committed with the row is sent again with the SAME Idempotence-Key: YooKassa answers a
   repeated key with the payment it created for it, or creates it now if the key never reached
   it, so there is one payment either way. Its id is recorded and the payment then follows the
   normal path below. A key older than PAYMENT_KEY_WINDOW_H (the provider keeps keys about a
   day) is never sent again, since a repeat could create a second payment; such a payment, and
   one the provider refuses outright, is canceled with the reason (cancellation_party
   'merchant'). A row without a stored request cannot be repeated as it was: it waits out the
   key window and is then canceled. No notice goes to the member: its checkout link never
   reached anyone.
1. provider events (rows botapi inserted from YooKassa webhooks): the body is not trusted; the
   payment is fetched with GET /v3/payments/{id} and its real status applied. Each event row is
   claimed and finished with an outcome (applied, ignored, failed), so it is handled once. A
   payment whose provider id was never recorded (the create answer was lost) is found by the
   metadata of the fetched payment, which is what our request sent: `payment_row` (API, bot),
   checked against the row's amount and committed request; its id is recorded on the row and
   the event processed normally. A charge's metadata names its attempt: left to
   recurrent_payments.
2. polling: payments still open N minutes after creation (the webhook may be lost) are fetched
   on a capped exponential schedule (`PAYMENT_POLL`), then hourly, until they are final.
3. confirmation: a succeeded payment that was applied gets, for every managed chat the member
   is not in, a fresh invite link (member_limit=1, so it admits the payer only) and then one
   receipt in the outbox.

Applying an outcome is one transaction guarded by `processed_at IS NULL`: a success activates or
extends the member's subscription exactly once (a renewal paid by hand extends the live
subscription from its end), records the saved card for auto-renewal, and records an unban for
every managed chat the member was banned from (carried out right away, before the invite is
sent, so the invite works). The webhook and polling paths meet in that one guard.

Settings: PAYMENT_POLL_AFTER_MIN (10), PAYMENT_BATCH_SIZE (50), PAYMENT_LEASE_S (120),
INVITE_LINK_TTL_H (72), RENEW_CHARGE_AHEAD_H (24), PAYMENT_RESEND_AFTER_S (120),
PAYMENT_KEY_WINDOW_H (23).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitors import _metrics
from monitors._clients import TelegramClient, YooKassaClient
from monitors._moderation import ModerationExecutor
from monitors._outbox import enqueue
from monitors.decisions.backoff import PAYMENT_POLL, RetrySchedule
from monitors.decisions.periods import extension_start, period_after
from monitors.decisions.telegram import Verdict, classify_telegram_response
from monitors.decisions.yookassa import (
    EXPIRED_KEY_REASON,
    ChargeOutcome,
    ChargeResult,
    ResendResult,
    ResendVerdict,
    UnsentAction,
    classify_payment_object,
    classify_resend,
    classify_response,
    decide_unsent_payment,
    expired_key_note,
    next_poll_at,
    next_resend_at,
    payment_reference,
    poll_overdue,
    reference_mismatch,
    stored_request,
)
from runtime.config import Env
from runtime.db import AsyncTransaction
from runtime.errors import IntegrityError, MonitorError, TransientError
from runtime.monitor import Monitor

#: Provider events whose payment is unknown here or unreachable there: retried, then failed.
EVENT_RETRY = RetrySchedule(base_s=10.0, cap_s=600.0, max_attempts=8)
OPEN_STATUSES = "('created', 'pending', 'waiting_for_capture')"
#: Rows of recurrent_payments' charges have a charge attempt; every other row is ours.
NOT_A_CHARGE = "NOT EXISTS (SELECT 1 FROM charge_attempts ca WHERE ca.payment_id = payments.id)"


@dataclass(frozen=True)
class PaymentSettings:
    poll_after: timedelta
    batch_size: int
    lease_s: float
    invite_ttl: timedelta
    charge_ahead: timedelta
    #: How long a producer's own create call may take before the monitor repeats it.
    resend_after: timedelta
    #: How long after its commit a key is surely still remembered by the provider.
    key_window: timedelta

    @classmethod
    def from_env(cls, environ: Any) -> PaymentSettings:
        env = Env(environ)
        return cls(
            poll_after=timedelta(minutes=env.number("PAYMENT_POLL_AFTER_MIN", 10.0)),
            batch_size=env.integer("PAYMENT_BATCH_SIZE", 50, minimum=1),
            lease_s=env.number("PAYMENT_LEASE_S", 120.0, minimum=1.0),
            invite_ttl=timedelta(hours=env.number("INVITE_LINK_TTL_H", 72.0, minimum=1.0)),
            charge_ahead=timedelta(hours=env.number("RENEW_CHARGE_AHEAD_H", 24.0)),
            # The producers' calls time out after 15 s; this leaves them room and retries.
            resend_after=timedelta(seconds=env.number("PAYMENT_RESEND_AFTER_S", 120.0)),
            # YooKassa keeps a key about 24 h from its first use, which is after the commit.
            key_window=timedelta(hours=env.number("PAYMENT_KEY_WINDOW_H", 23.0, minimum=0.01)),
        )


class PaymentMonitor(Monitor):
    name = "payment_monitor"
    interval_s = 15.0
    mode = "claiming"

    async def setup(self) -> None:
        self.config = PaymentSettings.from_env(os.environ)
        # Alerts fire on the first expiry or paid-after-cancel, so those series start at 0.
        _metrics.start_at_zero(_metrics.UNSENT_PAYMENTS, "outcome", _metrics.UNSENT_OUTCOMES)
        self.yookassa = YooKassaClient(self.ctx.settings)
        self.telegram = TelegramClient(self.ctx.settings)
        await self.yookassa.open()
        await self.telegram.open()
        self.moderation = ModerationExecutor(
            self.db, self.telegram, self.ctx.clock, self.ctx.owner, self.log
        )

    async def teardown(self) -> None:
        await self.yookassa.close()
        await self.telegram.close()

    async def tick(self) -> int:
        handled = await self.resend_unsent()
        handled += await self.process_events()
        handled += await self.poll_open()
        handled += await self.confirm_applied()
        return handled

    def _claim(self, table: str, where: str, params: tuple[Any, ...]) -> Any:
        now = self.ctx.clock.now()
        return self.db.claim(
            table,
            where=where,
            params=params,
            order_by="id",
            limit=self.config.batch_size,
            owner=self.ctx.owner,
            lease_s=self.config.lease_s,
            now=now,
        )

    # --- 0. payments whose create call never returned ---

    async def resend_unsent(self) -> int:
        now = self.ctx.clock.now()
        payments = await self._claim(
            "payments",
            "status = 'created' AND provider_payment_id IS NULL"
            f" AND processed_at IS NULL AND {NOT_A_CHARGE} AND created_at <= ?"
            " AND (next_check_at IS NULL OR next_check_at <= ?)",
            (now - self.config.resend_after, now),
        )
        handled = 0
        for payment in payments:
            if self.ctx.stop_requested:
                await self._release_payment(payment)
                continue
            if await self._resend_one(payment):
                handled += 1
        return handled

    async def _resend_one(self, payment: dict[str, Any]) -> bool:
        """Settle one payment without a provider id; False when it only waits."""
        now = self.ctx.clock.now()
        config = self.config
        request = stored_request(payment)
        decision = decide_unsent_payment(
            payment["created_at"],
            now,
            grace=config.resend_after,
            key_window=config.key_window,
            has_request=request is not None,
        )
        log = self.log.bind(payment_id=payment["id"])
        if decision.action is UnsentAction.WAIT:
            await self._unsent_later(payment, payment["check_attempts"], decision.not_before, None)
            _metrics.UNSENT_PAYMENTS.labels(outcome="waiting").inc()
            log.info("unsent_payment_waits", until=str(decision.not_before))
            return False
        if decision.action is UnsentAction.EXPIRE:
            await self._cancel_unsent(
                payment,
                EXPIRED_KEY_REASON,
                expired_key_note(payment["created_at"], now, config.key_window),
            )
            _metrics.UNSENT_PAYMENTS.labels(outcome="expired").inc()
            age_h = (now - payment["created_at"]).total_seconds() / 3600
            log.warning("unsent_payment_expired", age_h=round(age_h, 1))
            return True
        assert request is not None, "RESEND is decided only with the stored request"
        status, body = await self.yookassa.create_payment(request, payment["idempotence_key"])
        result = classify_resend(status, body)
        if result.verdict is ResendVerdict.BAD_CREDENTIALS:
            await self._release_payment(payment)
            raise MonitorError("YooKassa refuses the shop's credentials (HTTP 401)")
        if result.verdict is ResendVerdict.REFUSED:
            await self._cancel_unsent(
                payment,
                "request_rejected",
                f"the provider refused the repeated request: {result.reason}",
            )
            _metrics.UNSENT_PAYMENTS.labels(outcome="refused").inc()
            log.warning("unsent_payment_refused", reason=result.reason)
            return True
        if result.verdict is ResendVerdict.RECORD:
            try:
                return await self._record_resent(payment, result, body or {})
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
        await self._unsent_later(payment, attempts, retry_at, error)
        _metrics.UNSENT_PAYMENTS.labels(outcome="retried").inc()
        log.info("unsent_payment_retry", attempts=attempts, retry_at=retry_at.isoformat())
        return True

    async def _record_resent(
        self, payment: dict[str, Any], result: ResendResult, body: dict[str, Any]
    ) -> bool:
        """Record the provider's payment under the key; apply it at once when final."""
        now = self.ctx.clock.now()
        charge = result.charge
        final = charge.outcome in (ChargeOutcome.SUCCEEDED, ChargeOutcome.CANCELED)
        # Final statuses are written by apply_final (with paid_at); open ones here.
        status = body.get("status") if charge.outcome is ChargeOutcome.PENDING else None
        url = (body.get("confirmation") or {}).get("confirmation_url")
        next_check = None if final else now + timedelta(seconds=PAYMENT_POLL.delay_s(1))
        recorded = await self.db.execute(
            "UPDATE payments SET provider_payment_id = ?, status = coalesce(?, status),"
            " confirmation_url = coalesce(?, confirmation_url), check_attempts = 0,"
            " next_check_at = ?, last_error = NULL, updated_at = ?, lease_owner = NULL,"
            " lease_expires_at = NULL WHERE id = ? AND provider_payment_id IS NULL"
            " AND status = 'created'",
            (charge.payment_id, status, url, next_check, now, payment["id"]),
        )
        log = self.log.bind(payment_id=payment["id"], provider_payment_id=charge.payment_id)
        if not recorded:
            # The producer's own retry recorded the answer meanwhile: nothing left to do here.
            await self._release_payment(payment)
            log.info("unsent_payment_recorded_elsewhere")
            return False
        _metrics.UNSENT_PAYMENTS.labels(outcome="recorded").inc()
        log.info("unsent_payment_recorded", status=body.get("status"))
        if final:
            recorded_row = {**payment, "provider_payment_id": charge.payment_id}
            try:
                await self.apply_final(recorded_row, charge, body, source="resend")
            except (TransientError, IntegrityError) as exc:
                # Left open with its provider id: the polling stage applies it.
                log.warning("unsent_payment_apply_failed", error=str(exc))
        return True

    async def _unsent_later(
        self, payment: dict[str, Any], attempts: int, at: datetime | None, error: str | None
    ) -> None:
        await self.db.execute(
            "UPDATE payments SET check_attempts = ?, next_check_at = ?,"
            " last_error = coalesce(?, last_error), updated_at = ?, lease_owner = NULL,"
            " lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
            (attempts, at, error, self.ctx.clock.now(), payment["id"], self.ctx.owner),
        )

    async def _cancel_unsent(self, payment: dict[str, Any], reason: str, detail: str) -> None:
        """Cancel a payment the provider has no trace of for us; nothing to apply or tell."""
        now = self.ctx.clock.now()
        canceled = await self.db.execute(
            "UPDATE payments SET status = 'canceled', cancellation_party = 'merchant',"
            " cancellation_reason = ?, last_error = ?, processed_at = ?, next_check_at = NULL,"
            " updated_at = ?, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ? AND status = 'created' AND provider_payment_id IS NULL"
            " AND processed_at IS NULL",
            (reason, detail[:500], now, now, payment["id"]),
        )
        if canceled:
            _metrics.PAYMENTS_FINALIZED.labels(status="canceled", source="resend").inc()
        else:
            await self._release_payment(payment)

    # --- 1. provider events ---

    async def process_events(self) -> int:
        now = self.ctx.clock.now()
        events = await self._claim(
            "provider_events", "processed_at IS NULL AND next_attempt_at <= ?", (now,)
        )
        for event in events:
            if self.ctx.stop_requested:
                await self._release_event(event)
                continue
            await self._process_event(event)
        return len(events)

    async def _process_event(self, event: dict[str, Any]) -> None:
        log = self.log.bind(event_id=event["id"], event_key=event["event_key"])
        if not event["event_type"].startswith("payment."):
            await self._finish_event(event, "ignored", "not a payment event")
            return
        status, body = await self.yookassa.get_payment(event["object_id"])
        if status == 404:
            await self._finish_event(event, "ignored", "the provider does not know this payment")
            log.warning("provider_event_unknown_payment")
            return
        result = classify_response(status, body)
        if result.outcome in (ChargeOutcome.UNKNOWN, ChargeOutcome.REJECTED):
            await self._retry_event(event, f"GET payment: HTTP {status}")
            return
        fetched = body or {}
        payment = await self.db.fetchone(
            "SELECT * FROM payments WHERE provider = 'yookassa' AND provider_payment_id = ?",
            (event["object_id"],),
        )
        if payment is None:
            payment = await self._match_unrecorded(event, fetched, log)
            if payment is None:
                return  # the event was finished or retried there
        if await self._is_charge(payment["id"]):
            await self._finish_event(
                event, "ignored", "renewal charges are reconciled by recurrent_payments"
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
            await self._finish_event(event, "failed", note)
            _metrics.UNSENT_PAYMENTS.labels(outcome="paid_after_cancel").inc()
            log.error("payment_paid_after_cancel", payment_id=payment["id"])
            return
        if result.outcome is ChargeOutcome.PENDING:
            await self._finish_event(event, "ignored", f"payment still {fetched.get('status')}")
            return
        try:
            applied = await self.apply_final(payment, result, fetched, source="webhook")
        except (TransientError, IntegrityError) as exc:
            await self._retry_event(event, f"apply: {exc}")
            return
        if applied:
            await self._finish_event(event, "applied", None)
        else:
            await self._finish_event(event, "ignored", "outcome applied before")

    async def _is_charge(self, payment_id: int) -> bool:
        found = await self.db.fetchval(
            "SELECT id FROM charge_attempts WHERE payment_id = ?", (payment_id,)
        )
        return found is not None

    async def _match_unrecorded(
        self, event: dict[str, Any], fetched: dict[str, Any], log: Any
    ) -> dict[str, Any] | None:
        """The row of a provider payment whose id was never recorded, found by the metadata of
        the fetched payment (what our request sent), with the id now recorded on it. None when
        the event was finished or retried instead."""
        object_id = event["object_id"]
        reference = payment_reference(fetched)
        if reference is None:
            await self._retry_event(event, "no local payment with this provider id or metadata")
            return None
        if reference.charge_key is not None:
            charge = await self.db.fetchval(
                "SELECT p.id FROM payments p JOIN charge_attempts ca ON ca.payment_id = p.id"
                " WHERE p.idempotence_key = ?",
                (reference.charge_key,),
            )
            if charge is None:
                await self._retry_event(event, "its metadata names a charge attempt not known here")
                return None
            # recurrent_payments repeats the attempt's key and gets this very payment back.
            await self._finish_event(
                event, "ignored", "renewal charges are reconciled by recurrent_payments"
            )
            return None
        row = await self.db.fetchone(
            "SELECT * FROM payments WHERE id = ?", (reference.payment_row,)
        )
        if row is None:
            await self._retry_event(
                event,
                f"its metadata names payment {reference.payment_row}, which does not exist here",
            )
            return None
        problem = reference_mismatch(row, fetched)
        if problem is None and row["provider_payment_id"] is not None:
            # Two provider payments for one row: an earlier repeat past the key window.
            problem = f"the row already has provider payment {row['provider_payment_id']}"
        if problem is not None:
            await self._finish_event(
                event, "failed", f"its metadata names payment {row['id']}, but {problem}"
            )
            log.error("provider_event_mismatch", payment_id=row["id"], problem=problem)
            return None
        try:
            recorded = await self._record_matched(row, object_id, fetched)
        except IntegrityError as exc:
            # Recorded on another row meanwhile: the next attempt finds it by its id.
            await self._retry_event(event, f"record provider id: {exc}")
            return None
        if recorded is None or recorded["provider_payment_id"] != object_id:
            await self._retry_event(event, "the row changed while its provider id was recorded")
            return None
        _metrics.UNSENT_PAYMENTS.labels(outcome="matched").inc()
        log.info("provider_event_matched", payment_id=row["id"], provider_payment_id=object_id)
        return recorded

    async def _record_matched(
        self, row: dict[str, Any], object_id: str, fetched: dict[str, Any]
    ) -> dict[str, Any] | None:
        now = self.ctx.clock.now()
        charge = classify_payment_object(fetched)
        # An open status is recorded as it is; a final one is left to apply_final (paid_at).
        status = fetched.get("status") if charge.outcome is ChargeOutcome.PENDING else None
        url = (fetched.get("confirmation") or {}).get("confirmation_url")
        followed = await self.db.execute(
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
            await self.db.execute(
                "UPDATE payments SET provider_payment_id = ?, updated_at = ?"
                " WHERE id = ? AND provider_payment_id IS NULL",
                (object_id, now, row["id"]),
            )
        found = await self.db.fetchone("SELECT * FROM payments WHERE id = ?", (row["id"],))
        return dict(found) if found is not None else None

    async def _finish_event(self, event: dict[str, Any], outcome: str, note: str | None) -> None:
        now = self.ctx.clock.now()
        await self.db.execute(
            "UPDATE provider_events SET processed_at = ?, outcome = ?, last_error = ?,"
            " attempts = attempts + 1, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (now, outcome, note, event["id"], self.ctx.owner),
        )
        _metrics.PROVIDER_EVENTS.labels(outcome=outcome).inc()

    async def _retry_event(self, event: dict[str, Any], error: str) -> None:
        attempts = event["attempts"] + 1
        retry_at = EVENT_RETRY.next_attempt_at(self.ctx.clock.now(), attempts)
        if retry_at is None:
            await self._finish_event(event, "failed", error)
            self.log.error("provider_event_failed", event_id=event["id"], error=error)
            return
        await self.db.execute(
            "UPDATE provider_events SET attempts = ?, next_attempt_at = ?, last_error = ?,"
            " lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
            (attempts, retry_at, error[:500], event["id"], self.ctx.owner),
        )
        _metrics.PROVIDER_EVENTS.labels(outcome="retried").inc()

    async def _release_event(self, event: dict[str, Any]) -> None:
        await self.db.execute(
            "UPDATE provider_events SET lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (event["id"], self.ctx.owner),
        )

    # --- 2. polling open payments ---

    async def poll_open(self) -> int:
        now = self.ctx.clock.now()
        open_payments = await self._claim(
            "payments",
            f"status IN {OPEN_STATUSES} AND provider_payment_id IS NOT NULL AND {NOT_A_CHARGE}"
            " AND created_at <= ? AND (next_check_at IS NULL AND check_attempts = 0"
            " OR next_check_at <= ?)",
            (now - self.config.poll_after, now),
        )
        # Final in the provider's first answer (the API records the status it was given) and
        # not applied yet: fetched again, never applied from what was stored.
        unapplied = await self._claim(
            "payments",
            "processed_at IS NULL AND status IN ('succeeded', 'canceled')"
            f" AND provider_payment_id IS NOT NULL AND {NOT_A_CHARGE}"
            " AND (next_check_at IS NULL OR next_check_at <= ?)",
            (now,),
        )
        payments = [*open_payments, *unapplied]
        for payment in payments:
            if self.ctx.stop_requested:
                await self._release_payment(payment)
                continue
            await self._poll_one(payment)
        return len(payments)

    async def _poll_one(self, payment: dict[str, Any]) -> None:
        status, body = await self.yookassa.get_payment(payment["provider_payment_id"])
        result = classify_response(status, body)
        if result.outcome in (ChargeOutcome.SUCCEEDED, ChargeOutcome.CANCELED):
            _metrics.PAYMENT_POLLS.labels(result="final").inc()
            try:
                await self.apply_final(payment, result, body or {}, source="poll")
                return
            except (TransientError, IntegrityError) as exc:
                error = f"apply: {exc}"
        elif result.outcome is ChargeOutcome.PENDING:
            _metrics.PAYMENT_POLLS.labels(result="pending").inc()
            error = None
        else:
            _metrics.PAYMENT_POLLS.labels(result="unknown").inc()
            error = f"GET payment: HTTP {status}"
        now = self.ctx.clock.now()
        attempts = payment["check_attempts"] + 1
        # Never given up: an open payment is looked at (hourly, past the schedule) until final.
        next_check = next_poll_at(now, attempts)
        if poll_overdue(attempts):
            error = error or f"still open after {attempts} polls; fetched hourly until final"
            self.log.warning("payment_poll_overdue", payment_id=payment["id"], polls=attempts)
        new_status = (
            body.get("status") if result.outcome is ChargeOutcome.PENDING and body else None
        )
        await self.db.execute(
            "UPDATE payments SET check_attempts = ?, next_check_at = ?, last_error = ?,"
            " status = coalesce(?, status), updated_at = ?, lease_owner = NULL,"
            " lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
            (attempts, next_check, error, new_status, now, payment["id"], self.ctx.owner),
        )

    async def _release_payment(self, payment: dict[str, Any]) -> None:
        await self.db.execute(
            "UPDATE payments SET lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (payment["id"], self.ctx.owner),
        )

    # --- applying an outcome, once ---

    async def apply_final(
        self, payment: dict[str, Any], result: ChargeResult, body: dict[str, Any], *, source: str
    ) -> bool:
        """Apply a final outcome in one transaction; False when it had been applied before."""
        now = self.ctx.clock.now()
        succeeded = result.outcome is ChargeOutcome.SUCCEEDED
        details = body.get("cancellation_details") or {}
        async with self.db.transaction() as tx:
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
                await self._activate(tx, payment, body, now)
            else:
                await enqueue(
                    tx,
                    dedupe_key=f"payment_canceled:{payment['id']}",
                    chat_id=user["telegram_id"],
                    user_id=user["id"],
                    kind="payment_canceled",
                    text="Оплата не прошла. Попробуйте ещё раз командой /subscribe.",
                    priority=10,
                )
        status = "succeeded" if succeeded else "canceled"
        _metrics.PAYMENTS_FINALIZED.labels(status=status, source=source).inc()
        self.log.info("payment_finalized", payment_id=payment["id"], status=status, source=source)
        return True

    async def _activate(
        self, tx: AsyncTransaction, payment: dict[str, Any], body: dict[str, Any], now: datetime
    ) -> None:
        tz = self.ctx.settings.timezone
        tariff = await tx.fetchone(
            "SELECT period_days FROM tariffs WHERE id = ?", (payment["tariff_id"],)
        )
        assert tariff is not None, "payments references its tariff"
        method_id = await self._saved_method(tx, payment["user_id"], body)
        live = await tx.fetchone(
            "SELECT id, current_period_end, auto_renew, payment_method_id FROM subscriptions"
            " WHERE user_id = ? AND status IN ('active', 'grace')",
            (payment["user_id"],),
        )
        current_end = live["current_period_end"] if live else None
        start = extension_start(current_end, now, still_entitled=live is not None)
        period = period_after(start, days=tariff["period_days"], tz=tz)
        auto_renew = method_id is not None or bool(live and live["auto_renew"])
        has_method = method_id is not None or bool(live and live["payment_method_id"])
        next_charge = period.end - self.config.charge_ahead if auto_renew and has_method else None
        if live is not None:
            extended = await tx.execute(
                "UPDATE subscriptions SET current_period_start = ?, current_period_end = ?,"
                " status = 'active', grace_until = NULL, tariff_id = ?,"
                " payment_method_id = coalesce(?, payment_method_id), auto_renew = ?,"
                " auto_renew_stopped_reason = CASE WHEN ? THEN NULL"
                " ELSE auto_renew_stopped_reason END, next_charge_at = ?, updated_at = ?"
                " WHERE id = ? AND current_period_end = ? AND status IN ('active', 'grace')",
                (
                    period.start,
                    period.end,
                    payment["tariff_id"],
                    method_id,
                    auto_renew,
                    method_id is not None,
                    next_charge,
                    now,
                    live["id"],
                    current_end,
                ),
            )
            if not extended:
                raise TransientError("the subscription changed meanwhile; apply again")
            subscription_id = live["id"]
        else:
            subscription_id = await tx.fetchval(
                "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
                " current_period_end, auto_renew, payment_method_id, next_charge_at)"
                " VALUES (?, ?, 'active', ?, ?, ?, ?, ?) RETURNING id",
                (
                    payment["user_id"],
                    payment["tariff_id"],
                    period.start,
                    period.end,
                    auto_renew,
                    method_id,
                    next_charge,
                ),
            )
        await tx.execute(
            "UPDATE payments SET subscription_id = ?, applied_period_end = ?,"
            " payment_method_id = coalesce(?, payment_method_id) WHERE id = ?",
            (subscription_id, period.end, method_id, payment["id"]),
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
        self, tx: AsyncTransaction, user_id: int, body: dict[str, Any]
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

    # --- 3. confirmation: invite links and the receipt ---

    async def confirm_applied(self) -> int:
        payments = await self._claim(
            "payments",
            "status = 'succeeded' AND processed_at IS NOT NULL AND confirmed_at IS NULL"
            f" AND {NOT_A_CHARGE}",
            (),
        )
        confirmed = 0
        for payment in payments:
            if self.ctx.stop_requested:
                await self._release_payment(payment)
                continue
            if await self._confirm_one(payment):
                confirmed += 1
        return confirmed

    async def _confirm_one(self, payment: dict[str, Any]) -> bool:
        user = await self.db.fetchone(
            "SELECT id, telegram_id FROM users WHERE id = ?", (payment["user_id"],)
        )
        assert user is not None, "payments references its user"
        # Unbans recorded with the payment go first, or the invite would not admit the member.
        await self.moderation.run_due(user_id=user["id"])
        # A member already in a chat (a renewal paid by hand, usually) needs no way in.
        chats = await self.db.fetchall(
            "SELECT c.id, c.telegram_chat_id, c.title FROM chats c WHERE c.is_managed"
            " AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.chat_id = c.id"
            " AND m.user_id = ? AND m.status = 'member') ORDER BY c.id",
            (user["id"],),
        )
        links = []
        for chat in chats:
            link = await self._invite_link(payment, user, chat)
            if link is None:
                await self._release_payment(payment)
                return False
            links.append((chat["title"] or "чат сообщества", link))
        tz = self.ctx.settings.timezone
        period_end = payment["applied_period_end"].astimezone(tz)
        lines = [f"Оплата получена. Подписка активна до {period_end:%d.%m.%Y}."]
        lines += [f"Вход в «{title}»: {link}" for title, link in links]
        now = self.ctx.clock.now()
        async with self.db.transaction() as tx:
            await enqueue(
                tx,
                dedupe_key=f"payment_confirmed:{payment['id']}",
                chat_id=user["telegram_id"],
                user_id=user["id"],
                kind="receipt",
                text="\n".join(lines),
                priority=10,
                reply_markup=None,
            )
            await tx.execute(
                "UPDATE payments SET confirmed_at = ?, lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = ? AND lease_owner = ?",
                (now, payment["id"], self.ctx.owner),
            )
        _metrics.CONFIRMATIONS.inc()
        self.log.info("payment_confirmed", payment_id=payment["id"], chats=len(links))
        return True

    async def _invite_link(
        self, payment: dict[str, Any], user: dict[str, Any], chat: dict[str, Any]
    ) -> str | None:
        """The payment's link to `chat`: the one created before a crash, else a new one."""
        existing = await self.db.fetchval(
            "SELECT link FROM invite_links WHERE payment_id = ? AND chat_id = ?"
            " AND revoked_at IS NULL",
            (payment["id"], chat["id"]),
        )
        if existing:
            return str(existing)
        now = self.ctx.clock.now()
        expire_at = now + self.config.invite_ttl
        name = f"payment {payment['id']}"[:32]
        status, body = await self.telegram.call(
            "createChatInviteLink",
            {
                "chat_id": chat["telegram_chat_id"],
                "name": name,
                "member_limit": 1,
                "expire_date": int(expire_at.timestamp()),
            },
        )
        outcome = classify_telegram_response(status, body)
        if outcome.verdict is not Verdict.DELIVERED or not isinstance(
            (body or {}).get("result"), dict
        ):
            _metrics.INVITE_LINKS.labels(outcome="failed").inc()
            self.log.warning(
                "invite_link_failed", chat_id=chat["telegram_chat_id"], error=outcome.description
            )
            if outcome.verdict is Verdict.BOT_FAULT:
                raise MonitorError(f"Bot API refuses the bot: {outcome.description}")
            return None
        link = str((body or {})["result"]["invite_link"])
        await self.db.execute(
            "INSERT INTO invite_links (chat_id, user_id, payment_id, link, name, member_limit,"
            " expire_at) VALUES (?, ?, ?, ?, ?, 1, ?)",
            (chat["id"], user["id"], payment["id"], link, name, expire_at),
        )
        _metrics.INVITE_LINKS.labels(outcome="created").inc()
        return link


MONITOR = PaymentMonitor
