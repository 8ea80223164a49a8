"""What payment_monitor's stages share: its settings, its collaborators and claiming.

Each stage module (`_payment_resend`, `_payment_events`, `_payment_polling`,
`_payment_confirmation`, and `_payment_apply` which the first three finish with) takes one
`PaymentWork`, built by the monitor in `setup`, rather than the monitor itself: no stage
imports the monitor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from monitors._clients import TelegramClient, YooKassaClient
from monitors._moderation import ModerationExecutor
from runtime.config import Env

if TYPE_CHECKING:
    from structlog.stdlib import BoundLogger

    from runtime.db import AsyncDatabase
    from runtime.monitor import MonitorContext

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


@dataclass(frozen=True)
class PaymentWork:
    """The monitor's context, settings and clients, as every stage uses them."""

    ctx: MonitorContext
    config: PaymentSettings
    yookassa: YooKassaClient
    telegram: TelegramClient
    moderation: ModerationExecutor

    @property
    def db(self) -> AsyncDatabase:
        return self.ctx.db

    @property
    def log(self) -> BoundLogger:
        return self.ctx.log

    def claim(self, table: str, where: str, params: tuple[Any, ...]) -> Any:
        """Claim a batch of `table` rows for this process, in id order."""
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

    async def release_payment(self, payment: dict[str, Any]) -> None:
        await self.db.execute(
            "UPDATE payments SET lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (payment["id"], self.ctx.owner),
        )
