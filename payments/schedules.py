"""The payments' retry schedules (runtime.retry.RetrySchedule)."""

from __future__ import annotations

from runtime.retry import RetrySchedule

#: Soft payment declines (insufficient funds, issuer unavailable, ...): 6 h, 12 h, 24 h, 24 h.
SOFT_DECLINE = RetrySchedule(base_s=6 * 3600.0, cap_s=24 * 3600.0, max_attempts=5)
#: Polling a pending payment whose webhook may be lost: 1 min doubling to 1 h, for ~1 day.
PAYMENT_POLL = RetrySchedule(base_s=60.0, cap_s=3600.0, max_attempts=30)
