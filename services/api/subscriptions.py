"""Subscription status by Telegram id: one query, the member's live subscription first."""

from __future__ import annotations

from typing import cast

from runtime.db import AsyncDatabase
from services.api.errors import ApiError
from services.api.models import SubscriptionState, SubscriptionStatus

# The live (active/grace) subscription if there is one, else the one that ended last.
_STATUS = (
    "SELECT u.id AS user_id, s.status, s.current_period_end, s.grace_until, s.auto_renew, "
    "t.code AS tariff_code "
    "FROM users u "
    "LEFT JOIN subscriptions s ON s.user_id = u.id "
    "LEFT JOIN tariffs t ON t.id = s.tariff_id "
    "WHERE u.telegram_id = ? "
    "ORDER BY CASE WHEN s.status IN ('active', 'grace') THEN 0 ELSE 1 END, "
    "s.current_period_end DESC, s.id DESC "
    "LIMIT 1"
)


async def subscription_status(db: AsyncDatabase, telegram_id: int) -> SubscriptionStatus:
    row = await db.fetchone(_STATUS, (telegram_id,))
    if row is None:
        raise ApiError(404, "user_not_found", f"no member with telegram id {telegram_id}")
    # A CHECK constraint keeps the stored value to these; pydantic checks it again below.
    status = cast(SubscriptionState, row["status"] or "none")
    return SubscriptionStatus(
        telegram_id=telegram_id,
        status=status,
        is_active=status in ("active", "grace"),
        tariff_code=row["tariff_code"],
        current_period_end=row["current_period_end"],
        grace_until=row["grace_until"],
        auto_renew=row["auto_renew"],
    )
