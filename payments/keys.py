"""The idempotence keys payments derive (YooKassa's Idempotence-Key, at most 64 characters)."""

from __future__ import annotations

import uuid

#: Namespace of every idempotence key domos derives; never change it (keys must stay stable).
IDEMPOTENCE_NAMESPACE = uuid.UUID("5d0c6a52-6f1e-4bb0-9a53-1f2b7f0d4c31")


def charge_key(subscription_id: int | str, period_key: str, attempt_no: int) -> str:
    """The Idempotence-Key of a charge attempt (monitors.decisions.periods.charge_idempotence_key)
    from the parts its metadata carries (subscription_id, period, attempt): how a provider
    payment is traced back to its charge attempt."""
    if attempt_no < 1:
        raise ValueError("attempt_no starts at 1")
    name = f"renewal:{subscription_id}:{period_key}:{attempt_no}"
    return str(uuid.uuid5(IDEMPOTENCE_NAMESPACE, name))
