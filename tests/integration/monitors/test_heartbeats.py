"""The runner writes monitor_heartbeats on a migrated database, on both backends."""

from __future__ import annotations

from typing import Any

from runtime.config import Settings
from runtime.monitor import Monitor
from runtime.monitor.runner import MonitorRunner


class Flaky(Monitor):
    name = "flaky"
    interval_s = 60.0
    mode = "claiming"
    fail = False

    async def tick(self) -> int:
        if Flaky.fail:
            raise RuntimeError("provider down")
        return 4


async def test_each_tick_leaves_its_heartbeat(db: Any, monitor_environ: dict[str, str]) -> None:
    settings = Settings.from_env(monitor_environ)

    async def once() -> int:
        return await MonitorRunner(Flaky, settings=settings, db=db, once=True).run()

    Flaky.fail = False
    assert await once() == 0
    [row] = await db.fetchall("SELECT * FROM monitor_heartbeats WHERE monitor = 'flaky'")
    assert (row["last_outcome"], row["items_processed_total"], row["last_error"]) == (
        "succeeded",
        4,
        None,
    )
    succeeded_at = row["last_success_at"]
    assert succeeded_at is not None
    assert ":flaky:" in row["instance"]  # the runner's owner id: host:pid:monitor:suffix

    Flaky.fail = True
    assert await once() == 1
    [row] = await db.fetchall("SELECT * FROM monitor_heartbeats WHERE monitor = 'flaky'")
    assert row["last_outcome"] == "failed"
    assert "provider down" in row["last_error"]
    assert row["last_success_at"] == succeeded_at
    assert row["items_processed_total"] == 4
