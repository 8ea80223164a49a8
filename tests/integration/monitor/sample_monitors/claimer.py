"""Claiming: every replica takes a few backlog rows with db.claim and processes each once."""

from __future__ import annotations

import asyncio
import os

from runtime.monitor import Monitor


class Claimer(Monitor):
    name = "claimer"
    interval_s = float(os.environ.get("SAMPLE_INTERVAL_S", "0.05"))
    mode = "claiming"
    jitter_ratio = 0.0

    async def tick(self) -> int:
        rows = await self.db.claim(
            "sample_backlog",
            where="status = ?",
            params=("queued",),
            order_by="id",
            limit=3,
            owner=self.ctx.owner,
            lease_s=60,
        )
        for row in rows:
            await asyncio.sleep(0.005)  # some work, so the replicas interleave
            async with self.db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO sample_processed (item_id, owner) VALUES (?, ?)",
                    (row["id"], self.ctx.owner),
                )
                await tx.execute(
                    "UPDATE sample_backlog SET status = 'done', lease_owner = NULL,"
                    " lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
                    (row["id"], self.ctx.owner),
                )
        return len(rows)


MONITOR = Claimer
