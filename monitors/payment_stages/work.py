"""What payment_monitor's stages share: its settings, its collaborators and claiming.

Each stage module (`resend`, `events`, `polling`, `confirmation`, `refund_sweep`, and `apply`
which the first three finish with) takes one `PaymentWork`, built by the monitor in `setup`,
rather than the monitor itself: no stage imports the monitor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitors.moderation import ModerationExecutor
from monitors.telegram_client import TelegramClient
from payments.client import YooKassaClient
from payments.settings import PaymentSettings

if TYPE_CHECKING:
    from structlog.stdlib import BoundLogger

    from runtime.db import AsyncDatabase
    from runtime.monitor import MonitorContext

OPEN_STATUSES = "('created', 'pending', 'waiting_for_capture')"
#: Rows of recurrent_payments' charges have a charge attempt; every other row is ours.
NOT_A_CHARGE = "NOT EXISTS (SELECT 1 FROM charge_attempts ca WHERE ca.payment_id = payments.id)"


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
