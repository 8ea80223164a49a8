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
   day) is never sent again, since a repeat could create a second payment: the provider's
   payments created in the key's window are listed (payments.reconcile, the same rule as
   recurrent_payments' charges) and one an earlier call made is recorded and followed; with
   none, the payment, like one the provider refuses outright, is canceled with the reason
   (cancellation_party 'merchant' for the expired key, 'yoo_money' for the refusal); a failed
   listing fails the tick. A row without a stored request cannot be repeated as it was: it
   waits out the key window and is then reconciled the same way.
   No notice goes to the member: its checkout link never reached anyone.
1. provider events (rows botapi inserted from YooKassa webhooks): the body is not trusted; the
   payment is fetched with GET /v3/payments/{id} and its real status applied. Each event row is
   claimed and finished with an outcome (applied, ignored, failed), so it is handled once. A
   payment whose provider id was never recorded (the create answer was lost) is found by the
   metadata of the fetched payment, which is what our request sent: `payment_row` (API, bot),
   checked against the row's amount and committed request; its id is recorded on the row and
   the event processed normally. A charge's metadata names its attempt: left to
   recurrent_payments. A `refund.succeeded` event: the refund is fetched (GET /v3/refunds/{id})
   and recorded once (payments.refunds); a full refund of the payment that paid the live period
   ends the subscription as an expiry does (ban_monitor removes the member from the paid
   chats) and tells the member; a partial one is recorded and alerts (DomosPartialRefund).
2. polling: payments still open N minutes after creation (the webhook may be lost) are fetched
   on a capped exponential schedule (`PAYMENT_POLL`), then hourly, until they are final.
3. confirmation: a succeeded payment that was applied gets, for every managed chat the member
   is not in, a fresh invite link that makes a join request (the bot approves it only for a
   member with a live subscription, so a forwarded link admits no one else) and then one
   receipt in the outbox.
4. refund sweep: every 30 minutes the refunds that succeeded in the last 48 hours are listed
   (`GET /v3/refunds`); one whose notification never arrived (YooKassa gives up after 24 h) is
   fetched and recorded as in stage 1.

Applying an outcome is one transaction guarded by `processed_at IS NULL`: a success activates or
extends the member's subscription exactly once (a renewal paid by hand extends the live
subscription from its end), records the saved card for auto-renewal, and records an unban for
every managed chat the member was banned from (carried out right away, before the invite is
sent, so the invite works). The webhook and polling paths meet in that one guard.

Settings: PAYMENT_POLL_AFTER_MIN (10), PAYMENT_BATCH_SIZE (50), PAYMENT_LEASE_S (120),
INVITE_LINK_TTL_H (72), RENEW_CHARGE_AHEAD_H (24), PAYMENT_RESEND_AFTER_S (120),
PAYMENT_KEY_WINDOW_H (23).

Settings arrive as `config` (payments.settings.PaymentSettings, built by the runner). The
stages live in monitors.payment_stages, each taking the monitor's `PaymentWork`: `resend` (0),
`events` (1), `polling` (2), `confirmation` (3), `refund_sweep` (4) and `apply` (applying an
outcome); claiming is in `work`.
"""

from __future__ import annotations

from monitors import metrics
from monitors.moderation import ModerationExecutor
from monitors.payment_stages.confirmation import confirm_applied
from monitors.payment_stages.events import EVENT_RETRY, process_events
from monitors.payment_stages.polling import poll_open
from monitors.payment_stages.refund_sweep import RefundSweep
from monitors.payment_stages.resend import resend_unsent
from monitors.payment_stages.work import NOT_A_CHARGE, OPEN_STATUSES, PaymentWork
from monitors.telegram_client import TelegramClient
from payments.client import YooKassaClient
from payments.settings import PaymentSettings
from runtime.metrics import start_at_zero
from runtime.monitor import Monitor

# Importable from here as before the stages moved out.
__all__ = [
    "EVENT_RETRY",
    "MONITOR",
    "NOT_A_CHARGE",
    "OPEN_STATUSES",
    "PaymentMonitor",
    "PaymentSettings",
]


class PaymentMonitor(Monitor):
    name = "payment_monitor"
    interval_s = 15.0
    mode = "claiming"
    config_type = PaymentSettings
    config: PaymentSettings

    async def setup(self) -> None:
        # Alerts fire on the first expiry or paid-after-cancel, so those series start at 0.
        start_at_zero(metrics.UNSENT_PAYMENTS, "outcome", metrics.UNSENT_OUTCOMES)
        start_at_zero(metrics.INVITE_LINKS, "outcome", ("created", "failed", "skipped"))
        start_at_zero(metrics.REFUNDS, "kind", ("full", "partial"))
        self.yookassa = YooKassaClient(self.ctx.settings)
        self.telegram = TelegramClient(self.ctx.settings)
        await self.yookassa.open()
        await self.telegram.open()
        self.moderation = ModerationExecutor(
            self.db, self.telegram, self.ctx.clock, self.ctx.owner, self.log
        )
        self.work = PaymentWork(
            self.ctx, self.config, self.yookassa, self.telegram, self.moderation
        )
        self.refund_sweep = RefundSweep()

    async def teardown(self) -> None:
        await self.yookassa.close()
        await self.telegram.close()

    async def tick(self) -> int:
        handled = await self.resend_unsent()
        handled += await self.process_events()
        handled += await self.poll_open()
        handled += await self.confirm_applied()
        handled += await self.sweep_refunds()
        return handled

    # One method a stage, so that a test (or an operator's shell) can run a single stage.

    async def resend_unsent(self) -> int:
        return await resend_unsent(self.work)

    async def process_events(self) -> int:
        return await process_events(self.work)

    async def poll_open(self) -> int:
        return await poll_open(self.work)

    async def confirm_applied(self) -> int:
        return await confirm_applied(self.work)

    async def sweep_refunds(self) -> int:
        return await self.refund_sweep.run(self.work)


MONITOR = PaymentMonitor
