"""Subscription status by Telegram id: one query, the member's live subscription first.

Access is the entitlement rule's (payments.entitlement), the one ban_monitor removes members by:
a grace period that has run out is no access although the row says `grace` until tsmonitor's
next tick; it is reported as what it is by then, `expired`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from payments.entitlement import entitling
from runtime.db import AsyncDatabase
from services.api.errors import ApiError
from services.api.models import SubscriptionState, SubscriptionStatus

# The live (active/grace) subscription if there is one, else the one that ended last.
_STATUS = (
    "SELECT u.id AS user_id, s.status, s.current_period_end, s.grace_until, s.auto_renew, "
    f"t.code AS tariff_code, CASE WHEN {entitling('s')} THEN 1 ELSE 0 END AS entitled "
    "FROM users u "
    "LEFT JOIN subscriptions s ON s.user_id = u.id "
    "LEFT JOIN tariffs t ON t.id = s.tariff_id "
    "WHERE u.telegram_id = ? "
    "ORDER BY CASE WHEN s.status IN ('active', 'grace') THEN 0 ELSE 1 END, "
    "s.current_period_end DESC, s.id DESC "
    "LIMIT 1"
)


async def subscription_status(db: AsyncDatabase, telegram_id: int) -> SubscriptionStatus:
    row = await db.fetchone(_STATUS, (datetime.now(UTC), telegram_id))
    if row is None:
        raise ApiError(404, "user_not_found", f"no member with telegram id {telegram_id}")
    # A CHECK constraint keeps the stored value to these; pydantic checks it again below.
    status = cast(SubscriptionState, row["status"] or "none")
    entitled = bool(row["entitled"])
    if status == "grace" and not entitled:
        status = "expired"
    return SubscriptionStatus(
        telegram_id=telegram_id,
        status=status,
        is_active=entitled,
        tariff_code=row["tariff_code"],
        current_period_end=row["current_period_end"],
        grace_until=row["grace_until"],
        auto_renew=row["auto_renew"],
    )
