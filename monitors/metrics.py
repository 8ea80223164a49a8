"""Metrics of the monitors' own work, beside the runner's per-tick series (runtime.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

NOTIFY_MESSAGES = Counter(
    "domos_notify_messages_total",
    "Outbox messages by outcome: sent, retried, rate_limited, deferred, blocked, dead, migrated,"
    " skipped (a broadcast to a member no longer entitled); possibly_duplicated is counted"
    " besides sent (a part sent again after an answer that never came).",
    ["outcome"],
)
NOTIFY_PARTS_SENT = Counter(
    "domos_notify_parts_sent_total", "Bot API sendMessage calls that delivered a part."
)
# Read from the database by notifymonitor every tick: every replica reports the same rows, so
# queries aggregate these gauges with max, never sum.
OUTBOX_BACKLOG = Gauge(
    "domos_outbox_backlog",
    "Outbox rows by status: queued, failed (waiting for a retry), sending (in flight), dead"
    " (dead letters).",
    ["status"],
)
OUTBOX_OLDEST_DUE_AGE = Gauge(
    "domos_outbox_oldest_due_age_seconds",
    "How long the oldest due outbox row has waited past its next attempt time; 0 when none is due.",
)
CHARGES = Counter(
    "domos_recurrent_charges_total",
    "Renewal charge attempts by outcome: succeeded, pending, declined_soft, declined_hard, "
    "declined_unknown, unknown, rejected.",
    ["outcome"],
)
LEASES_LOST = Counter(
    "domos_leases_lost_total",
    "Claimed items whose outcome was not written because the lease had passed to another process"
    " (or the item was finished meanwhile): the tick outlived its lease.",
    ["monitor"],
)
CHARGE_RECONCILIATIONS = Counter(
    "domos_charge_reconciliations_total",
    "Charge attempts past their key window looked up by listing the provider's payments, by"
    " outcome: found (applied as answered), not_sent (closed; a new attempt follows), failed"
    " (the listing failed; the tick failed, nothing was sent).",
    ["outcome"],
)
PAYMENTS_FINALIZED = Counter(
    "domos_payments_finalized_total",
    "Payments whose final outcome payment_monitor applied, by status and by how it was learned.",
    ["status", "source"],
)
UNSENT_PAYMENTS = Counter(
    "domos_unsent_payments_total",
    "Payments (first, or renewals paid by hand) left without a provider id (their create call"
    " never returned), by what payment_monitor did: recorded (the provider's payment under the"
    " key), retried (no usable answer), refused (the provider refused the repeat: canceled),"
    " expired (key past its window: canceled uncalled), waiting (no stored request: waits out"
    " the key window), matched (a notification named the row in its metadata: id recorded),"
    " paid_after_cancel (paid at the provider after it was canceled here: refund by hand),"
    " reconciled (key past its window, the provider's payment found by listing: recorded),"
    " listing_failed (key past its window, the listing failed: the tick failed).",
    ["outcome"],
)
UNSENT_OUTCOMES = (
    "recorded",
    "retried",
    "refused",
    "expired",
    "waiting",
    "matched",
    "paid_after_cancel",
    "reconciled",
    "listing_failed",
)


PROVIDER_EVENTS = Counter(
    "domos_provider_events_total",
    "YooKassa notifications handled by payment_monitor, by outcome: applied, ignored, retried,"
    " failed.",
    ["outcome"],
)
REFUNDS = Counter(
    "domos_refunds_total",
    "Refunds the provider confirmed, recorded by payment_monitor, by kind: full (the payment's"
    " whole amount; ends the period it paid for) or partial (recorded only: alert).",
    ["kind"],
)
PAYMENT_POLLS = Counter(
    "domos_payment_polls_total",
    "GET /v3/payments/{id} of pending payments, by what was learned: final, pending, unknown.",
    ["result"],
)
CONFIRMATIONS = Counter(
    "domos_payment_confirmations_total",
    "Succeeded first payments confirmed to the member (invite link and receipt enqueued).",
)
INVITE_LINKS = Counter(
    "domos_invite_links_created_total",
    "Invite links for paying members, by outcome: created, failed (retried), skipped (the"
    " receipt went without it: refused for good, or failing past RECEIPT_WAIT).",
    ["outcome"],
)
MODERATION_ACTIONS = Counter(
    "domos_moderation_actions_total",
    "Bans and unbans carried out, by action and outcome: done, retried, failed, superseded.",
    ["action", "outcome"],
)
MEMBERSHIPS_ASKED = Counter(
    "domos_memberships_asked_total",
    "Paid-chat memberships nobody had recorded of members whose subscriptions all ended, asked"
    " of Telegram by ban_monitor, by outcome: recorded, failed.",
    ["outcome"],
)
MODERATION_DECISIONS = Counter(
    "domos_moderation_decisions_total", "Bans and unbans recorded by ban_monitor.", ["action"]
)
REMINDERS = Counter(
    "domos_reminders_enqueued_total",
    "Reminders enqueued, by monitor and kind (T-7 ... T-0, 24h, 1h, survey, survey_reminder).",
    ["monitor", "kind"],
)
SUBSCRIPTION_TRANSITIONS = Counter(
    "domos_subscription_transitions_total", "Subscription status changes by tsmonitor.", ["to"]
)
MESSAGES_PARSED = Counter(
    "domos_parse_messages_total",
    "Inbox messages parse_messages handled, by outcome: useful, listing, unparsed, voice, plain.",
    ["outcome"],
)
AUDIO_DOWNLOADS = Counter(
    "domos_audio_downloads_total",
    "Voice note downloads by outcome: downloaded, too_large, retried, failed.",
    ["outcome"],
)
AUDIO_REFUSED = Counter(
    "domos_audio_refused_total",
    "Voice notes not kept, by reason: not_a_paid_chat, not_a_member, too_large, member_quota,"
    " total_quota.",
    ["reason"],
)
AUDIO_EXPIRED = Counter(
    "domos_audio_expired_total", "Voice notes deleted past AUDIO_RETENTION_DAYS, with their rows."
)
