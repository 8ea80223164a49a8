"""One renewal at a time per subscription.

A member may pay by hand for a live subscription (API or bot: a `renewal` payment without a
charge attempt) while recurrent_payments charges the saved card for the same period. Were both
open at once and both succeed, the member would pay twice and get two periods they did not ask
for. So each side first takes the subscription's row lock, then looks for the other's open
payment: the API and the bot refuse a manual renewal while an auto-charge is in flight, and
recurrent_payments waits while a manual renewal is open (payment_monitor finalizes it, and a
success moves the period end, which makes the charge no longer due).

The lock is an UPDATE of the subscription row: on PostgreSQL the row lock serializes the two
transactions' checks (no write skew under READ COMMITTED); on SQLite `BEGIN IMMEDIATE` already
serializes writers, and the statement is harmless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.errors import DomosError

if TYPE_CHECKING:
    from runtime.db.base import AsyncTransaction

_LOCK = "UPDATE subscriptions SET updated_at = updated_at WHERE id = ?"

_OPEN_AUTO_CHARGE = (
    "SELECT id FROM charge_attempts WHERE subscription_id = ? AND status IN ('created', 'pending')"
    " ORDER BY id LIMIT 1"
)

_OPEN_MANUAL_RENEWAL = (
    "SELECT p.id FROM payments p WHERE p.subscription_id = ? AND p.kind = 'renewal'"
    " AND p.processed_at IS NULL AND p.status IN ('created', 'pending', 'waiting_for_capture')"
    " AND NOT EXISTS (SELECT 1 FROM charge_attempts ca WHERE ca.payment_id = p.id)"
    " ORDER BY p.id LIMIT 1"
)


class AutoRenewalInProgress(DomosError):
    """A manual renewal was asked for while the saved card is being charged for the period."""

    def __init__(self, subscription_id: int, attempt_id: int) -> None:
        super().__init__(
            f"subscription {subscription_id} is being renewed automatically "
            f"(charge attempt {attempt_id}); pay by hand once it has finished"
        )
        self.subscription_id = subscription_id
        self.attempt_id = attempt_id


async def lock_subscription(tx: AsyncTransaction, subscription_id: int) -> None:
    """Take the subscription's row lock for the rest of the transaction."""
    await tx.execute(_LOCK, (subscription_id,))


async def refuse_while_auto_charging(tx: AsyncTransaction, subscription_id: int) -> None:
    """For a manual renewal, inside its transaction: raise AutoRenewalInProgress if the saved
    card is being charged for this subscription."""
    await lock_subscription(tx, subscription_id)
    attempt_id = await tx.fetchval(_OPEN_AUTO_CHARGE, (subscription_id,))
    if attempt_id is not None:
        raise AutoRenewalInProgress(subscription_id, int(attempt_id))


async def open_manual_renewal(tx: AsyncTransaction, subscription_id: int) -> int | None:
    """For an auto-charge, inside its transaction: the id of a manual renewal still open."""
    await lock_subscription(tx, subscription_id)
    payment_id = await tx.fetchval(_OPEN_MANUAL_RENEWAL, (subscription_id,))
    return None if payment_id is None else int(payment_id)
