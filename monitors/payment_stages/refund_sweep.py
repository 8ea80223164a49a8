"""payment_monitor, stage 4: refunds whose notification never arrived.

A payment left open is polled (stage 2); a refund was learned of only from its
`refund.succeeded` notification, which YooKassa repeats for 24 hours. Past that (botapi down for
a day, a wrong notification address) the refund was never recorded: the member kept access and
the saved card kept renewing. Every SWEEP_EVERY the refunds that succeeded within LOOKBACK are
listed (GET /v3/refunds, every page) and each one not recorded here is processed as its
notification would have been (refunds.process_refund: fetched by id, recorded once).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from monitors.payment_stages.refunds import process_refund
from monitors.payment_stages.work import PaymentWork
from payments.client import PAGE_SIZE, read_every_page
from payments.reconcile import CLOCK_SKEW, provider_time

#: How often the provider's refunds are listed.
SWEEP_EVERY = timedelta(minutes=30)
#: How far back: past YooKassa's 24 hours of repeated notifications, with room for a sweep
#: that failed for a while.
LOOKBACK = timedelta(hours=48)
#: A listing that failed is tried again this much later, not on every tick.
RETRY_AFTER = timedelta(minutes=5)


class RefundSweep:
    """The sweep and when it last read every page (per process: a restart sweeps at once)."""

    def __init__(self) -> None:
        self.swept_at: datetime | None = None

    async def run(self, work: PaymentWork) -> int:
        now = work.ctx.clock.now()
        if self.swept_at is not None and now - self.swept_at < SWEEP_EVERY:
            return 0
        listed = await _succeeded_refunds(work, now - LOOKBACK - CLOCK_SKEW)
        if listed is None:
            self.swept_at = now - SWEEP_EVERY + RETRY_AFTER
            return 0
        self.swept_at = now
        handled = 0
        for refund_id in await _unrecorded(work, listed):
            log = work.log.bind(refund_id=refund_id)
            verdict = await process_refund(work, {"object_id": refund_id}, log)
            if verdict.outcome == "applied":
                handled += 1
                log.warning("refund_recorded_without_notification")
            elif verdict.outcome != "ignored":
                log.warning("refund_sweep_not_recorded", outcome=verdict.outcome, note=verdict.note)
        return handled


async def _succeeded_refunds(work: PaymentWork, since: datetime) -> list[str] | None:
    """The ids of the refunds that succeeded since `since`; None when a page failed."""
    params = {
        "status": "succeeded",
        "created_at.gte": provider_time(since),
        "limit": str(PAGE_SIZE),
    }
    read = await read_every_page(work.yookassa.list_refunds, params, "GET /v3/refunds")
    if not read.complete:
        work.log.warning("refund_sweep_failed", error=read.error, pages=read.pages)
        return None
    return [item["id"] for item in read.items if isinstance(item.get("id"), str)]


async def _unrecorded(work: PaymentWork, refund_ids: list[str]) -> list[str]:
    if not refund_ids:
        return []
    marks = ", ".join("?" for _ in refund_ids)
    rows = await work.db.fetchall(
        "SELECT provider_refund_id FROM refunds WHERE provider = 'yookassa'"
        f" AND provider_refund_id IN ({marks})",
        tuple(refund_ids),
    )
    recorded = {row["provider_refund_id"] for row in rows}
    return [refund_id for refund_id in refund_ids if refund_id not in recorded]
