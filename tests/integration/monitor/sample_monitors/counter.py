"""Singleton: every tick appends one row naming its owner, optionally after a slow part."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from runtime.monitor import Monitor


class Counter(Monitor):
    name = "counter"
    interval_s = float(os.environ.get("SAMPLE_INTERVAL_S", "0.1"))
    mode = "singleton"
    jitter_ratio = 0.0

    async def tick(self) -> int:
        marker_dir = os.environ.get("SAMPLE_MARKER_DIR")
        if marker_dir:
            # Tells the test that a tick is in flight (for SIGTERM during a tick).
            marker = Path(marker_dir, f"tick-started-{os.getpid()}")
            await asyncio.to_thread(marker.touch)
        await asyncio.sleep(float(os.environ.get("SAMPLE_TICK_S", "0")))
        started = self.ctx.clock.now()
        await self.db.execute(
            "INSERT INTO sample_ticks (owner, pid, started_at) VALUES (?, ?, ?)",
            (self.ctx.owner, os.getpid(), started),
        )
        self.log.info("sample_tick_written")
        return 1


MONITOR = Counter
