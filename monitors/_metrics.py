"""Metrics of the monitors' own work, beside the runner's per-tick series (runtime.metrics)."""

from __future__ import annotations

from prometheus_client import Counter

NOTIFY_MESSAGES = Counter(
    "domos_notify_messages_total",
    "Outbox messages by outcome: sent, retried, rate_limited, deferred, blocked, dead, migrated.",
    ["outcome"],
)
NOTIFY_PARTS_SENT = Counter(
    "domos_notify_parts_sent_total", "Bot API sendMessage calls that delivered a part."
)
CHARGES = Counter(
    "domos_recurrent_charges_total",
    "Renewal charge attempts by outcome: succeeded, pending, declined_soft, declined_hard, "
    "declined_unknown, unknown, rejected.",
    ["outcome"],
)
PAYMENTS_FINALIZED = Counter(
    "domos_payments_finalized_total",
    "Payments whose final outcome payment_monitor applied, by status and by how it was learned.",
    ["status", "source"],
)
